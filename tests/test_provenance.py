"""What DVC records about a stage must be what the stage used (issue #29, item 1).

DVC reads a stage's params and deps for `dvc.lock` (and its run-cache) *after* the command ends
(treeverse/dvc#11058). A second `dvc exp run -S unlearn.lr=0.07` started in the same workspace
rewrites params.yaml while the first one's stage trains with 0.05: the lock would then pair the
0.05 checkpoint with lr 0.07, and `dvc status` would call it up to date. So a stage fails, and
keeps nothing, when a config file it read (params.yaml, a recipe, a protocol) changed before it
ended (`grmu.runtime.check_configs`). And a recipe or protocol is a name of a file in its
folder, which the stages track: a path to a file elsewhere would be read but never tracked."""

import os
import re
import runpy
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

import grmu.protocols as P
import grmu.recipes as R
from grmu import GrmuError
from grmu.config import load_params
from grmu.runtime import stage_main
from tests.conftest import repo_params

ROOT = Path(__file__).resolve().parents[1]

# stage script -> (the module of grmu.stages whose function it calls, that function, its own
# arguments ({w}: the work folder), the outputs it declares to DVC, which must not survive)
SCRIPTS = {
    "check_params.py": ("check_params", "run", ["--out", "{w}/params.ok"], ["params.ok"]),
    "prepare.py": ("prepare", "run", ["--out", "{w}/prepared"], ["prepared"]),
    "memorization.py": (
        "memorization",
        "run",
        ["--seed", "0", "--out", "{w}/mem.npz", "--hist", "{w}/mem.csv"],
        ["mem.npz", "mem.csv"],
    ),
    "forget_set.py": ("forget_set", "run_seed", ["--seed", "0", "--out", "{w}/forget"], ["forget"]),
    "pretrain.py": (
        "pretrain",
        "run",
        ["--seed", "0", "--out", "{w}/0.pt", "--live", "{w}/live"],
        ["0.pt", "0.npz", "live"],
    ),
    "retrain.py": (
        "retrain",
        "run_seed",
        ["--variant", "erm", "--seed", "0", "--forget", "{w}/f", "--out", "{w}/retrain", "--live", "{w}/live"],
        ["retrain", "live"],
    ),
    "unlearn.py": (
        "unlearn",
        "run_seed",
        ["--seed", "0", "--pretrained", "{w}/p.pt", "--forget", "{w}/f", "--out", "{w}/unl", "--live", "{w}/live"],
        ["unl", "live"],
    ),
    "evaluate.py": ("evaluate", "run_model", ["--model", "unlearned", "--out", "{w}/eval"], ["eval"]),
    # aggregate writes its small tables in place (no output is removed): it fails all the same
    "aggregate.py": ("aggregate", "run", ["--metrics", "{w}/metrics", "--plots", "{w}/plots"], []),
}


@pytest.fixture(autouse=True)
def by_hand(monkeypatch):
    """Stages run by hand (no DVC_STAGE: every key of params.yaml counts) unless a test sets it."""
    monkeypatch.delenv("DVC_STAGE", raising=False)


def run_stage(script: str, work: Path, monkeypatch, during=None):
    """Run stages/<script> in-process as DVC would, its grmu.stages function replaced by one that
    writes every declared output and then calls ``during()``; returns (exit code, the outputs)."""
    import importlib

    module, func, args, outs = SCRIPTS[script]

    def fake(*_a, **_k):
        for name in outs:
            path = work / name
            if path.suffix:
                path.write_text("x")
            else:
                path.mkdir()
                (path / "0.5.pt").write_text("x")
        if during is not None:
            during()

    monkeypatch.setattr(importlib.import_module(f"grmu.stages.{module}"), func, fake)
    (work / "prep").mkdir(exist_ok=True)
    (work / "prep/meta.json").write_text("{}")  # aggregate reads it before it runs
    (work / "metrics").mkdir(exist_ok=True)
    (work / "metrics/table.md").write_text("table\n")  # aggregate prints it after it ran
    argv = ["--params", str(work / "params.yaml")]
    if script not in ("check_params.py", "prepare.py"):
        argv += ["--prepared", str(work / "prep")]
    argv += [a.format(w=work) for a in args]
    monkeypatch.setattr(sys, "argv", [script, *argv])
    code = 0
    try:
        runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    return code, outs


def params_file(work: Path) -> Path:
    path = work / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    return path


def set_lr(path: Path, lr: float) -> None:
    params = yaml.safe_load(path.read_text())
    params["unlearn"]["lr"] = lr
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_a_stage_fails_and_keeps_nothing_when_params_yaml_changes_while_it_runs(script, tmp_path, monkeypatch, capsys):
    """The second `dvc exp run -S unlearn.lr=0.07` in the same workspace, simulated: params.yaml
    is rewritten after the stage read it and before it ended."""
    path = params_file(tmp_path)
    set_lr(path, 0.05)
    code, outs = run_stage(script, tmp_path, monkeypatch, during=lambda: set_lr(path, 0.07))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert re.search(r"params\.yaml changed while this stage ran\b.*`dvc exp run --queue", err[0]), err
    assert [name for name in outs if (tmp_path / name).exists()] == [], "a refused stage kept outputs"


@pytest.mark.parametrize("script", ["pretrain.py", "unlearn.py"])
def test_a_stage_whose_params_yaml_is_rewritten_with_the_same_values_keeps_its_outputs(
    script, tmp_path, monkeypatch, capsys
):
    """`dvc exp run` rewrites params.yaml even when a value does not change: the content counts."""
    path = params_file(tmp_path)
    set_lr(path, 0.05)

    def rewrite():
        time.sleep(0.01)  # a later modification time
        set_lr(path, 0.05)

    code, outs = run_stage(script, tmp_path, monkeypatch, during=rewrite)
    assert code == 0, capsys.readouterr().err
    assert all((tmp_path / name).exists() for name in outs)


def test_under_dvc_only_the_keys_dvc_records_for_the_stage_count(tmp_path, monkeypatch, capsys):
    """DVC names the stage it runs (DVC_STAGE): an edit of a key that dvc.yaml does not give the
    stage (eval.reference: aggregate's) leaves its record true, and it keeps its outputs; an
    edit of one it gives it (unlearn.lr) is named and refused."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)  # DVC runs a stage in the folder of its dvc.yaml
    monkeypatch.setenv("DVC_STAGE", "unlearn@0")
    kept, refused = tmp_path / "kept", tmp_path / "refused"
    for work in (kept, refused):
        work.mkdir()
        params_file(work)

    def set_reference():
        params = yaml.safe_load((kept / "params.yaml").read_text())
        params["eval"]["reference"] = "retrain_erm"
        (kept / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    code, outs = run_stage("unlearn.py", kept, monkeypatch, during=set_reference)
    assert code == 0, capsys.readouterr().err
    assert all((kept / name).exists() for name in outs)
    code, outs = run_stage("unlearn.py", refused, monkeypatch, during=lambda: set_lr(refused / "params.yaml", 0.07))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "params.yaml changed while this stage ran (unlearn): " in err[0]
    assert [name for name in outs if (refused / name).exists()] == []


def test_the_keys_dvc_records_for_a_stage_are_read_from_dvc_yaml(tmp_path):
    from grmu.runtime import tracked_keys

    dvc_yaml = ROOT / "dvc.yaml"
    assert tracked_keys("unlearn@1", dvc_yaml) == yaml.safe_load(dvc_yaml.read_text())["stages"]["unlearn"]["params"]
    assert "retrain" in tracked_keys("retrain@erm-0", dvc_yaml)  # retrain.${item.variant}: the section
    assert tracked_keys("check_params", dvc_yaml) is None  # params.yaml: the whole file
    assert tracked_keys(None, dvc_yaml) is None  # run by hand
    assert tracked_keys("unlearn@1", tmp_path / "nowhere.yaml") is None


@pytest.mark.parametrize("kind", ["recipe", "protocol"])
def test_a_stage_fails_when_its_recipe_or_protocol_file_changes_while_it_runs(kind, tmp_path, monkeypatch, capsys):
    """The recipe and protocol files are stage deps: DVC hashes them after the command too."""
    module = R if kind == "recipe" else P
    folder = tmp_path / f"{kind}s"
    folder.mkdir()
    mine = folder / "mine.yaml"
    mine.write_text("entries: [{unlearn: {lr: 0.05}}]\n" if kind == "recipe" else "train: {lr: 0.05}\n")
    monkeypatch.setattr(module, "HERE", folder)
    R.load_recipe.cache_clear()
    P._load.cache_clear()
    path = params_file(tmp_path)
    params = yaml.safe_load(path.read_text())
    params[kind] = "mine"
    path.write_text(yaml.safe_dump(params, sort_keys=False))

    def stage():
        p = load_params(path)  # reads the protocol (resolving model / train / retrain)
        if kind == "recipe":
            assert R.recipe_name(p) == "mine"  # reads the recipe, as the unlearn stage does
        mine.write_text(mine.read_text().replace("0.05", "0.07"))

    try:
        with pytest.raises(SystemExit) as stop:
            stage_main(stage)
    finally:
        R.load_recipe.cache_clear()
        P._load.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2
    assert len(err) == 1 and "mine.yaml changed while this stage ran" in err[0], err


@pytest.mark.parametrize("kind", ["recipe", "protocol"])
def test_a_recipe_or_protocol_given_as_a_path_is_refused(kind, tmp_path):
    """A file outside src/grmu/{recipes,protocols}/ is no stage's dep: editing it would rerun
    nothing and leave a stale checkpoint, so only the names of the files there are valid."""
    folder = Path((R if kind == "recipe" else P).__file__).parent
    shutil.copy(folder / "celeba.yaml", tmp_path / "mine.yaml")
    params = repo_params()
    for given in (str(tmp_path / "mine"), os.path.relpath(tmp_path / "mine", folder)):
        assert (folder / f"{given}.yaml").is_file()  # the file such a name would read
        params[kind] = given
        with pytest.raises(GrmuError) as refused:
            R.recipe_name(params) if kind == "recipe" else P.protocol_name(params)
        message = str(refused.value)
        assert message.startswith(f"unknown {kind} '{given}'; valid: auto, none, ") and "celeba" in message
        assert f"a new {kind} is a YAML file in src/grmu/{kind}s/" in message


@pytest.mark.slow
def test_two_exp_runs_at_once_in_one_workspace_never_leave_a_lying_lock(tmp_path):
    """The report of issue #29, for real: `dvc exp run -S unlearn.lr=0.05` trains, a second
    `dvc exp run -S unlearn.lr=0.07` starts in the same workspace meanwhile (it runs
    check_params, then stops on the first one's lock). DVC alone then records lr 0.07 for the
    checkpoint trained with 0.05, and `dvc status` calls it up to date; with grmu the first one's
    unlearn@1 stage refuses to end, so whatever DVC's record says, it is never a lie."""
    import json
    import subprocess

    import torch

    from ._repo import copy_repo, dvc, repo_env

    path, run = copy_repo(tmp_path / "repo", {"seeds": [1], "ratios": [0.5], "unlearn": {"epochs": 12}})
    dvc(run, "repro", "unlearn@1")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")

    def exp_run(lr, log):
        cmd = [sys.executable, "-m", "dvc", "exp", "run", "-S", f"unlearn.lr={lr}", "unlearn@1"]
        return subprocess.Popen(cmd, cwd=path, env=repo_env(path), stdout=log, stderr=subprocess.STDOUT)

    logs = {lr: tmp_path / f"exp-{lr}.log" for lr in (0.05, 0.07)}
    with open(logs[0.05], "w") as log_first, open(logs[0.07], "w") as log_second:
        first = exp_run(0.05, log_first)
        deadline = time.time() + 120
        while "Running stage 'unlearn@1'" not in logs[0.05].read_text() and time.time() < deadline:
            assert first.poll() is None, logs[0.05].read_text()
            time.sleep(0.2)
        time.sleep(3)  # unlearn@1 trains (12 epochs: 20 s or more here)
        assert first.poll() is None, "the first experiment ended before the second started"
        second = exp_run(0.07, log_second)
        second.wait(timeout=300)
        first.wait(timeout=300)
    both = "\n".join(f"lr {lr}:\n{log.read_text()}" for lr, log in logs.items())

    status = json.loads(dvc(run, "status", "unlearn@1", "--json").stdout)
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    recorded = lock["stages"]["unlearn@1"]["params"]["params.yaml"]["unlearn"]["lr"]
    if not status.get("unlearn@1"):  # DVC calls unlearn@1 up to date: its record must be the truth
        trained = torch.load(path / "models/unlearned/1/0.5.pt", weights_only=True)["info"]["unlearn"]["lr"]
        assert recorded == trained, f"dvc.lock: lr {recorded}; the checkpoint: lr {trained}\n{both}"
    assert "params.yaml changed while this stage ran (unlearn)" in logs[0.05].read_text(), both
