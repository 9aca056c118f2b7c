"""End to end: `dvc repro` of the real pipeline, shrunk to run on CPU in about a minute, in a
temporary git copy of the repository (never in the checkout)."""

import json
import sys

import pandas as pd
import pytest

from grmu.methods import METHODS

from ._repo import copy_repo, dvc, ran_stages, restore_committed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A committed copy of the repo with shrunk params; returns (path, run)."""
    return copy_repo(tmp_path_factory.mktemp("grmu") / "repo")


def test_repro_builds_every_output(repo):
    path, run = repo
    res = dvc(run, "repro")
    stages = ran_stages(res.stdout)
    assert stages == {
        "check_params",
        "prepare",
        "pretrain@1",
        "memorization@1",
        "forget_set@1",
        "retrain@erm-1",
        "retrain@reweight-1",
        "retrain@gdro-1",
        "unlearn@1",
        "aggregate",
    } | {f"evaluate@{m}" for m in ("pretrain", "retrain_erm", "retrain_reweight", "retrain_gdro", "unlearned")}
    for model in ("retrain_erm", "retrain_reweight", "retrain_gdro", "unlearned"):  # a model and its outputs per ratio
        assert sorted(p.name for p in (path / "models" / model / "1").iterdir()) == [
            "0.5.npz",
            "0.5.pt",
            "1.0.npz",
            "1.0.pt",
        ]
    table = pd.read_csv(path / "metrics/table.csv")
    assert len(table) == 2 * 5  # 2 ratios x 5 models
    assert set(table["model"]) == {"PRETRAIN", "RETRAIN", "RETRAIN+REWEIGHT", "RETRAIN+Group-DRO", "FINETUNE"}
    gold = table[table["model"] == "RETRAIN+REWEIGHT"]
    assert (gold["avg. gap"] == "–").all()
    summary = json.loads((path / "metrics/summary.json").read_text())
    assert 0 < summary["avg_gap"] <= 100
    ga = pd.read_csv(path / "plots/ga_vs_ratio.csv")
    assert list(ga["ratio"]) == [0.5, 1.0]
    assert list(ga.columns[1:]) == ["pretrain", "retrain_erm", "retrain_reweight", "retrain_gdro", "unlearned"]
    assert len(pd.read_csv(path / "plots/curves_reference.csv")) == 2  # 2 epochs
    assert (path / "plots/ga_vs_ratio.png").stat().st_size > 1000
    evaluation = json.loads((path / "metrics/eval/unlearned/0.5-1.json").read_text())
    info, trained = evaluation["run"], evaluation["trained"]["run"]  # evaluation runs no torch
    assert info["seed"] == 1 and info["dvc"] and info["torch"] is None
    assert trained["seed"] == 1 and trained["torch"] and trained["device"].startswith("cpu (")


def test_second_repro_skips_everything(repo):
    path, run = repo
    res = dvc(run, "repro")
    assert ran_stages(res.stdout) == set()
    assert "up to date" in dvc(run, "status").stdout


@pytest.mark.parametrize(
    "module,expected",
    [
        # a change of the unlearning stage reruns unlearn only (evaluate and aggregate follow its outputs)
        ("src/grmu/stages/unlearn.py", {"unlearn@1"}),
        # one method's file: check_params (it checks every method's options) and unlearn, no training
        ("src/grmu/methods/scrub.py", {"check_params", "unlearn@1"}),
        # a change of the metric formulas reruns the evaluations and the aggregation, never training
        # nor inference (the evaluations read the outputs the model stages saved)
        (
            "src/grmu/metrics.py",
            {"aggregate"}
            | {f"evaluate@{m}" for m in ("pretrain", "retrain_erm", "retrain_reweight", "retrain_gdro", "unlearned")},
        ),
        # the training loop: every training stage (the memorization scores train models too), nothing else
        (
            "src/grmu/train.py",
            {"check_params", "memorization@1", "pretrain@1", "unlearn@1"}
            | {f"retrain@{v}-1" for v in ("erm", "reweight", "gdro")},
        ),
    ],
)
def test_a_code_change_invalidates_exactly_the_stages_that_import_it(repo, module, expected):
    path, run = repo
    original = (path / module).read_text()
    try:
        (path / module).write_text(original + "\n# edited\n")
        changed = set(json.loads(dvc(run, "status", "--json").stdout))
    finally:
        (path / module).write_text(original)
    assert changed == expected
    assert json.loads(dvc(run, "status", "--json").stdout) == {}


def test_plots_render(repo):
    path, run = repo
    dvc(run, "plots", "show", "-o", "plots_html")
    html = (path / "plots_html" / "index.html").read_text()
    assert "GA__forget-group_test_accuracy__vs_unlearning_ratio" in html and "Per-group_test_accuracy" in html
    assert "plots_group_acc_csv" not in html  # the plot data are drawn once, by the named plots


def test_exp_run_with_new_method_reruns_only_unlearn_evaluate_aggregate(repo):
    path, run = repo
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline results")
    res = dvc(run, "exp", "run", "-S", "reweight=true", "-S", "method=finetune")
    assert ran_stages(res.stdout) == {"check_params", "unlearn@1", "evaluate@unlearned", "aggregate"}
    shown = json.loads(dvc(run, "exp", "show", "--json").stdout)
    text = json.dumps(shown)
    assert text.count('"avg_gap"') >= 2  # the baseline and the experiment both report it


@pytest.mark.parametrize(
    "override,message",
    [
        ("method=scurb", "unknown method 'scurb'; valid: " + ", ".join(METHODS.names())),
        ("dataset=celbea", "unknown dataset 'celbea'; valid: celeba,"),
        ("train.lr=-1", "train.lr must be a finite number > 0, got -1"),
    ],
)
def test_exp_run_with_a_bad_name_or_value_gets_grmus_message(repo, override, message):
    """Whatever DVC interpolates, check_params answers first, naming the value and the choices."""
    path, run = repo
    try:
        res = dvc(run, "exp", "run", "-S", override, check=False)
    finally:
        restore_committed(path, run, "params.yaml")
    assert res.returncode != 0
    assert message in res.stdout + res.stderr
    assert "are missing" not in res.stdout + res.stderr
    assert ran_stages(res.stdout) == {"check_params"}


def test_report_compares_the_baseline_and_the_experiment(repo):
    path, run = repo
    run(sys.executable, "-m", "grmu.cli", "report", "--out", "reports")
    table = pd.read_csv(path / "reports/methods.csv")
    assert {"FINETUNE", "FINETUNE+REWEIGHT", "RETRAIN+REWEIGHT"} <= set(table["model"])
    assert len(table) == 2 * 6  # 2 ratios x (4 references + 2 methods)
    gaps = pd.read_csv(path / "reports/avg_gap_vs_ratio.csv")
    assert list(gaps.columns) == ["ratio", "FINETUNE", "FINETUNE+REWEIGHT"]
    assert (path / "reports/avg_gap_vs_ratio.png").stat().st_size > 1000


def test_the_audit_runs_when_asked_and_a_method_switch_retrains_none_of_its_models(repo):
    """Off by default (no audit stage exists: the runs above ran none); with audit.ratios its three
    stages run, a method switch reruns only the audit's unlearning and numbers, and `grmu report`
    puts the audits side by side (docs/audit.md)."""
    path, run = repo
    restore_committed(path, run, "params.yaml", "dvc.lock", "metrics", "plots")  # back to the committed baseline
    dvc(run, "checkout")
    assert not (path / "metrics" / "audit").exists()
    audit = ["-S", "audit.ratios=[1.0]", "-S", "audit.models=3"]
    res = dvc(run, "exp", "run", "-n", "audit-ft", *audit)
    assert ran_stages(res.stdout) == {"check_params", "audit_train@1.0", "audit_unlearn@1.0", "audit@1.0"}
    result = json.loads((path / "metrics" / "audit" / "1.0.json").read_text())
    assert result["method"] == "finetune" and result["models"] == 3 and 0 <= result["unlearned"]["F"] <= 1
    originals = path / "models" / "audit" / "1.0" / "trained" / "original"
    assert sorted(p.name for p in originals.iterdir()) == ["1000.pt", "1001.pt", "1002.pt"]
    res = dvc(run, "exp", "run", "-n", "audit-ng", *audit, "-S", "method=neggrad")
    stages = ran_stages(res.stdout)
    assert {"unlearn@1", "audit_unlearn@1.0", "audit@1.0"} <= stages and "audit_train@1.0" not in stages
    assert json.loads((path / "metrics" / "audit" / "1.0.json").read_text())["method"] == "neggrad"
    dvc(run, "plots", "show", "-o", "plots_audit")
    assert "audit" in (path / "plots_audit" / "index.html").read_text()
    out = run(sys.executable, "-m", "grmu.cli", "report", "--out", "reports_audit").stdout
    assert "# Forgetting audit" in out
    table = pd.read_csv(path / "reports_audit" / "audit.csv")
    assert set(table["method"]) == {"doing nothing (PRETRAIN)", "FINETUNE", "NEGGRAD"}
    assert (table["method"] == "doing nothing (PRETRAIN)").sum() == 1  # the same originals for both methods
    assert (path / "reports_audit" / "audit_eps.png").read_bytes()[:4] == b"\x89PNG"
    restore_committed(path, run, "params.yaml")


def test_sharp_minmax_reruns_only_unlearn_and_sam_pretraining_reruns_the_references(repo):
    import yaml

    path, run = repo
    restore_committed(path, run, "params.yaml", "dvc.lock", "metrics", "plots")  # back to the committed baseline
    dvc(run, "checkout")
    assert json.loads(dvc(run, "status", "--json").stdout) == {}
    try:
        params = yaml.safe_load((path / "params.yaml").read_text())
        params["train"]["sam"]["mode"] = "min"
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        changed = set(json.loads(dvc(run, "status", "--json").stdout))
    finally:
        restore_committed(path, run, "params.yaml")
    # SAM pretraining: every training stage of the references (the memorization scores' models
    # train with the same settings), and the aggregation's label
    assert changed == {"check_params", "memorization@1", "pretrain@1", "aggregate"} | {
        f"retrain@{v}-1" for v in ("erm", "reweight", "gdro")
    }
    res = dvc(run, "exp", "run", "-S", "method=sharp_minmax", "-S", "unlearn.optimizer=adamw")
    assert ran_stages(res.stdout) == {"check_params", "unlearn@1", "evaluate@unlearned", "aggregate"}
    summary = json.loads((path / "metrics/summary.json").read_text())
    assert summary["method"] == "sharp_minmax" and 0 < summary["ToW"] <= 100
    restore_committed(path, run, "params.yaml")


def test_the_sharp_line_on_embedded_mnist_with_random_forget_sets(repo):
    """The sharpness-aware setup: 10 classes without groups, random forget sets, plain RETRAIN
    as the reference, SAM pretraining: EO/GA are omitted, ToW and ToW-MIA are reported."""
    path, run = repo
    res = dvc(
        run,
        "exp",
        "run",
        "-S",
        "dataset=mnist",
        "-S",
        "forget.kind=random",
        "-S",
        "eval.reference=retrain_erm",
        "-S",
        "train.sam.mode=min",
        "-S",
        "method=neggrad_plus",
        "-S",
        "ratios=[0.5]",
    )
    assert {"prepare", "pretrain@1", "unlearn@1", "aggregate"} <= ran_stages(res.stdout)
    table = pd.read_csv(path / "metrics/table.csv")
    assert not {"EO", "GA", "DP", "EP"} & set(table.columns) and {"MIA_SVC", "ToW", "ToW-MIA"} <= set(table.columns)
    assert (table[table["model"] == "RETRAIN"]["avg. gap"] == "–").all()
    summary = json.loads((path / "metrics/summary.json").read_text())
    assert summary["dataset"] == "mnist" and summary["reference"] == "retrain_erm"
    assert summary["pretrain"] == "SAM-min rho=0.1" and 0 < summary["ToW_MIA"] <= 100
    forget = json.loads((path / "data/forget/1/0.5.json").read_text())
    assert forget["kind"] == "random" and forget["size"] == int(0.5 * forget["pool_size"])
    restore_committed(path, run, "params.yaml")


def test_memorization_forget_sets_on_embedded_mnist(repo):
    """forget.kind memorization: the memorization stage computes held-out scores, the forget set
    is the highest-scored samples, evaluation reports the subsets' accuracies."""
    import numpy as np

    path, run = repo
    res = dvc(
        run,
        "exp",
        "run",
        "-S",
        "dataset=mnist",
        "-S",
        "forget.kind=memorization",
        "-S",
        "forget.level=high",
        "-S",
        "forget.count=60",
        "-S",
        "ratios=[0.1]",
        "-S",
        "memorization.models=4",
        "-S",
        "method=neggrad",
        "-S",
        "eval.reference=retrain_erm",
    )
    assert {"memorization@1", "forget_set@1", "unlearn@1", "aggregate"} <= ran_stages(res.stdout)
    forget = json.loads((path / "data/forget/1/0.1.json").read_text())
    assert forget["kind"] == "memorization" and forget["level"] == "high" and forget["score"] == "heldout"
    with np.load(path / "data/memorization/1.npz", allow_pickle=False) as z:
        index, scores = z["index"], z["score"]
    top = np.sort(index[np.argsort(-scores, kind="stable")[:60]])
    assert forget["forget"] == top.tolist() and len(forget["subsets"]["low"]) == 20
    table = pd.read_csv(path / "metrics/table.csv")
    assert {"acc_high", "acc_mid", "acc_low"} <= set(table.columns)
    summary = json.loads((path / "metrics/summary.json").read_text())
    assert summary["forget"] == "memorization high by heldout" and "acc_low" in summary["r0.1"]["unlearned"]
    hist = pd.read_csv(path / "plots/memorization/1.csv")
    assert hist["count"].sum() == len(index)
    # RUM on the mix forget set of the same scores: the memorization stage is not rerun
    res = dvc(run, "exp", "run", "-S", "forget.level=mix", "-S", "method=rum")
    stages = ran_stages(res.stdout)
    assert {"forget_set@1", "unlearn@1", "aggregate"} <= stages and "memorization@1" not in stages
    assert "rum step 2/3: mid (20 samples) with finetune" in res.stdout
    summary = json.loads((path / "metrics/summary.json").read_text())
    assert summary["method"] == "rum" and summary["forget"] == "memorization mix by heldout"
    restore_committed(path, run, "params.yaml")


def test_changing_the_image_size_never_restores_stale_prepared_data(tmp_path):
    """DVC's run-cache ignores params named `size`: with such a name, 14 -> 7 px would restore
    the 14 px data from the run-cache. `image_size` is hashed, so each size gets its own data."""
    import yaml

    from grmu.prepared import load_prepared

    path, run = copy_repo(tmp_path / "repo")

    def prepare_at(side):
        params = yaml.safe_load((path / "params.yaml").read_text())
        params["datasets"]["colored_mnist"]["image_size"] = side
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        dvc(run, "repro", "prepare")
        return tuple(load_prepared(path / "data/prepared").inputs.shape[1:])

    assert prepare_at(14) == (3, 14, 14)
    assert prepare_at(7) == (3, 7, 7)  # the run-cache now holds both sizes
    assert prepare_at(14) == (3, 14, 14)
    assert prepare_at(7) == (3, 7, 7)


def test_params_never_reach_a_shell_as_code(tmp_path):
    """A ratio holding shell syntax is refused by check_params before any matrix stage runs,
    and the commands quote every matrix value anyway: the injected command never runs."""
    marker = tmp_path / "injected"
    path, run = copy_repo(tmp_path / "repo", {"ratios": [f"0.5; touch {marker}; echo"]})
    res = dvc(run, "repro", check=False)
    assert res.returncode != 0
    assert "ratio '0.5; touch" in res.stdout + res.stderr
    assert not marker.exists()


def test_kill_9_mid_training_then_rerun_gives_the_clean_result(tmp_path):
    """kill -9 of `dvc repro` while PRETRAIN trains (after its first of 8 epochs); the rerun's
    checkpoint equals that of a forced clean run byte for byte."""
    import os
    import signal
    import subprocess
    import time

    from ._repo import repo_env

    path, run = copy_repo(tmp_path / "repo", {"train": {"epochs": 8}})
    dvc(run, "repro", "prepare")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "pretrain@1"],
        cwd=path,
        env=repo_env(path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    step = path / "logs/pretrain/1/metrics.json"
    deadline = time.time() + 120
    while not step.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)  # dvclive writes this after the first epoch: training is under way
    assert proc.poll() is None, "the stage finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (path / "models/pretrain/1.pt").exists() and not (path / "models/pretrain/1.npz").exists()
    dvc(run, "repro", "pretrain@1")
    after_kill = (path / "models/pretrain/1.pt").read_bytes()
    dvc(run, "repro", "--force", "pretrain@1")
    assert (path / "models/pretrain/1.pt").read_bytes() == after_kill


def test_independent_stages_run_in_parallel_as_they_run_one_after_the_other(tmp_path):
    """The README's way to use several GPUs or cores: the shared upstream once, then one
    `dvc --wait-for-lock repro --single-item --glob PATTERN` per lane, at the same time (without
    --single-item each lane re-checks the upstream stages and asks for a write lock on outputs
    that the other lanes are reading). DVC ends with a clean status and the same models as one
    `dvc repro` running them one after the other."""
    import subprocess

    from ._repo import repo_env

    lanes = ["retrain@erm-*", "retrain@reweight-*", "retrain@gdro-*"]
    models = {}
    for mode in ("serial", "parallel"):
        path, run = copy_repo(tmp_path / mode)
        dvc(run, "repro", "forget_set", "pretrain")
        if mode == "serial":
            dvc(run, "repro", "--glob", *lanes)
        else:
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", "--glob", lane],
                    cwd=path,
                    env=repo_env(path),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for lane in lanes
            ]
            outs = [p.communicate(timeout=900)[0] for p in procs]
            assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outs)
            assert [ran_stages(o) for o in outs] == [{f"retrain@{v}-1"} for v in ("erm", "reweight", "gdro")]
        status = dvc(run, "status", "retrain").stdout  # every retrain@ stage
        assert "up to date" in status, status
        models[mode] = {p.relative_to(path): p.read_bytes() for p in sorted((path / "models").glob("retrain_*/*/*.pt"))}
    assert len(models["serial"]) == 6
    assert models["parallel"] == models["serial"]
