"""`grmu sweep`: the grid is read, expanded and checked in full before anything is queued; the
stages every point shares run once; a 2-point sweep on DVC's queue with 2 workers gives the
metrics of serial `dvc exp run`s, runs PRETRAIN and RETRAIN once, and a rerun queues nothing."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grmu import GrmuError
from grmu import sweep as sw
from grmu.cli import main

from ._repo import copy_repo, dvc, ran_stages

ROOT = Path(__file__).resolve().parents[1]


def base_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    """A folder that looks like a grmu repository; any subprocess (git, dvc) fails the test."""
    (tmp_path / ".dvc").mkdir()
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")

    def no_subprocess(*a, **k):
        raise AssertionError(f"a command ran before the grid was refused: {a}")

    monkeypatch.setattr(sw.subprocess, "run", no_subprocess)
    return tmp_path


# --------------------------------------------------------------------------- reading the grid


def test_axes_split_as_dvc_splits_a_sweep():
    axes = sw.parse_axes(["method=l1_sparse,salun,scrub", "reweight=true,false", "ratios=[0.1,0.5],[0.9]"])
    assert axes == {
        "method": ["l1_sparse", "salun", "scrub"],
        "reweight": ["true", "false"],
        "ratios": ["[0.1,0.5]", "[0.9]"],
    }
    assert sw.parse_axes(["dataset=mnist"]) == {"dataset": ["mnist"]}


def test_a_grid_file_is_a_mapping_of_keys_to_lists(tmp_path):
    f = tmp_path / "grid.yaml"
    f.write_text("method: [scrub, salun]\nreweight: [true, false]\nratios: [[0.5]]\nmethods.scrub.alpha: [0.5]\n")
    assert sw.load_grid(f) == {
        "method": ["scrub", "salun"],
        "reweight": ["true", "false"],
        "ratios": ["[0.5]"],
        "methods.scrub.alpha": ["0.5"],
    }


@pytest.mark.parametrize(
    "value,text",
    [(None, "null"), (True, "true"), (3, "3"), (1e-3, "0.001"), ("scrub", "scrub"), ("true", "'true'"),
     ("a b", "'a b'"), ([0.1, 0.5], "[0.1,0.5]"), ({"mode": "min"}, "{mode:min}")],
)  # fmt: skip
def test_yaml_values_become_the_text_dvc_reads_back(tmp_path, value, text):
    assert sw.to_override(value) == text
    base = {"k": {"mode": "none"} if isinstance(value, dict) else 0}
    assert sw._apply(base, [f"k={text}"], tmp_path)["k"] == value  # DVC's own -S parser reads it back


def test_the_grid_expands_to_every_point_each_with_its_whole_params():
    points = sw.plan(sw.parse_axes(["method=scrub,salun", "reweight=true,false"]), base_params())
    assert [p.describe() for p in points] == [
        "method=scrub reweight=true",
        "method=scrub reweight=false",
        "method=salun reweight=true",
        "method=salun reweight=false",
    ]
    assert [(p.params["method"], p.params["reweight"]) for p in points] == [
        ("scrub", True),
        ("scrub", False),
        ("salun", True),
        ("salun", False),
    ]
    assert points[0].params["train"] == base_params()["train"]  # the rest is the workspace's file
    names = [p.name for p in points]
    assert len(set(names)) == 4 and names[0].startswith("method-scrub.reweight-true.")
    for name in names:  # a valid git ref name, as DVC's experiment names must be
        assert subprocess.run(["git", "check-ref-format", f"refs/exps/ab/cd/{name}"]).returncode == 0


def test_names_are_deterministic_and_carry_the_params():
    axes = sw.parse_axes(["method=scrub,salun"])
    assert [p.name for p in sw.plan(axes, base_params())] == [p.name for p in sw.plan(axes, base_params())]
    other = base_params()
    other["train"]["epochs"] = 3
    assert sw.plan(axes, other)[0].name != sw.plan(axes, base_params())[0].name


# --------------------------------------------------------------------------- bad input: one line, nothing queued


@pytest.mark.parametrize(
    "axes,message",
    [
        (["train.lrr=0.1"], "unknown key 'train.lrr' in the grid; valid keys under 'train': augment, batch_size,"),
        (["methodd=scrub"], "unknown key 'methodd' in the grid; valid keys of params.yaml: data_dir, dataset,"),
        (
            ["methods.scrub.tempreture=2"],
            "unknown key 'methods.scrub.tempreture' in the grid; valid keys under 'methods.scrub': alpha,",
        ),
        (["method="], "grid axis 'method=' is empty; give one value or more"),
        (["method"], "grid axis 'method' is not key=value"),
        (["method=scrub,scrub"], "axis 'method' lists the value scrub twice"),
        (["method=scrub,scurb"], "grid point method=scurb: unknown method 'scurb'; valid: "),
        (["dataset=celbea"], "grid point dataset=celbea: unknown dataset 'celbea'; valid: celeba,"),
        (["train.lr=0.1,-1"], "grid point train.lr=-1: train.lr must be a finite number > 0, got -1"),
        (["ratios=[0.5],[1.5]"], "grid point ratios=[1.5]: ratio 1.5 is outside (0, 1]"),
        (
            ["eval.reference=retrain_erm,retrain_foo"],
            "eval.reference 'retrain_foo' is unknown; valid: retrain_reweight",
        ),
        (["methods.salun.threshold=0.5,7"], "grid point methods.salun.threshold=7: methods.salun.threshold"),
    ],
)
def test_a_bad_grid_is_refused_with_one_line_before_anything_runs(fake_repo, axes, message):
    with pytest.raises(GrmuError) as e:
        sw.sweep(axes, repo=fake_repo, jobs=2)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "backend,message",
    [("foo", "unknown backend 'foo'; valid: local"), ("slurm", "backend 'slurm' is not built yet; valid: local")],
)
def test_a_backend_that_is_not_there(fake_repo, backend, message):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        rc = main(["sweep", "method=scrub", "--backend", backend, "--repo", str(fake_repo)])
    assert rc != 0 and err.getvalue() == f"error: {message}\n" and out.getvalue() == ""


@pytest.mark.parametrize(
    "text,message",
    [
        ("method: scrub\n", "'method' must map to a list of values, got 'scrub'"),
        ("method: []\n", "axis 'method' is empty"),
        ("methods: {scrub: {alpha: [1]}}\n", "'methods' maps to a mapping; write dotted keys"),
        ("[method, scrub]\n", "must map keys to lists of values"),
        ("method: [scrub, salun]\nreweight: [maybe]\n", "grid point method=scrub reweight=maybe: reweight must be"),
    ],
)
def test_a_bad_grid_file(fake_repo, text, message):
    (fake_repo / "grid.yaml").write_text(text)
    with pytest.raises(GrmuError, match=None) as e:
        sw.sweep([], grid_file=str(fake_repo / "grid.yaml"), repo=fake_repo)
    assert message in str(e.value)


def test_an_axis_given_in_the_file_and_on_the_command_line(fake_repo):
    (fake_repo / "grid.yaml").write_text("method: [scrub]\n")
    with pytest.raises(GrmuError, match="the key 'method' is given twice"):
        sw.sweep(["method=salun"], grid_file=str(fake_repo / "grid.yaml"), repo=fake_repo)


# --------------------------------------------------------------------------- what runs once


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """The repository's pipeline as DVC reads it, in a copy (no git)."""
    d = tmp_path_factory.mktemp("graph")
    (d / ".dvc").mkdir()
    (d / ".dvc" / "config").write_text("[core]\n    no_scm = True\n")
    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / f, d / f)
    return sw.stage_graph(d)


def schedule(graph, axes: list[str]):
    points = sw.plan(sw.parse_axes(axes), base_params())
    keys = list(sw.parse_axes(axes))
    return sw.schedule(points, sw.affected(*graph, keys=keys))


def test_a_method_sweep_shares_every_reference_stage(graph):
    once, first, upstream = schedule(graph, ["method=scrub,salun", "reweight=true,false"])
    assert {"prepare", "pretrain@0", "memorization@2", "forget_set@1", "retrain@erm-0", "retrain@gdro-2"} <= set(once)
    assert {"evaluate@pretrain", "evaluate@retrain_reweight"} <= set(once)
    assert not {"check_params", "unlearn@0", "evaluate@unlearned", "aggregate"} & set(once)
    assert first == [] and upstream == []


def test_a_dataset_sweep_runs_the_first_point_of_each_dataset_first(graph):
    once, first, upstream = schedule(graph, ["dataset=colored_mnist,mnist", "method=scrub,salun"])
    assert once == []  # prepare depends on the dataset: nothing is the same for every point
    assert [p.describe() for p in first] == ["dataset=colored_mnist method=scrub", "dataset=mnist method=scrub"]
    assert upstream == ["dataset"]


def test_an_aggregate_only_key_shares_the_unlearning(graph):
    once, first, upstream = schedule(graph, ["method=scrub,salun", "eval.reference=retrain_erm,retrain_reweight"])
    assert "retrain@erm-0" in once and "unlearn@0" not in once
    assert upstream == ["method"] and [p.describe() for p in first] == [
        "method=scrub eval.reference=retrain_erm",
        "method=salun eval.reference=retrain_erm",
    ]


def test_seeds_change_which_stages_exist(graph):
    once, first, upstream = schedule(graph, ["seeds=[0],[1]", "method=scrub,salun"])
    assert once == [] and upstream == ["seeds"] and len(first) == 2


def test_one_point_runs_alone(graph):
    once, first, _ = schedule(graph, ["method=scrub"])
    assert "retrain@erm-1" in once and first == []


# --------------------------------------------------------------------------- resuming


def test_a_rerun_queues_only_new_and_failed_points(monkeypatch):
    calls = []
    monkeypatch.setattr(sw, "_dvc", lambda root, *args, what: calls.append(args))
    points = sw.plan(sw.parse_axes(["method=scrub,salun,l1_sparse,miu"]), base_params())
    state = {points[0].name: ("queued", "r0"), points[1].name: ("running", "r1"), points[2].name: ("failed", "r2")}
    sw.launch(Path("."), points, 3, state)
    assert calls == [
        ("queue", "remove", "r2"),
        ("exp", "run", "--queue", "-n", points[2].name, "-S", "method=l1_sparse"),
        ("exp", "run", "--queue", "-n", points[3].name, "-S", "method=miu"),
        ("queue", "start", "--jobs", "3"),
    ]


# --------------------------------------------------------------------------- end to end (slow)

SMALL = {
    "ratios": [0.5],
    "train": {"epochs": 1},
    "datasets": {"colored_mnist": {"image_size": 7}},
    "model": {"width": 4},
}
SHARED = ("prepare", "pretrain@1", "memorization@1", "forget_set@1", "retrain@erm-1", "retrain@reweight-1")


@pytest.mark.slow
def test_a_two_point_sweep_on_two_workers(tmp_path):
    path, run = copy_repo(tmp_path / "repo", SMALL)
    cmd = [sys.executable, "-m", "grmu.cli", "sweep", "method=finetune,neggrad", "--jobs", "2"]
    res = run(*cmd)
    assert "NEGGRAD" in res.stdout and "FINETUNE" in res.stdout and "RETRAIN+REWEIGHT" in res.stdout
    # the shared stages ran once, in the workspace, before anything was queued
    for stage in (*SHARED, "retrain@gdro-1"):
        assert res.stderr.count(f"Running stage '{stage}'") == 1, stage
    points = sw.plan(sw.parse_axes(["method=finetune,neggrad"]), yaml.safe_load((path / "params.yaml").read_text()))
    base = sw.baseline(path)
    assert sw.done_names(path, base) == {p.name for p in points}
    for p in points:  # each experiment ran its own unlearning and nothing shared
        log = dvc(run, "queue", "logs", p.name).stdout
        assert "Running stage 'unlearn@1'" in log and not ran_stages(log) & {*SHARED, "retrain@gdro-1"}, log
    # a rerun queues nothing and runs nothing
    tasks = dvc(run, "queue", "status").stdout
    again = run(*cmd)
    assert "0 to queue" in again.stderr and "Running stage" not in again.stderr
    assert dvc(run, "queue", "status").stdout == tasks and again.stdout == res.stdout
    # serial runs, one after the other, without the run-cache (so the unlearning is computed again)
    shutil.move(path / ".dvc/cache/runs", tmp_path / "runs")
    for p in points:
        ran = ran_stages(dvc(run, "exp", "run", "-S", p.overrides[0]).stdout)
        assert "unlearn@1" in ran and not ran & {*SHARED, "retrain@gdro-1"}
        queued = run("git", "show", f"{sw.exp_ref(base, p.name)}:metrics/per_seed.csv").stdout
        assert queued == (path / "metrics/per_seed.csv").read_text()
        assert (
            json.loads(run("git", "show", f"{sw.exp_ref(base, p.name)}:metrics/summary.json").stdout)["avg_gap"]
            == json.loads((path / "metrics/summary.json").read_text())["avg_gap"]
        )
