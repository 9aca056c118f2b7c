"""`grmu sweep --backend slurm` against a real single-node SLURM (Debian's slurm-wlm and munge,
started by tools/slurm_local.sh as root and stopped after): a 2 x 2 grid whose neggrad points fail
(a bug planted as an uncommitted edit, which every job's clone gets), reported with one line; the
edit undone, the same command resubmits only the failed points. Skipped with one line where SLURM
cannot be started, except under CI=true, where that fails the test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grmu import sweep as sw

from ._repo import copy_repo, ran_stages, repo_env, runner

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "ratios": [0.5],
    "train": {"epochs": 1},
    "datasets": {"colored_mnist": {"image_size": 7}},
    "model": {"width": 4},
}
GRID = ["method=finetune,neggrad", "eval.reference=retrain_erm,retrain_reweight"]
SHARED = {"prepare", "pretrain@1", "memorization@1", "forget_set@1", "retrain@erm-1", "retrain@gdro-1"}


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """SLURM_CONF of a single-node SLURM on this machine, stopped after the session."""
    folder = tmp_path_factory.mktemp("slurm")
    script = ROOT / "tools" / "slurm_local.sh"
    res = subprocess.run(["bash", str(script), "start", str(folder)], capture_output=True, text=True)
    if res.returncode != 0:
        subprocess.run(["bash", str(script), "stop", str(folder)], capture_output=True)
        why = ((res.stdout + res.stderr).strip().splitlines() or [f"exit {res.returncode}"])[-1]
        if os.environ.get("CI") == "true":
            pytest.fail(f"SLURM must run under CI=true, and tools/slurm_local.sh could not start it: {why}")
        pytest.skip(f"no SLURM here (tools/slurm_local.sh start: {why})")
    yield str(folder / "slurm.conf")
    subprocess.run(["bash", str(script), "stop", str(folder)], capture_output=True)


@pytest.mark.slow
def test_a_2x2_grid_on_slurm_reports_a_failed_job_and_a_rerun_resubmits_it(tmp_path, slurm):
    path, _ = copy_repo(tmp_path / "repo", SMALL)
    run = runner(path, repo_env(path, SLURM_CONF=slurm))
    method = path / "src/grmu/methods/neggrad.py"
    code = method.read_text()
    head = "def neggrad(ctx: UnlearnContext):\n"
    assert head in code, "the planted bug needs neggrad's signature"
    method.write_text(code.replace(head, head + '    raise RuntimeError("planted by test_sweep_slurm")\n'))
    cmd = [sys.executable, "-m", "grmu.cli", "sweep", *GRID, "--backend", "slurm", "--cpus-per-job", "1"]

    res = run(*cmd, check=False)
    points = sw.plan(sw.parse_axes(GRID), yaml.safe_load((path / "params.yaml").read_text()))
    n = [p.name for p in points]  # finetune-erm, finetune-reweight, neggrad-erm, neggrad-reweight
    line = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and res.stdout == "", res.stderr[-3000:]
    assert re.match(rf"error: 2 of 4 grid points did not finish: {re.escape(n[2])} \(exit [1-9]\d*, log ", line), line
    assert f"{n[3]} (did not run: a job it waits for failed)" in line, line
    base = sw.baseline(path)
    assert sw.done_names(path, base) == {n[0], n[1]}
    folder = next((path / ".dvc/tmp/grmu-sweep").iterdir())
    for stage in SHARED:  # each stage every point shares in a job of its own
        assert f"Running stage '{stage}'" in (folder / "logs" / f"{sw.shared_job(stage)}.log").read_text()
    log = {name: (folder / "logs" / f"{name}.log").read_text() for name in n[:3]}
    # every point after the shared stages; the second of a method after its first (the run-cache's unlearning)
    assert not ran_stages(log[n[0]]) & SHARED and not ran_stages(log[n[1]]) & SHARED, log[n[1]]
    assert "unlearn@1" in ran_stages(log[n[0]]) and "unlearn@1" not in ran_stages(log[n[1]]), log[n[1]]
    assert "planted by test_sweep_slurm" in log[n[2]]
    ids = json.loads((folder / "slurm_jobs.json").read_text())

    method.write_text(code)  # the fix; the same command again
    again = run(*cmd)
    assert "4 grid points: 2 done, 0 pending or running, 2 to submit (2 failed before)" in again.stderr
    assert "NEGGRAD" in again.stdout and "FINETUNE" in again.stdout
    assert sw.done_names(path, base) == set(n)
    now = json.loads((folder / "slurm_jobs.json").read_text())
    assert {k for k in now if now[k] != ids[k]} == {n[2], n[3]}  # only the failed were submitted again
    assert not list((folder / "work").iterdir())  # each job removed its clone
