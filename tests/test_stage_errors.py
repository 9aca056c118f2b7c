"""Bad input: one clear line on stderr naming the bad value and the valid choices, exit
code 2, and no output file left behind."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grmu.stages.forget_set import run as forget_set
from tests._repo import merge
from tests.conftest import small_params

ROOT = Path(__file__).resolve().parents[1]


def run_stage(script, *args, params=None, tmp_path):
    pfile = tmp_path / "params.yaml"
    """Run a stage script with the shrunk repository params, ``params`` merged in."""
    pfile.write_text(yaml.safe_dump(merge(small_params(), params or {})))
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / script), "--params", str(pfile), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def assert_one_line_error(res, *fragments):
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    for frag in fragments:
        assert frag in lines[0]


def test_unknown_method(prepared_dir, tmp_path):
    forget_set(small_params(), prepared_dir, 0.5, 0, tmp_path / "forget/0.5.json")
    out = tmp_path / "u"
    res = run_stage(
        "unlearn.py",
        "--prepared",
        prepared_dir,
        "--pretrained",
        tmp_path / "none.pt",
        "--forget",
        tmp_path / "forget",
        "--seed",
        0,
        "--out",
        out,
        params={"method": "scurb", "ratios": [0.5]},
        tmp_path=tmp_path,
    )
    assert_one_line_error(res, "unknown method 'scurb'", "valid: ", "finetune")
    assert not out.exists()


def test_unknown_dataset_and_unknown_key(tmp_path):
    out = tmp_path / "prep"
    res = run_stage("prepare.py", "--out", out, params={"dataset": "imagenet"}, tmp_path=tmp_path)
    assert_one_line_error(res, "unknown dataset 'imagenet'", "colored_mnist")
    res = run_stage("prepare.py", "--out", out, params={"trian": {"epochs": 1}}, tmp_path=tmp_path)
    assert_one_line_error(res, "unknown key 'trian'", "train")
    assert not out.exists()


@pytest.mark.parametrize("ratio,msg", [(1.5, "ratio 1.5 is outside (0, 1]"), (0.001, "forgets nothing")])
def test_bad_ratio(prepared_dir, tmp_path, ratio, msg):
    out = tmp_path / "forget"
    res = run_stage(
        "forget_set.py",
        "--prepared",
        prepared_dir,
        "--seed",
        0,
        "--out",
        out,
        params={"ratios": [ratio]},
        tmp_path=tmp_path,
    )
    assert_one_line_error(res, msg)
    assert not out.exists()


def test_absent_forget_group(prepared_dir, tmp_path):
    res = run_stage(
        "forget_set.py",
        "--prepared",
        prepared_dir,
        "--seed",
        0,
        "--out",
        tmp_path / "forget",
        params={"forget": {"groups": [[1, 5]]}},
        tmp_path=tmp_path,
    )
    assert_one_line_error(res, "forget group [y=1, a=5] does not exist")
    assert not (tmp_path / "forget").exists()


def test_missing_checkpoint(prepared_dir, tmp_path):
    forget_set(small_params(), prepared_dir, 0.5, 0, tmp_path / "forget/0.5.json")
    out = tmp_path / "u"
    res = run_stage(
        "unlearn.py",
        "--prepared",
        prepared_dir,
        "--pretrained",
        tmp_path / "nope.pt",
        "--seed",
        0,
        "--forget",
        tmp_path / "forget",
        "--out",
        out,
        params={"ratios": [0.5]},
        tmp_path=tmp_path,
    )
    assert_one_line_error(res, "missing checkpoint", "nope.pt")
    assert not out.exists()


def test_missing_model_outputs(prepared_dir, tmp_path):
    forget_set(small_params(), prepared_dir, 0.5, 0, tmp_path / "forget/0/0.5.json")
    out = tmp_path / "eval"
    res = run_stage(
        "evaluate.py",
        "--prepared",
        prepared_dir,
        "--model",
        "unlearned",
        "--models",
        tmp_path / "models",
        "--forget",
        tmp_path / "forget",
        "--out",
        out,
        params={"ratios": [0.5], "seeds": [0]},
        tmp_path=tmp_path,
    )
    assert_one_line_error(res, "missing model outputs", "unlearned/0/0.5.npz")
    assert not out.exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from grmu.runtime import atomic_path

    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_an_atomic_write_gets_the_mode_a_plain_write_would(tmp_path, mask, mode):
    """Not mkstemp's private 0600: a report or metrics file must be readable by whoever the user's
    umask lets read it (a team's shared results folder)."""
    import os

    from grmu.runtime import atomic_path

    old = os.umask(mask)
    try:
        with atomic_path(tmp_path / "out.md") as tmp:
            tmp.write_text("x")
        (tmp_path / "plain.md").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.md").stat().st_mode & 0o777 == mode == (tmp_path / "plain.md").stat().st_mode & 0o777
