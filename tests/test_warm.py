"""Warm stage start-up (grmu.warm): a stage script handed over to a fork of a warm server runs
exactly as it would in its own process (arguments, folder, environment, streams, exit code,
signals, the grmu code on disk) and writes the same bytes."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grmu import warm
from tests._repo import ROOT

PROBE = '''"""A stage-like script: reports the process state it runs in."""
import json, os, sys
from grmu.warm import hand_over

if __name__ == "__main__":
    hand_over()

import grmu
mode = sys.argv[1]
if mode == "state":
    print(json.dumps({{"pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv, "env": os.environ.get("PROBE_VAR"),
                      "umask": os.umask(0), "stdin": sys.stdin.read(), "probe": getattr(grmu, "PROBE", None),
                      "torch": "torch" in sys.modules, "path0": sys.path[0]}}))
    print("to stderr", file=sys.stderr)
elif mode == "exit":
    sys.exit(int(sys.argv[2]))
elif mode == "raise":
    raise ValueError("boom")
elif mode == "sleep":
    open(sys.argv[2], "w").write(str(os.getpid()))
    import time
    try:
        time.sleep(60)
    except KeyboardInterrupt:  # Ctrl-C reaches the stage itself (e.g. to remove a half-written folder)
        open(sys.argv[2] + ".interrupted", "w").close()
        raise
'''


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """A private copy of src/ (so a test may edit grmu), the probe script, and a runner of it
    with a warm-start environment of its own (own socket folder, short idle)."""
    tmp = tmp_path_factory.mktemp("warm")
    shutil.copytree(ROOT / "src" / "grmu", tmp / "src" / "grmu", ignore=shutil.ignore_patterns("__pycache__"))
    script = tmp / "probe.py"
    script.write_text(PROBE.format())
    (tmp / "run").mkdir(mode=0o700)
    env = {**os.environ, "PYTHONPATH": str(tmp / "src"), "XDG_RUNTIME_DIR": str(tmp / "run"), "GRMU_WARM_IDLE": "30"}

    def run(*args, warm_on=True, **kw):
        e = {**env, "GRMU_WARM": "1" if warm_on else "0", **kw.pop("env", {})}
        return subprocess.Popen([sys.executable, str(script), *map(str, args)], env=e, cwd=kw.pop("cwd", tmp),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

    yield tmp, run, env
    subprocess.run([sys.executable, "-m", "grmu.warm", "stop"], env=env, capture_output=True)


def finish(proc, stdin=""):
    out, err = proc.communicate(stdin, timeout=180)
    return proc.returncode, out, err


def test_child_takes_over_the_process_state(probe):
    import json

    tmp, run, _ = probe
    (tmp / "elsewhere").mkdir(exist_ok=True)
    results = {}
    for on in (False, True):
        p = run("state", "x y", warm_on=on, cwd=tmp / "elsewhere", env={"PROBE_VAR": f"v{on}"})
        code, out, err = finish(p, "fed on stdin")
        assert code == 0, err
        state = json.loads(out.splitlines()[0])
        assert err.strip().endswith("to stderr")
        results[on] = (p.pid, state)
    (cold_pid, cold), (warm_pid, hot) = results[False], results[True]
    assert cold["pid"] == cold_pid  # GRMU_WARM=0: the script runs in its own process
    assert hot["pid"] != warm_pid  # ... else in a fork of the server
    assert hot["torch"] and not cold["torch"]  # which has torch imported already
    for state, on in ((cold, False), (hot, True)):
        assert state["cwd"] == str(tmp / "elsewhere")
        assert state["argv"][1:] == ["state", "x y"]
        assert state["env"] == f"v{on}"
        assert state["stdin"] == "fed on stdin"
        assert state["path0"] == str(tmp)
    assert hot["umask"] == cold["umask"]


def test_a_script_run_inside_another_program_is_not_handed_over(probe):
    """runpy from a test (tests/test_bad_inputs.py runs stage scripts so): the script runs in
    that process, which goes on afterwards (a hand-over would end it with the stage's code)."""
    import json

    tmp, _, env = probe
    code = ("import runpy, sys; sys.argv = ['probe.py', 'state']; "
            "runpy.run_path('probe.py', run_name='__main__'); print('still here')")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=tmp, env={**env, "GRMU_WARM": "1"}, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rc, out, err = finish(p)
    assert rc == 0, err
    assert json.loads(out.splitlines()[0])["pid"] == p.pid
    assert out.splitlines()[-1] == "still here"


def test_a_server_that_cannot_start_leaves_the_stage_to_run_cold_at_once(probe, tmp_path):
    import json

    _, run, _ = probe
    (tmp_path / "run").mkdir(mode=0o700)
    t0 = time.monotonic()
    p = run("state", env={"XDG_RUNTIME_DIR": str(tmp_path / "run"), "GRMU_WARM_IDLE": "not-a-number"})
    code, out, err = finish(p)
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["pid"] == p.pid
    assert time.monotonic() - t0 < 60  # not the 120 s a client waits for a server that is starting
    assert "not-a-number" in next((tmp_path / "run").rglob("*.log")).read_text()


def test_exit_codes_and_errors_pass_through(probe):
    _, run, _ = probe
    assert finish(run("exit", 3))[0] == 3
    assert finish(run("exit", 0))[0] == 0
    code, _, err = finish(run("raise"))
    assert code == 1 and "ValueError: boom" in err


def test_the_child_runs_the_grmu_code_on_disk(probe):
    import json

    tmp, run, _ = probe
    assert json.loads(finish(run("state"))[1].splitlines()[0])["probe"] is None
    init = tmp / "src" / "grmu" / "__init__.py"
    original = init.read_text()
    try:
        with open(init, "a") as f:  # edited in place: the folder's mtime (part of the server's key) stays
            f.write("\nPROBE = 'edited'\n")
        assert json.loads(finish(run("state"))[1].splitlines()[0])["probe"] == "edited"
    finally:
        init.write_text(original)


@pytest.mark.parametrize("how", ["int", "term", "kill"])
def test_a_stopped_client_stops_its_child(probe, tmp_path, how):
    """Ctrl-C and SIGTERM are passed on to the stage (SIGINT: it sees KeyboardInterrupt, as a
    cold stage would); a client killed outright takes its stage with it."""
    _, run, _ = probe
    pidfile = tmp_path / "pid"
    p = run("sleep", pidfile)
    deadline = time.monotonic() + 120
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.1)
    child = int(pidfile.read_text())
    assert child != p.pid
    p.send_signal({"int": signal.SIGINT, "term": signal.SIGTERM, "kill": signal.SIGKILL}[how])
    p.communicate(timeout=30)
    if how == "int":
        assert Path(f"{pidfile}.interrupted").exists(), "SIGINT was not passed on to the stage"
        assert p.returncode != 0
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and Path(f"/proc/{child}/status").read_text().find("zombie") < 0:
        assert time.monotonic() < deadline, f"child {child} still runs after the client got SIG{how.upper()}"
        time.sleep(0.1)


def test_server_key_follows_the_environment(monkeypatch):
    base = warm._key()
    threads = os.environ.get("OMP_NUM_THREADS")  # set by tools/mutation.sh, e.g.
    monkeypatch.setenv("OMP_NUM_THREADS", "7" if threads != "7" else "8")
    assert warm._key() != base
    if threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS")
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
    assert warm._key() == base
    monkeypatch.setenv("DVC_EXP_NAME", "anything")  # not read at import: same server
    assert warm._key() == base
    monkeypatch.setattr(sys, "path", sys.path + ["/nonexistent-folder"])
    assert warm._key() != base


def test_a_shared_socket_folder_is_refused(probe, tmp_path):
    _, run, _ = probe
    shared = tmp_path / "run"
    (shared / f"grmu-warm-{os.getuid()}").mkdir(parents=True)
    os.chmod(shared / f"grmu-warm-{os.getuid()}", 0o755)
    p = run("state", env={"XDG_RUNTIME_DIR": str(shared)})
    code, out, err = finish(p)
    assert code == 0, err
    import json

    assert json.loads(out.splitlines()[0])["pid"] == p.pid  # ran cold, in its own process
    assert not list((shared / f"grmu-warm-{os.getuid()}").iterdir())


@pytest.mark.slow  # a copy of the repository and ten stage processes
def test_stage_outputs_are_byte_identical_warm_and_cold(tmp_path):
    """prepare, forget_set, pretrain, unlearn and evaluate of the shrunk default, once in their
    own processes and once handed over: the same bytes."""
    from tests._repo import copy_repo

    repo, run = copy_repo(tmp_path / "repo", {"method": "scrub"})
    (tmp_path / "run").mkdir(mode=0o700)
    outs = {}
    for on in ("0", "1"):
        env = {"GRMU_WARM": on, "XDG_RUNTIME_DIR": str(tmp_path / "run")}
        d = tmp_path / f"out{on}"
        cmds = [
            ("prepare.py", "--out", d / "prepared"),
            ("forget_set.py", "--prepared", d / "prepared", "--ratio", "0.5", "--seed", "1", "--out", d / "f.json"),
            ("pretrain.py", "--prepared", d / "prepared", "--seed", "1", "--out", d / "p.pt"),
            ("unlearn.py", "--prepared", d / "prepared", "--seed", "1", "--pretrained", d / "p.pt",
             "--forget", d / "f.json", "--out", d / "u.pt"),
            ("evaluate.py", "--prepared", d / "prepared", "--name", "unlearned", "--model", d / "u.pt",
             "--forget", d / "f.json", "--out", d / "e.json"),
        ]
        for script, *args in cmds:
            res = subprocess.run([sys.executable, f"stages/{script}", *map(str, args)], cwd=repo,
                                 env={**os.environ, "PYTHONPATH": str(repo / "src"), **env}, capture_output=True)
            assert res.returncode == 0, res.stderr.decode()[-2000:]
        outs[on] = {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}
    subprocess.run([sys.executable, "-m", "grmu.warm", "stop"], cwd=repo, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(repo / "src"), "XDG_RUNTIME_DIR": str(tmp_path / "run")})
    assert outs["0"].keys() == outs["1"].keys() and len(outs["0"]) >= 5
    for name in outs["0"]:
        if name.suffix == ".json":  # run info: identical too (seed, versions, device)
            assert outs["0"][name] == outs["1"][name], name
    assert outs["0"] == outs["1"]
