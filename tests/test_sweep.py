"""`grmu sweep`: the grid is read, expanded and checked in full before anything is queued; the
stages every point shares run once; a 2-point sweep on DVC's queue with 2 workers gives the
metrics of serial `dvc exp run`s, runs PRETRAIN and RETRAIN once, and a rerun queues nothing."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
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
        (["methodd=scrub"], "unknown key 'methodd' in the grid; valid keys of params.yaml: "),
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
    "flags,message",
    [
        (["--backend", "foo"], "unknown backend 'foo'; valid: local, slurm"),
        (["--jobs", "0"], "--jobs 0 is invalid; valid: integers >= 1"),
        (["--gpus-per-job", "-1"], "--gpus-per-job -1 is invalid; valid: integers >= 0"),
        (["--partition", "gpu"], "--partition is an option of --backend slurm; --backend local runs on this machine"),
        (["--sbatch-arg=--qos=high"], "--sbatch-arg is an option of --backend slurm;"),
        (["--backend", "slurm", "--jobs", "4"], "--jobs is an option of --backend local; on SLURM each point is a job"),
        (["--backend", "slurm", "--partition", "gpu a100"], "--partition 'gpu a100' is not a partition name"),
        (["--backend", "slurm", "--cpus-per-job", "0"], "--cpus-per-job 0 is invalid; valid: integers >= 1"),
        (["--backend", "slurm", "--mem", "4GB"], "--mem '4GB' is invalid; valid: a size as sbatch --mem takes it"),
        (["--backend", "slurm", "--time", "4h"], "--time '4h' is invalid; valid: minutes, HH:MM:SS or D-HH:MM:SS"),
        (["--backend", "slurm", "--sbatch-arg=account"], "--sbatch-arg 'account' is not an sbatch flag; give it whole"),
        (
            ["--backend", "slurm", "--sbatch-arg=--job-name=x"],
            "--sbatch-arg '--job-name=x': grmu sweep sets --job-name",
        ),
        (["--backend", "slurm", "--sbatch-arg=-dafterok:3"], "--sbatch-arg '-dafterok:3': grmu sweep sets -d itself"),
    ],
)
def test_bad_options_get_one_line_and_nothing_runs(fake_repo, flags, message):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        rc = main(["sweep", "method=scrub", *flags, "--repo", str(fake_repo)])
    assert rc == 2 and err.getvalue().startswith(f"error: {message}") and err.getvalue().count("\n") == 1
    assert out.getvalue() == ""


def test_slurm_without_sbatch_on_path(fake_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["sweep", "method=scrub", "--backend", "slurm", "--repo", str(fake_repo)])
    assert rc == 2 and err.getvalue() == (
        "error: --backend slurm needs SLURM's sbatch and squeue on PATH, and they are not there; "
        "run grmu sweep where SLURM jobs are submitted\n"
    )


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
    monkeypatch.setattr(sw, "_dvc", lambda root, *args, what, env=None: calls.append(args))
    points = sw.plan(sw.parse_axes(["method=scrub,salun,l1_sparse,miu"]), base_params())
    state = {points[0].name: ("queued", "r0"), points[1].name: ("running", "r1"), points[2].name: ("failed", "r2")}
    sw.launch(Path("."), points, 3, state)
    assert calls == [
        ("queue", "remove", "r2"),
        ("exp", "run", "--queue", "-n", points[2].name, "-S", "method=l1_sparse"),
        ("exp", "run", "--queue", "-n", points[3].name, "-S", "method=miu"),
        ("queue", "start", "--jobs", "3"),
    ]


# --------------------------------------------------------------------------- GPU lanes


@pytest.mark.parametrize(
    "gpus,per_job,jobs,lanes",
    [
        (["0", "1", "2", "3"], None, None, ["0", "1", "2", "3"]),  # one lane per GPU by default
        (["0", "1", "2", "3"], 2, None, ["0,1", "2,3"]),
        (["0", "1", "2", "3"], 1, 2, ["0", "1"]),
        (["3", "5"], None, None, ["3", "5"]),  # the ids CUDA_VISIBLE_DEVICES already names
        ([], None, None, None),  # no GPU: DVC's queue
        (["0", "1"], 0, 4, None),  # --gpus-per-job 0: DVC's queue
    ],
)
def test_each_lane_gets_its_own_gpus(gpus, per_job, jobs, lanes):
    assert sw.gpu_lanes(gpus, per_job, jobs) == lanes


@pytest.mark.parametrize(
    "gpus,per_job,jobs,message",
    [
        ([], 1, None, "--gpus-per-job 1 but no GPU is visible here"),
        (["0", "1", "2", "3"], 2, 3, "3 lane(s) of 2 GPU(s) need 6 GPUs, and 4 are visible (0,1,2,3)"),
        (["0", "1"], 4, None, "1 lane(s) of 4 GPU(s) need 4 GPUs, and 2 are visible"),
    ],
)
def test_lanes_that_do_not_fit(gpus, per_job, jobs, message):
    with pytest.raises(GrmuError, match=re.escape(message)):
        sw.gpu_lanes(gpus, per_job, jobs)


def test_visible_gpus_without_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert sw.visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sw.visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-a)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-b)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert sw.visible_gpus() == ["0", "1"]
    smi.unlink()
    assert sw.visible_gpus() == []


def test_a_point_needing_more_gpus_than_a_job_gets():
    points = sw.plan(sw.parse_axes(["distributed.processes=1,2"]), base_params())
    sw.check_processes(points, 2)
    sw.check_processes(points, None)  # no GPU: torchrun's processes share the cores
    with pytest.raises(GrmuError, match="grid point distributed.processes=2: distributed.processes 2 needs 2 GPUs"):
        sw.check_processes(points, 1)


def test_dry_run_shows_the_gpu_lanes(tmp_path, monkeypatch):
    path, _ = copy_repo(tmp_path / "repo")
    monkeypatch.setattr(sw, "visible_gpus", lambda: ["0", "1", "2", "3"])
    text = sw.sweep(["method=scrub,salun"], repo=path, dry=True, res=sw.Resources(gpus=2))
    assert text.splitlines()[-1] == "GPU lanes: CUDA_VISIBLE_DEVICES 0,1 | 2,3"
    assert sw.sweep(["method=scrub"], repo=path, dry=True, res=sw.Resources(gpus=0)).endswith(
        "DVC's queue, 1 at a time"
    )


def _fake_jobs(tmp_path: Path, fails: set[str]):
    """A ``start`` for run_lanes: each job a real process that logs its lane, start and end."""
    log = tmp_path / "log"

    def start(job, lane):
        rc = 1 if job.name in fails else 0
        script = f'echo "start {job.name} $CUDA_VISIBLE_DEVICES" >> {log}; sleep 0.3; '
        script += f'echo "end {job.name}" >> {log}; exit {rc}'
        return subprocess.Popen(["sh", "-c", script], env={**os.environ, "CUDA_VISIBLE_DEVICES": lane})

    return start, log


def test_lanes_run_each_job_after_those_it_waits_for_one_per_lane(tmp_path):
    J = sw.Job
    jobs = [
        J("shared", None),
        J("f1", None, after_ok=("shared",)),
        J("f2", None, after_ok=("shared",), after_any=("f1",)),
        J("f3", None, after_ok=("shared",)),
        *(J(f"r{i}", None, after_ok=("shared", f"f{i}")) for i in (1, 2, 3)),
        J("r1b", None, after_ok=("shared", "f1")),
    ]
    start, log = _fake_jobs(tmp_path, fails={"f1"})
    ended = sw.run_lanes(jobs, ["0", "1"], start, {"r3": True}, poll=0.05)
    assert ended == {
        "shared": True,
        "f1": False,
        "f2": True,
        "f3": True,
        "r1": None,
        "r2": True,
        "r3": True,
        "r1b": None,
    }
    events = [line.split() for line in log.read_text().splitlines()]
    running: dict[str, str] = {}
    ended_at: dict[str, int] = {}
    for i, (what, name, *lane) in enumerate(events):
        if what == "start":
            assert len(running) < 2 and lane[0] not in running.values(), events  # one job per lane
            running[name] = lane[0]
        else:
            del running[name]
            ended_at[name] = i
    started = {name: i for i, (what, name, *_) in enumerate(events) if what == "start"}
    assert set(started) == {"shared", "f1", "f2", "f3", "r2"}  # r3 was done; r1, r1b wait for f1, which failed
    assert all(started[n] > ended_at["shared"] for n in ("f1", "f2", "f3"))
    assert started["f2"] > ended_at["f1"] and started["r2"] > ended_at["f2"]


def test_jobs_wait_for_the_shared_stages_and_their_first_run(graph):
    axes = ["method=scrub,salun", "eval.reference=retrain_erm,retrain_reweight"]
    points = sw.plan(sw.parse_axes(axes), base_params())
    hit = sw.affected(*graph, keys=list(sw.parse_axes(axes)))
    jobs = sw.plan_jobs(points, sw.schedule(points, hit), hit, graph[1])
    shared = [j for j in jobs if j.point is None]
    by = {j.stage: j for j in shared}
    order = [j.stage for j in shared]
    assert {"prepare", "pretrain@0", "forget_set@2", "retrain@gdro-1", "evaluate@retrain_erm"} <= set(by)
    assert not {"check_params", "unlearn@0", "aggregate"} & set(by)
    for j in shared:  # each after the jobs of its upstream stages, listed before it
        assert set(j.after_ok) == {sw.shared_job(u) for u in graph[1][j.stage] if u in by}, j
        assert all(order.index(u) < order.index(j.stage) for u in graph[1][j.stage] if u in by)
    assert by["prepare"].after_ok == () and sw.shared_job("forget_set@1") in by["retrain@erm-1"].after_ok
    assert all(j.overrides == () for j in shared)  # no one-value axis
    names = tuple(j.name for j in shared)
    n = [p.name for p in points]  # scrub-erm, scrub-reweight, salun-erm, salun-reweight
    assert [(j.name, j.after_ok, j.after_any) for j in jobs[len(shared) :]] == [
        (n[0], names, ()),  # the first runs share no stage: they run side by side
        (n[2], names, ()),
        (n[1], (*names, n[0]), ()),
        (n[3], (*names, n[2]), ()),
    ]


def test_a_one_value_axis_is_set_in_the_shared_stages_jobs(graph):
    axes = sw.parse_axes(["dataset=mnist", "method=scrub,salun"])
    points = sw.plan(axes, base_params())
    hit = sw.affected(*graph, keys=["method"])  # in clones only varying axes tell points apart
    jobs = sw.plan_jobs(points, sw.schedule(points, hit), hit, graph[1])
    prepare = next(j for j in jobs if j.stage == "prepare")
    assert prepare.overrides == ("dataset=mnist",) and prepare.name == "stage.prepare"


def test_first_runs_that_share_a_stage_run_one_after_the_other(graph):
    axes = ["dataset=colored_mnist,mnist", "method=scrub,salun", "eval.reference=retrain_erm,retrain_reweight"]
    points = sw.plan(sw.parse_axes(axes), base_params())
    hit = sw.affected(*graph, keys=list(sw.parse_axes(axes)))
    jobs = {j.name: j for j in sw.plan_jobs(points, sw.schedule(points, hit), hit, graph[1])}
    assert all(j.point for j in jobs.values())  # prepare depends on the dataset: no stage is the same for all
    by = {p.describe(): p.name for p in points}
    first = [
        f"dataset={d} method={m} eval.reference=retrain_erm"
        for d in ("colored_mnist", "mnist")
        for m in ("scrub", "salun")
    ]
    assert [(jobs[by[f]].after_ok, jobs[by[f]].after_any) for f in first] == [
        ((), ()),
        ((), (by[first[0]],)),  # colored_mnist's prepare, PRETRAIN, references: computed once
        ((), ()),  # another dataset: side by side with colored_mnist's
        ((), (by[first[2]],)),
    ]
    assert jobs[by["dataset=mnist method=salun eval.reference=retrain_reweight"]].after_ok == (by[first[3]],)


# --------------------------------------------------------------------------- SLURM submission (a fake sbatch)

FAKE_SBATCH = """#!/bin/sh
# records its arguments; --test-only fails with sbatch's words when FAKE_REFUSE is set
echo "$*" >> "$FAKE_LOG"
case "$*" in *--test-only*)
    [ -n "${FAKE_REFUSE:-}" ] && { echo "sbatch: error: $FAKE_REFUSE" >&2; exit 1; }; exit 0;;
esac
n=$(($(cat "$FAKE_LOG.n" 2>/dev/null || echo 100) + 1)); echo $n > "$FAKE_LOG.n"; echo "$n"
"""
FAKE_SQUEUE = """#!/bin/sh
# prints $FAKE_QUEUE once: those jobs end right after the sweep's first look
cat "$FAKE_QUEUE" 2>/dev/null && rm "$FAKE_QUEUE"; true
"""
GRID = ["method=finetune,neggrad", "eval.reference=retrain_erm,retrain_reweight"]


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch and squeue on PATH that record the submissions; squeue prints $FAKE_QUEUE."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "sbatch.log"))
    monkeypatch.setenv("FAKE_QUEUE", str(tmp_path / "queue"))

    def calls() -> list[list[str]]:
        lines = (tmp_path / "sbatch.log").read_text().splitlines() if (tmp_path / "sbatch.log").exists() else []
        (tmp_path / "sbatch.log").unlink(missing_ok=True)
        return [line.split() for line in lines]

    return calls


def _deps(call: list[str]) -> str:
    return next((a.split("=", 1)[1] for a in call if a.startswith("--dependency=")), "")


def test_slurm_jobs_wait_for_what_they_need_and_a_rerun_submits_only_the_failed(tmp_path, fake_slurm):
    path, run = copy_repo(tmp_path / "repo")
    res = sw.Resources(gpus=1, partition="gpu", time="2:00:00", extra=("--account=lab",))
    with pytest.raises(GrmuError) as e:  # the fake jobs never run: every job ends without an exit code
        sw.sweep(GRID, repo=path, backend="slurm", res=res)
    assert str(e.value).startswith(
        "4 of 4 grid points did not finish: the job of stage prepare (never started; scontrol"
    )
    points = sw.plan(sw.parse_axes(GRID), yaml.safe_load((path / "params.yaml").read_text()))
    n = [p.name for p in points]  # finetune-erm, finetune-reweight, neggrad-erm, neggrad-reweight
    test, *calls = fake_slurm()
    flags = ["--partition=gpu", "--gres=gpu:1", "--time=2:00:00", "--account=lab"]
    assert test[0] == "--test-only" and test[-1].endswith("jobs/stage.prepare.sh") and all(f in test for f in flags)
    assert all(f in c for c in calls for f in flags)
    folder = Path(calls[0][-1]).parents[1]
    names = [Path(c[-1]).stem for c in calls]
    ids = {name: str(101 + i) for i, name in enumerate(names)}  # the fake sbatch's job ids, in order
    shared = names[:-4]
    assert names[-4:] == [n[0], n[2], n[1], n[3]] and "stage.retrain@gdro-1" in shared

    def waits_for(*jobs: str) -> str:
        return f"afterok:{':'.join(ids[j] for j in jobs)}" if jobs else ""

    deps = dict(zip(names, map(_deps, calls)))
    assert deps["stage.prepare"] == "" and deps["stage.pretrain@1"] == waits_for("stage.prepare")
    assert deps["stage.retrain@erm-1"] == waits_for("stage.prepare", "stage.forget_set@1")
    assert deps[n[0]] == deps[n[2]] == waits_for(*shared)  # the first runs: after every shared stage
    assert deps[n[1]] == waits_for(*shared, n[0]) and deps[n[3]] == waits_for(*shared, n[2])
    assert all("--kill-on-invalid-dep=yes" in c for c in calls if _deps(c))
    assert len({a for c in calls for a in c if a.startswith("--job-name=grmu-sweep-")}) == 1
    script = (folder / "jobs" / f"{n[3]}.sh").read_text()
    base = sw.baseline(path)
    assert f"-m dvc exp run -n {n[3]} -S method=neggrad -S eval.reference=retrain_reweight\n" in script
    assert f"git push -q origin {sw.exp_ref(base, n[3])}:{sw.exp_ref(base, n[3])}" in script
    assert "git apply" not in script  # nothing uncommitted
    assert "-m dvc repro retrain@erm-1\n" in (folder / "jobs" / "stage.retrain@erm-1.sh").read_text()

    # resume: the shared stages and finetune-erm are done, neggrad-erm is still pending; the others failed
    for name in shared:
        (folder / "exit" / name).write_text("0\n")
    run("git", "update-ref", sw.exp_ref(base, n[0]), base)
    (tmp_path / "queue").write_text(f"{ids[n[2]]} PENDING\n")
    (path / "params.yaml").write_text((path / "params.yaml").read_text() + "\n")  # an uncommitted change
    with pytest.raises(GrmuError, match=r"^3 of 4 grid points did not finish: "):
        sw.sweep(GRID, repo=path, backend="slurm", res=res)
    test, *calls = fake_slurm()
    assert [Path(c[-1]).stem for c in calls] == [n[1], n[3]]  # neither the done nor the pending again
    assert [_deps(c) for c in calls] == ["", f"afterok:{ids[n[2]]}"]
    assert "git apply --index" in (folder / "jobs" / f"{n[1]}.sh").read_text()


def test_resources_slurm_refuses_stop_before_anything_is_submitted(tmp_path, fake_slurm, monkeypatch):
    path, _ = copy_repo(tmp_path / "repo")
    monkeypatch.setenv("FAKE_REFUSE", "invalid partition specified: nopart")
    with pytest.raises(GrmuError) as e:
        sw.sweep(["method=scrub,salun"], repo=path, backend="slurm", res=sw.Resources(partition="nopart"))
    assert str(e.value) == (
        "sbatch refuses the jobs (--partition=nopart): sbatch: error: invalid partition specified: nopart; "
        "nothing submitted"
    )
    assert [c[0] for c in fake_slurm()] == ["--test-only"]


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
