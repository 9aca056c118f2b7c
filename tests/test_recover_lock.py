"""Recovery after `dvc repro` was killed while DVC wrote dvc.lock (issue #29, item 3).

DVC truncates dvc.lock and then writes it, in place: killed in between, it leaves the file empty
or half-written, and every DVC command after that, `dvc repro` included, stops with DVC's
parse or validation error. `grmu recover-lock` moves such a file aside (dvc.lock.broken); DVC
then reads the pipeline again, and `dvc repro` restores from its run-cache each stage it had
run, without running it. A small DVC repository (one stage that counts its runs) stands for
the pipeline here; docs/troubleshooting.md says what to do."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from grmu.cli import main

# one stage with a dep (a stage without deps always runs, and never from the run-cache)
STAGE = f"""stages:
  hello:
    cmd: {sys.executable} hello.py
    deps: [hello.py]
    outs: [out.txt]
"""
SCRIPT = "open('out.txt', 'w').write('hi')\nopen('runs.log', 'a').write('ran\\n')\n"  # runs.log counts the runs


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A DVC repository (no git) whose one stage ran once: a valid dvc.lock and a run-cache entry;
    the current folder (DVC reads the pipeline of the current folder's dvc.yaml)."""
    from dvc.repo import Repo

    monkeypatch.chdir(tmp_path)
    Repo.init(str(tmp_path), no_scm=True).close()
    (tmp_path / "dvc.yaml").write_text(STAGE)
    (tmp_path / "hello.py").write_text(SCRIPT)
    with Repo(str(tmp_path)) as r:
        r.reproduce()
    assert (tmp_path / "runs.log").read_text() == "ran\n"
    return tmp_path


def dvc_reads_the_pipeline(path: Path) -> bool:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(path)) as r:
            r.status()
        return True
    except DvcException:
        return False


def half_written(text: str) -> str:
    """``text`` cut in the middle of a key, as a writer killed mid-line leaves it."""
    return text[: text.index("outs:") + 3]


@pytest.mark.parametrize("damage", ["empty", "half-written"])
def test_an_unreadable_lock_is_moved_aside_and_the_stage_is_restored_without_running(damage, repo, capsys):
    from dvc.repo import Repo

    lock = repo / "dvc.lock"
    text = lock.read_text()
    lock.write_text("" if damage == "empty" else half_written(text))
    assert not dvc_reads_the_pipeline(repo)  # what the user meets: DVC's own error, every command
    assert main(["recover-lock", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dvc.lock was unreadable (") and "moved it to dvc.lock.broken" in out
    assert "Now run `dvc repro`" in out
    assert not lock.exists()
    assert (repo / "dvc.lock.broken").read_text() == ("" if damage == "empty" else half_written(text))
    assert dvc_reads_the_pipeline(repo)
    with Repo(str(repo)) as r:
        r.reproduce()
    assert lock.read_text() == text  # the same record as before the kill
    assert (repo / "runs.log").read_text() == "ran\n", "the stage ran again: not restored from the run-cache"


def test_a_readable_lock_is_left_alone(repo, capsys):
    lock = repo / "dvc.lock"
    text = lock.read_text()
    assert main(["recover-lock", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out.strip() == "nothing to recover: DVC reads dvc.lock"
    assert lock.read_text() == text and not (repo / "dvc.lock.broken").exists()


def test_an_unreadable_rwlock_is_moved_aside(repo, capsys):
    """DVC's record of its stage locks, .dvc/tmp/rwlock, is rewritten in place too."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    rwlock = repo / ".dvc/tmp/rwlock"
    rwlock.write_text('{"write": {"out.txt": {"pid": 1')
    with pytest.raises(DvcException) as refused, Repo(str(repo)) as r:
        r.reproduce(force=True)
    causes = [refused.value, refused.value.__cause__, refused.value.__context__]
    assert any("RWLock" in str(c) for c in causes if c is not None), causes
    assert main(["recover-lock", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out.startswith(".dvc/tmp/rwlock was unreadable (")
    assert not rwlock.exists() and (repo / ".dvc/tmp/rwlock.broken").exists()
    with Repo(str(repo)) as r:
        r.reproduce(force=True)


def test_it_refuses_while_a_dvc_command_runs(repo, capsys):
    """A running DVC command may be writing dvc.lock at this very moment: it is left alone."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dvc.lock import make_lock; "
            "lock = make_lock(sys.argv[1], tmp_dir=sys.argv[2]); lock.lock(); print('held', flush=True); "
            "time.sleep(60)",
            str(repo / ".dvc/tmp/lock"),
            str(repo / ".dvc/tmp"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (repo / "dvc.lock").write_text("")
        assert main(["recover-lock", "--repo", str(repo)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: a DVC command is running in "), err
        assert "then run `grmu recover-lock` again" in err[0]
        assert (repo / "dvc.lock").exists() and not (repo / "dvc.lock.broken").exists()
    finally:
        holder.kill()
        holder.wait()


def test_outside_a_dvc_repository_it_says_so(tmp_path, capsys):
    os.makedirs(tmp_path / "plain")
    assert main(["recover-lock", "--repo", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not in a DVC repository" in err[0], err
