"""`grmu sweep`: a grid of params run as DVC experiments, on DVC's queue, GPU lanes or SLURM.

A grid is a mapping key -> values, from the command line (``method=l1_sparse,salun
reweight=true,false``, DVC's ``-S`` syntax: commas separate the values, ``[0.1,0.5]`` is one list
value) or from a YAML file (``key: [v1, v2]``). Every grid point (one value per key) becomes one
DVC experiment, queued with ``dvc exp run --queue -n NAME -S key=value ...`` and run by
``dvc queue start --jobs N``. Before anything is queued, every point's whole params file is
checked as the ``check_params`` stage checks it: a bad key, value or name stops the sweep with one
line and an empty queue.

What runs once (the rule, from ``dvc.yaml``): a stage is *affected* by a grid key when its params
name the key (or a section holding it), when the key is interpolated in ``dvc.yaml``
(``${seeds}``: it changes which stages exist), or when a stage upstream of it is affected
(``check_params`` excepted: its output is "ok" for every valid file). Stages affected by no grid
key are the same for every point: they run once, in the workspace (``dvc repro STAGE ...``),
before anything is queued, so that every experiment finds them in ``dvc.lock``. Stages affected by
some grid keys but not by every key that varies are shared by several points: the first point of
each combination of the varying keys that affect them runs first, one at a time, so that DVC's
run-cache hands their outputs to the rest, which then run ``--jobs`` at a time. Sweeping only
``method``, ``reweight``, ``recipe``, ``unlearn.*`` or ``methods.*`` needs no such first runs:
PRETRAIN and the RETRAIN references are then unaffected and run once in the workspace.

A point is done when an experiment of its name exists on the current commit; its name is made of
its values and a hash of its whole params file, so a rerun of the same sweep queues only the
points not done (failed ones are removed from the queue and queued again) and follows those still
queued or running.

Backends (``--backend``). ``local`` on a machine without GPUs: DVC's queue, as above. ``local``
with GPUs: one lane per GPU (``--gpus-per-job`` GPUs each), each lane running one job at a time
with its own ``CUDA_VISIBLE_DEVICES`` (DVC's queue workers all inherit one environment, so they
cannot be pinned). ``slurm``: every job submitted with ``sbatch``, waiting for the jobs it needs
(``--dependency=afterok``); resources from ``--partition``, ``--gpus-per-job``,
``--cpus-per-job``, ``--mem``, ``--time`` and ``--sbatch-arg``. The jobs of both are the same
bash scripts: each stage every point shares is a job (``dvc repro STAGE``, after its upstream
stages' jobs; a one-value axis is set in it, so it counts as shared), then one job per point,
each in its own clone of the repository at the current commit (plus the workspace's uncommitted
changes at submission), sharing the workspace's DVC cache and run-cache; a point's job runs
``dvc exp run -n NAME -S ...`` there and pushes the experiment's ref back to the repository. A
clone per job, not ``dvc exp run --temp`` in the workspace: a temp run stashes the workspace
when it starts (hours after submission on a cluster, so with whatever was edited meanwhile),
resets it, and takes its entry from a stash that every temp run shares.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from grmu import GrmuError

BACKENDS = ("local", "slurm")
CHECK_STAGE = "check_params"  # depends on every key; writes "ok", so nothing downstream depends on a value
POLL_S = 2.0
SLURM_POLL_MAX_S = 30.0  # squeue at most every 2 s, then less often as the sweep goes on
FOLDER = "grmu-sweep"  # under .dvc/tmp: each sweep's job scripts, logs, exit codes and clones
TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}|UNLIMITED|INFINITE")  # sbatch --time
SBATCH_OWN = {"-J", "--job-name", "-o", "--output", "-e", "--error", "-d", "--dependency", "-a", "--array",
              "--wrap", "--parsable", "--test-only", "--kill-on-invalid-dep"}  # fmt: skip
ACTIVE = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "RESIZING", "SIGNALING"}
KEY = re.compile(r"[A-Za-z_]\w*(\.\w+)*")
PLAIN = re.compile(r"[A-Za-z_][\w./-]*")  # a string DVC's -S reads as the same string
KEYWORDS = {"true", "false", "null", "nan", "inf", "True", "False", "NaN", "Inf"}


@dataclass(frozen=True)
class Point:
    """One grid point: its values as ``-S`` texts, the whole params file they give, its name."""

    values: tuple[tuple[str, str], ...]  # (key, value as DVC's -S reads it), in grid order
    params: dict
    name: str

    @property
    def overrides(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.values]

    def describe(self) -> str:
        return " ".join(self.overrides)


# --------------------------------------------------------------------------- the grid


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise GrmuError(f"unknown backend '{backend}'; valid: {', '.join(BACKENDS)}")


def to_override(v) -> str:
    """A YAML value as the text of DVC's ``-S key=TEXT`` (Hydra's override grammar)."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        if PLAIN.fullmatch(v) and v not in KEYWORDS:
            return v
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, list):
        return "[" + ",".join(map(to_override, v)) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{to_override(x)}" for k, x in v.items()) + "}"
    raise GrmuError(f"grid value {v!r} is not a YAML scalar, list or mapping")


def _split_values(key: str, text: str, where: str) -> list[str]:
    """The values of one axis ``key=v1,v2``, split as DVC's ``-S`` splits a sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        (override,) = OverridesParser.create().parse_overrides([f"{key}={text}"])
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        return [to_override(_plain(v)) for v in values]
    except (HydraException, ValueError) as e:
        raise GrmuError(f"{where}: cannot read '{key}={text}' as DVC's -S does: {str(e).splitlines()[0]}") from e


def _plain(v):
    """A value of Hydra's parser as plain YAML data (its quoted strings as strings)."""
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return getattr(v, "text", v)


def parse_axes(args: list[str]) -> dict[str, list[str]]:
    """``key=v1,v2`` words of the command line -> {key: [value texts]}."""
    axes: dict[str, list[str]] = {}
    for arg in args:
        key, eq, text = arg.partition("=")
        key = key.strip()
        if not eq or not KEY.fullmatch(key):
            raise GrmuError(f"grid axis '{arg}' is not key=value[,value...] (e.g. method=scrub,salun)")
        if not text.strip():
            raise GrmuError(f"grid axis '{arg}' is empty; give one value or more, e.g. {key}=a,b")
        _add_axis(axes, key, _split_values(key, text, "grid"), "the command line")
    return axes


def load_grid(path: str | Path) -> dict[str, list[str]]:
    """A YAML grid file: a mapping of dotted keys to lists of values."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise GrmuError(f"grid file not found: {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise GrmuError.wrap(f"cannot read the grid file {path}", e) from e
    if not isinstance(raw, dict) or not raw:
        raise GrmuError(f"grid file {path} must map keys to lists of values (e.g. method: [scrub, salun])")
    axes: dict[str, list[str]] = {}
    for key, values in raw.items():
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise GrmuError(f"grid file {path}: '{key}' is not a params key (dotted, e.g. methods.scrub.alpha)")
        if isinstance(values, dict):
            raise GrmuError(
                f"grid file {path}: '{key}' maps to a mapping; write dotted keys with lists (e.g. {key}.<name>: [a, b])"
            )
        if not isinstance(values, list):
            raise GrmuError(f"grid file {path}: '{key}' must map to a list of values, got {values!r}")
        if not values:
            raise GrmuError(f"grid file {path}: axis '{key}' is empty; give one value or more")
        _add_axis(axes, key, [to_override(v) for v in values], f"grid file {path}")
    return axes


def _add_axis(axes: dict, key: str, values: list[str], where: str) -> None:
    if key in axes:
        raise GrmuError(f"{where}: the key '{key}' is given twice; list its values once ({key}=a,b)")
    if len(set(values)) != len(values):
        twice = next(v for v in values if values.count(v) > 1)
        raise GrmuError(f"{where}: axis '{key}' lists the value {twice} twice; list each value once")
    axes[key] = values


def check_key(key: str, base: dict) -> None:
    """Refuse a key that ``params.yaml`` lacks, naming the keys valid at that level."""
    node, seen = base, []
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            where = f"under '{'.'.join(seen)}'" if seen else "of params.yaml"
            valid = ", ".join(sorted(node)) if isinstance(node, dict) else f"none ('{'.'.join(seen)}' is a value)"
            raise GrmuError(f"unknown key '{key}' in the grid; valid keys {where}: {valid}")
        node, seen = node[part], [*seen, part]


def _apply(base: dict, overrides: list[str], tmp: Path) -> dict:
    """``base`` with the overrides applied exactly as ``dvc exp run -S`` applies them."""
    from dvc.exceptions import DvcException
    from dvc.utils.hydra import apply_overrides

    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    try:
        apply_overrides(path, overrides)
    except DvcException as e:
        cause = str(e.__cause__ or e).splitlines()[0]
        raise GrmuError(f"DVC refuses {' '.join(overrides)}: {cause}") from e
    return yaml.safe_load(path.read_text())


def check_point(params: dict, tmp: Path) -> None:
    """The whole params file of a point, checked as the ``check_params`` stage checks it."""
    from grmu.config import validate
    from grmu.stages.check_params import run as check_params

    with contextlib.redirect_stdout(io.StringIO()):
        check_params(validate(params), tmp / "params.ok")


def slug(text: str) -> str:
    """``text`` with what a git ref name refuses turned into ``-``."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    return re.sub(r"\.{2,}", ".", out).strip("-.") or "x"


def point_name(values: tuple[tuple[str, str], ...], params: dict) -> str:
    """``key-value`` of each axis (the key's last part), then a hash of the whole params file."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    parts = ".".join(f"{k.rsplit('.', 1)[-1]}-{slug(v)}" for k, v in values)
    return f"{parts[:120].strip('-.')}.{digest}"


def plan(axes: dict[str, list[str]], base: dict) -> list[Point]:
    """Every grid point, each checked in full: the first that is refused stops with one line."""
    for key in axes:
        check_key(key, base)
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for combo in itertools.product(*axes.values()):
            values = tuple(zip(axes, combo))
            overrides = [f"{k}={v}" for k, v in values]
            try:
                params = _apply(copy.deepcopy(base), overrides, Path(tmp))
                check_point(params, Path(tmp))
            except GrmuError as e:
                raise GrmuError(f"grid point {' '.join(overrides)}: {e}") from None
            points.append(Point(values, params, point_name(values, params)))
    return points


# --------------------------------------------------------------------------- what runs once


def _overlap(key: str, param: str) -> bool:
    return param == "*" or key == param or key.startswith(param + ".") or param.startswith(key + ".")


def affected(
    params_of: dict[str, list[str]], upstream_of: dict[str, list[str]], interpolated: set[str], keys: list[str]
) -> dict[str, frozenset[str]]:
    """For each stage, the grid keys that change what it computes (see the module's doc)."""
    everywhere = {k for k in keys if any(_overlap(k, i) for i in interpolated)}
    memo: dict[str, frozenset[str]] = {}

    def of(stage: str) -> frozenset[str]:
        if stage not in memo:
            own = set(everywhere) | {k for k in keys if any(_overlap(k, p) for p in params_of[stage])}
            for up in upstream_of[stage]:
                if up != CHECK_STAGE:
                    own |= of(up)
            memo[stage] = frozenset(own)
        return memo[stage]

    return {stage: of(stage) for stage in params_of}


def schedule(points: list[Point], hit: dict[str, frozenset[str]]) -> tuple[list[str], list[Point], list[str]]:
    """``(stages to run once in the workspace, points to run first one at a time, the varying keys
    that tell their combinations apart)``."""
    varying = [k for k, _ in points[0].values if len({dict(p.values)[k] for p in points}) > 1] if points else []
    once = [s for s, keys in hit.items() if not keys]
    shared = [keys for s, keys in hit.items() if keys and s != CHECK_STAGE and not set(varying) <= keys]
    if not shared:
        return once, [], []
    upstream = [k for k in varying if any(k in keys for keys in shared)]
    first: dict[tuple, Point] = {}
    for p in points:
        first.setdefault(combination(p, upstream), p)
    return once, list(first.values()), upstream


def combination(p: Point, keys: list[str]) -> tuple:
    return tuple(v for k, v in p.values if k in keys)


def stage_graph(root: Path) -> tuple[dict[str, list[str]], dict[str, list[str]], set[str]]:
    """Each stage's params keys (``*``: the whole file), its upstream stages, and the params
    keys that ``dvc.yaml`` interpolates (``${seeds}``)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            graph = repo.index.graph

            def name(stage) -> str:  # as `dvc repro` in the root takes it
                where = Path(stage.path).resolve().relative_to(root.resolve()).as_posix()
                return stage.name if where == "dvc.yaml" else f"{where}:{stage.name}"

            params_of, upstream_of = {}, {}
            for stage in repo.index.stages:
                keys = [p for d in stage.deps if isinstance(d, ParamsDependency) for p in (d.params or ["*"])]
                params_of[name(stage)] = keys
                upstream_of[name(stage)] = [name(s) for s in graph.successors(stage)]
    except DvcException as e:
        raise GrmuError.wrap("DVC cannot read the pipeline", e) from e
    text = (root / "dvc.yaml").read_text()
    interpolated = {m for m in re.findall(r"\$\{\s*([\w.]+)\s*\}", text) if not m.startswith("item.")}
    return params_of, upstream_of, interpolated


# --------------------------------------------------------------------------- DVC's queue (local, no GPU)


def _run(root: Path, *args: str, quiet: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """A ``dvc`` command in ``root``; its output goes to stderr (or is kept, ``quiet``)."""
    if quiet:
        out = subprocess.PIPE
    else:  # stdout too: the report alone goes to stdout
        try:
            sys.stderr.flush()
            out = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):  # a stream without a file (pytest): the process's
            out = 2
    full = None if env is None else {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, stdout=out, stderr=out, text=True, env=full)


def _why(res: subprocess.CompletedProcess) -> str:
    """The line that says why a command failed: its first error line, else its last line."""
    lines = [ln.strip() for ln in ((res.stderr or "") + (res.stdout or "")).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return errors[0] if errors else lines[-1] if lines else f"exit {res.returncode}"


def _dvc(root: Path, *args: str, what: str, env: dict | None = None) -> None:
    res = _run(root, *args, quiet=True, env=env)
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr + res.stdout).splitlines() if ln.strip()]
        raise GrmuError(f"{what} failed: `dvc {' '.join(args)}`: {lines[-1] if lines else f'exit {res.returncode}'}")


def baseline(root: Path) -> str:
    res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if res.returncode != 0:
        raise GrmuError(f"{root.resolve()} has no git commit; DVC experiments need the pipeline committed")
    return res.stdout.strip()


def exp_ref(base: str, name: str) -> str:
    return f"refs/exps/{base[:2]}/{base[2:]}/{name}"


def done_names(root: Path, base: str) -> set[str]:
    """The experiments on commit ``base``, by name."""
    res = subprocess.run(
        ["git", "-C", str(root), "for-each-ref", "--format=%(refname)", exp_ref(base, "").rstrip("/")],
        capture_output=True,
        text=True,
        check=True,
    )
    return {line.rsplit("/", 1)[-1] for line in res.stdout.split()}


def queue_state(root: Path, base: str) -> dict[str, tuple[str, str]]:
    """name -> (queued | running | failed, the task's stash rev) of the queue's tasks on ``base``."""
    from dvc.repo import Repo

    state: dict[str, tuple[str, str]] = {}
    with Repo(str(root)) as repo:
        q = repo.experiments.celery_queue
        for entry, _ in q.iter_failed():
            if entry.baseline_rev == base and entry.name:
                state[entry.name] = ("failed", entry.stash_rev)
        for status, entries in (("queued", q.iter_queued()), ("running", q.iter_active())):
            for entry in entries:
                if entry.baseline_rev == base and entry.name:
                    state[entry.name] = (status, entry.stash_rev)
    return state


def grid_state(root: Path, base: str, names: list[str]) -> tuple[set[str], dict[str, tuple[str, str]]]:
    """``names`` that are done, and the queue's state of the others."""
    done = done_names(root, base) & set(names)
    return done, {n: s for n, s in queue_state(root, base).items() if n in names and n not in done}


class Bar:
    """The sweep's tqdm bar on stderr: done / running / failed / left."""

    def __init__(self, total: int):
        from tqdm import tqdm

        self.total = total
        self.bar = tqdm(total=total, desc="sweep", unit="exp", file=sys.stderr, dynamic_ncols=True)

    def show(self, done: int, running: int, failed: int) -> None:
        self.bar.n = done
        self.bar.set_postfix_str(
            f"running {running}, failed {failed}, left {self.total - done - failed}", refresh=False
        )
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class Progress(Bar):
    """The bar of a sweep on DVC's queue, which it follows."""

    def __init__(self, root: Path, base: str, points: list[Point]):
        super().__init__(len(points))
        self.root, self.base, self.names = root, base, [p.name for p in points]

    def poll(self) -> tuple[set[str], dict[str, tuple[str, str]]]:
        """The grid's experiments that are done, and the queue's state of the others."""
        done, state = grid_state(self.root, self.base, self.names)
        running = sum(s == "running" for s, _ in state.values())
        self.show(len(done), running, sum(s == "failed" for s, _ in state.values()))
        return done, state

    def wait(self, names: list[str]) -> None:
        """Until each of ``names`` is done or failed (or, twice in a row, neither queued nor running)."""
        lost = 0
        while names:
            done, state = self.poll()
            left = [n for n in names if n not in done and state.get(n, ("",))[0] != "failed"]
            lost = 0 if any(state.get(n, ("",))[0] in ("queued", "running") for n in left) else lost + 1
            if not left or lost == 2:
                return
            time.sleep(POLL_S)


def launch(
    root: Path, points: list[Point], jobs: int, state: dict[str, tuple[str, str]], env: dict | None = None
) -> None:
    """Queue the points that are not queued or running yet (a failed task of the same name is
    removed from the queue first), and start DVC's workers (with ``env``)."""
    for p in points:
        status, rev = state.get(p.name, ("new", ""))
        if status in ("queued", "running"):
            continue
        if status == "failed":
            _dvc(root, "queue", "remove", rev, what=f"removing the failed task {p.name}")
        args = ["exp", "run", "--queue", "-n", p.name]
        for o in p.overrides:
            args += ["-S", o]
        _dvc(root, *args, what=f"queueing {p.name}")
    if points:
        _dvc(root, "queue", "start", "--jobs", str(jobs), what="starting DVC's queue", env=env)


def run_queue(root: Path, base: str, points: list[Point], sched: tuple, jobs: int, env: dict | None) -> None:
    """The local backend without GPU lanes: the shared stages in the workspace, then DVC's queue."""
    once, first, upstream = sched
    done, state = grid_state(root, base, [p.name for p in points])
    todo = [p for p in points if p.name not in done and state.get(p.name, ("new",))[0] in ("new", "failed")]
    print(
        f"sweep: {len(points)} grid points: {len(done)} done, {len(points) - len(done) - len(todo)} queued or "
        f"running, {len(todo)} to queue",
        file=sys.stderr,
    )
    try:
        if todo and once:
            print(f"sweep: the stages every point shares, once: dvc repro {' '.join(once)}", file=sys.stderr)
            if _run(root, "repro", *once).returncode != 0:
                raise GrmuError(
                    f"the shared stages failed (`dvc repro {' '.join(once)}`, output above); nothing queued"
                )
        progress = Progress(root, base, points)
        try:
            lead = [p for p in first if p.name not in done]
            launch(root, lead, 1, state, env)
            progress.wait([p.name for p in lead])
            done, state = progress.poll()
            broken = {combination(p, upstream) for p in first if p.name not in done}
            rest = [
                p for p in points if p not in first and p.name not in done and combination(p, upstream) not in broken
            ]
            launch(root, rest, jobs, state, env)
            progress.wait([p.name for p in rest])
            done, _ = progress.poll()
        finally:
            progress.close()
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted: what is queued stays in DVC's queue and goes on running (`dvc queue status`); "
            "run the same `grmu sweep` again to follow it, `dvc queue stop` (--kill: the running ones too) to stop it"
        ) from None
    failed = [p.name for p in points if p.name not in done]
    if failed:
        held = "; the points that share a failed first run's stages were not queued" if broken else ""
        raise GrmuError(
            f"{len(failed)} of {len(points)} grid points did not finish: {', '.join(failed)} "
            f"(`dvc queue logs NAME` says why{held}); fix it and run the same `grmu sweep` again"
        )


# --------------------------------------------------------------------------- jobs: GPU lanes and SLURM


class Interrupted(Exception):
    """Ctrl-C during a sweep; its message says what goes on and how to follow or stop it."""


@dataclass(frozen=True)
class Resources:
    """What each job gets: GPUs (both backends) and, on SLURM, a partition, cores, memory, a time
    limit and any other sbatch flags."""

    gpus: int | None = None  # None: local, 1 where GPUs are visible (else 0); slurm, 0
    partition: str | None = None
    cpus: int | None = None
    mem: str | None = None
    time: str | None = None
    extra: tuple[str, ...] = ()

    def sbatch_flags(self) -> list[str]:
        flags = [f"--partition={self.partition}"] if self.partition else []
        flags += [f"--gres=gpu:{self.gpus}"] if self.gpus else []
        flags += [f"--cpus-per-task={self.cpus}"] if self.cpus else []
        flags += [f"--mem={self.mem}"] if self.mem else []
        flags += [f"--time={self.time}"] if self.time else []
        return [*flags, *self.extra]


def check_options(backend: str, jobs: int | None, res: Resources) -> None:
    """``--backend``, ``--jobs`` and the resource flags, each refused with one line."""
    check_backend(backend)
    if jobs is not None and jobs < 1:
        raise GrmuError(f"--jobs {jobs} is invalid; valid: integers >= 1")
    if res.gpus is not None and res.gpus < 0:
        raise GrmuError(f"--gpus-per-job {res.gpus} is invalid; valid: integers >= 0")
    slurm_only = {"--partition": res.partition, "--cpus-per-job": res.cpus, "--mem": res.mem, "--time": res.time}
    given = [flag for flag, v in slurm_only.items() if v is not None] + (["--sbatch-arg"] if res.extra else [])
    if backend == "local":
        if given:
            raise GrmuError(f"{given[0]} is an option of --backend slurm; --backend local runs on this machine")
        return
    if jobs is not None:
        raise GrmuError("--jobs is an option of --backend local; on SLURM each point is a job and SLURM runs them")
    if res.partition is not None and not re.fullmatch(r"[\w.-]+(,[\w.-]+)*", res.partition):
        raise GrmuError(f"--partition '{res.partition}' is not a partition name (or a comma-separated list of them)")
    if res.cpus is not None and res.cpus < 1:
        raise GrmuError(f"--cpus-per-job {res.cpus} is invalid; valid: integers >= 1")
    if res.mem is not None and not re.fullmatch(r"[1-9]\d*[KMGT]?", res.mem):
        raise GrmuError(f"--mem '{res.mem}' is invalid; valid: a size as sbatch --mem takes it, e.g. 16G or 4000M")
    if res.time is not None and not TIME.fullmatch(res.time):
        raise GrmuError(f"--time '{res.time}' is invalid; valid: minutes, HH:MM:SS or D-HH:MM:SS (sbatch --time)")
    for arg in res.extra:
        if not arg.startswith("-") or len(arg) < 2:
            raise GrmuError(f"--sbatch-arg '{arg}' is not an sbatch flag; give it whole: --sbatch-arg=--account=lab")
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]
        if name in SBATCH_OWN:
            raise GrmuError(
                f"--sbatch-arg '{arg}': grmu sweep sets {name} itself (the sweep's names, logs, dependencies)"
            )
    missing = [c for c in ("sbatch", "squeue") if shutil.which(c) is None]
    if missing:
        raise GrmuError(
            f"--backend slurm needs SLURM's {' and '.join(missing)} on PATH, and they are not there; "
            "run grmu sweep where SLURM jobs are submitted"
        )


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them: its value where set,
    else one per GPU that ``nvidia-smi -L`` lists (no torch import); none without a driver."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [g.strip() for g in env.split(",")]
        return list(itertools.takewhile(lambda g: g not in ("", "-1", "NoDevFiles"), ids))
    try:
        res = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    n = sum(line.startswith("GPU ") for line in res.stdout.splitlines()) if res.returncode == 0 else 0
    return [str(i) for i in range(n)]


def gpu_lanes(gpus: list[str], per_job: int | None, jobs: int | None) -> list[str] | None:
    """``CUDA_VISIBLE_DEVICES`` of each local lane (``per_job`` GPUs each; ``jobs`` lanes, by
    default as many as the GPUs fill), or None: no GPU per job, DVC's queue."""
    per_job = (1 if gpus else 0) if per_job is None else per_job
    if per_job == 0:
        return None
    if not gpus:
        raise GrmuError(
            f"--gpus-per-job {per_job} but no GPU is visible here (nvidia-smi -L, CUDA_VISIBLE_DEVICES); "
            "leave it out to run on the CPU"
        )
    lanes = len(gpus) // per_job if jobs is None else jobs
    if lanes < 1 or lanes * per_job > len(gpus):
        lanes = max(lanes, 1)
        raise GrmuError(
            f"{lanes} lane(s) of {per_job} GPU(s) need {lanes * per_job} GPUs, and {len(gpus)} are visible "
            f"({','.join(gpus)}); lower --jobs or --gpus-per-job"
        )
    return [",".join(gpus[i * per_job : (i + 1) * per_job]) for i in range(lanes)]


def check_processes(points: list[Point], per_job: int | None) -> None:
    """A point whose ``distributed.processes`` needs more GPUs than a job gets is refused."""
    for p in points:
        n = (p.params.get("distributed") or {}).get("processes", 1)
        if per_job and isinstance(n, int) and n > per_job:
            raise GrmuError(
                f"grid point {p.describe()}: distributed.processes {n} needs {n} GPUs and a job gets {per_job}; "
                f"pass --gpus-per-job {n}"
            )


@dataclass(frozen=True)
class Job:
    """One job of the GPU lanes or of SLURM: a stage every point shares (``point`` None), or a point."""

    name: str
    point: Point | None
    stage: str = ""  # a shared stage's job: the stage
    overrides: tuple[str, ...] = ()  # a shared stage's job: the grid's one-value axes (the same for every point)
    after_ok: tuple[str, ...] = ()  # the jobs that must have succeeded before it starts
    after_any: tuple[str, ...] = ()  # the jobs that must have ended before it starts


def shared_job(stage: str) -> str:
    """The name of the job of a stage every point shares (a point's name never starts so)."""
    return "stage." + re.sub(r"[^\w@.-]+", "-", stage)


def shares_stage(p: Point, q: Point, hit: dict[str, frozenset[str]]) -> bool:
    """Whether ``p`` and ``q`` compute a stage alike (the same value of every key that affects
    it) that is not one of the stages every point shares."""
    a, b = dict(p.values), dict(q.values)
    return any(keys and s != CHECK_STAGE and all(a[k] == b[k] for k in keys) for s, keys in hit.items())


def plan_jobs(
    points: list[Point], sched: tuple, hit: dict[str, frozenset[str]], upstream_of: dict[str, list[str]]
) -> list[Job]:
    """The jobs, each listed after those it waits for. Each stage every point shares is a job of
    its own (``dvc repro STAGE``, after the jobs of its upstream stages), so that independent
    stages (the RETRAIN references) run side by side; each first run waits for all of them and
    for the earlier first runs it shares a stage with (so that no stage runs twice); every other
    point waits for them and for the first run of its combination, whose stages DVC's run-cache
    then hands it."""
    once, first, upstream = sched
    fixed = tuple(f"{k}={v}" for k, v in points[0].values if all(dict(p.values)[k] == v for p in points))
    order: list[str] = []

    def visit(stage: str) -> None:  # DVC's graph, upstream first
        if stage in once and stage not in order:
            for up in upstream_of[stage]:
                visit(up)
            order.append(stage)

    for stage in once:
        visit(stage)
    shared = tuple(shared_job(s) for s in order)
    jobs = [
        Job(shared_job(s), None, s, fixed, tuple(shared_job(u) for u in upstream_of[s] if u in once)) for s in order
    ]
    lead: dict[tuple, Point] = {}
    for i, p in enumerate(first):
        lead.setdefault(combination(p, upstream), p)
        after = tuple(q.name for q in first[:i] if shares_stage(p, q, hit))
        jobs.append(Job(p.name, p, after_ok=shared, after_any=after))
    for p in points:
        if p not in first:
            f = lead.get(combination(p, upstream))
            jobs.append(Job(p.name, p, after_ok=shared + ((f.name,) if f else ())))
    return jobs


@dataclass(frozen=True)
class Clones:
    """How each job makes its own clone of the repository, and the sweep's folder of job scripts,
    logs, exit codes and clones (``.dvc/tmp/grmu-sweep/KEY``: one per commit and grid)."""

    root: Path  # the repository, absolute
    base: str  # the commit each clone checks out
    folder: Path
    cache: str  # the repository's DVC cache, which every clone uses
    patch: Path | None  # the workspace's uncommitted changes at submission, applied in each clone
    links: tuple[str, ...]  # git-ignored paths the stages read (a relative data_dir), linked into each clone

    @property
    def job_name(self) -> str:
        return f"grmu-sweep-{self.folder.name}"

    def path(self, kind: str, name: str) -> Path:
        """``jobs/NAME.sh``, ``logs/NAME.log``, ``exit/NAME`` (the job's exit code) or ``work/NAME``."""
        return self.folder / kind / (name + {"jobs": ".sh", "logs": ".log"}.get(kind, ""))

    def exit_code(self, name: str) -> int | None:
        try:
            return int(self.path("exit", name).read_text().strip())
        except (OSError, ValueError):
            return None

    def reset(self, name: str) -> None:
        """Forget the exit code and log of an earlier run of the job."""
        for kind in ("exit", "logs"):
            self.path(kind, name).unlink(missing_ok=True)


def make_clones(root: Path, base: str, points: list[Point]) -> Clones:
    """The sweep's folder, the DVC cache to share, and a patch of the workspace's uncommitted
    changes to tracked files (untracked files are left out, as DVC's experiments leave them out)."""
    root = root.resolve()
    key = hashlib.sha256("\n".join([base, *sorted(p.name for p in points)]).encode()).hexdigest()[:10]
    folder = root / ".dvc" / "tmp" / FOLDER / key
    for kind in ("jobs", "logs", "exit", "work", "patches"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    res = _run(root, "cache", "dir", quiet=True)
    if res.returncode != 0:
        raise GrmuError(f"`dvc cache dir` failed in {root}: {_why(res)}")
    diff = subprocess.run(["git", "-C", str(root), "diff", "--binary", "HEAD"], capture_output=True, check=True).stdout
    patch = None
    if diff.strip():
        patch = folder / "patches" / f"{hashlib.sha256(diff).hexdigest()[:12]}.patch"
        patch.write_bytes(diff)
    dirs = {p.params.get("data_dir") for p in points}
    links = sorted(d for d in dirs if isinstance(d, str) and d and not os.path.isabs(d) and (root / d).exists())
    return Clones(root, base, folder, res.stdout.strip().splitlines()[-1], patch, tuple(links))


def write_script(c: Clones, job: Job) -> Path:
    """The job's bash script: clone the repository at ``c.base`` (with the workspace's changes),
    use its DVC cache, run the job (a shared stage: ``dvc repro STAGE``; a point: ``dvc exp run
    -n NAME -S ...``, then push the experiment's ref back), remove the clone; its exit code goes
    to ``exit/NAME`` as it ends (a failed job's clone stays, to look into)."""
    q = shlex.quote
    python = os.path.abspath(sys.executable)
    if job.point is None:
        what = f"stage {job.stage}, which every point shares"
        run = [shlex.join([python, "-m", "dvc", "repro", job.stage])]
        if job.overrides:  # the grid's one-value axes, applied to params.yaml as `dvc exp run -S` applies them
            apply = (
                "import sys; from dvc.utils.hydra import apply_overrides; apply_overrides('params.yaml', sys.argv[1:])"
            )
            run.insert(0, shlex.join([python, "-c", apply, *job.overrides]))
    else:
        what = f"grid point {job.point.describe()}"
        ref = exp_ref(c.base, job.name)
        overrides = [a for o in job.point.overrides for a in ("-S", o)]
        run = [
            shlex.join([python, "-m", "dvc", "exp", "run", "-n", job.name, *overrides]),
            f"git push -q origin {ref}:{ref}  # the experiment, back to the repository",
        ]
    lines = [
        "#!/usr/bin/env bash",
        f"# grmu sweep, {what}: in a clone of {c.root} at {c.base[:10]}, with its DVC cache",
        "set -euo pipefail",
        f"mark={q(str(c.path('exit', job.name)))}",
        'rm -f "$mark"',
        """trap 'rc=$?; echo "$rc" > "$mark.tmp"; mv -f "$mark.tmp" "$mark"' EXIT""",
        f"work={q(str(c.path('work', job.name)))}",
        'echo "grmu sweep: on $(hostname), CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-(unset)}, in $work"',
        f'export PATH={q(os.path.dirname(python))}:"$PATH"',
        "export PYTHONPATH=\"$work/src${PYTHONPATH:+:$PYTHONPATH}\"  # the clone's grmu, not the workspace's",
        'rm -rf "$work"',
        f'git clone -q --no-checkout {q(str(c.root))} "$work"',
        'cd "$work"',
        f"git -c advice.detachedHead=false checkout -q {c.base}",
    ]
    if c.patch is not None:
        lines.append(f"git apply --index {q(str(c.patch))}  # the workspace's uncommitted changes")
    for d in c.links:
        link = f"mkdir -p {q(os.path.dirname(d) or '.')} && ln -s {q(str(c.root / d))} {q(d)}"
        lines.append(f"[ -e {q(d)} ] || {{ {link}; }}  # data_dir")
    if (c.root / ".dvc" / "config.local").is_file():
        lines.append(f"cp {q(str(c.root / '.dvc' / 'config.local'))} .dvc/config.local")
    lines += [
        f"{q(python)} -m dvc config --local cache.dir {q(c.cache)}",
        *run,
        'cd / && rm -rf "$work"',
    ]
    path = c.path("jobs", job.name)
    path.write_text("\n".join(lines) + "\n")
    return path


def why_failed(c: Clones, job: Job, job_id: str | None = None) -> str:
    """A failed job's name, and what its exit code and log say."""
    code, log = c.exit_code(job.name), c.path("logs", job.name)
    name = f"the job of stage {job.stage}" if job.point is None else job.name
    if code is not None:
        return f"{name} (exit {code}, log {log})"
    scontrol = f"; scontrol show job {job_id}" if job_id else ""
    if log.exists():
        return f"{name} (ended without an exit code: cancelled, out of time or killed{scontrol}; log {log})"
    if job.after_ok or job.after_any:
        return f"{name} (did not run: a job it waits for failed)"
    return f"{name} (never started{scontrol})"


def fail(c: Clones, points: list[Point], jobs: list[Job], failed: list[str], ids: dict | None = None) -> None:
    """Stop with one line naming the jobs that did not finish and why."""
    by_name = {j.name: j for j in jobs}
    reasons = [why_failed(c, by_name[n], (ids or {}).get(n)) for n in failed]
    more = f", and {len(reasons) - 6} more" if len(reasons) > 6 else ""
    n = sum(by_name[f].point is not None for f in failed)
    raise GrmuError(
        f"{n} of {len(points)} grid points did not finish: {', '.join(reasons[:6])}{more}; "
        "fix the cause and run the same `grmu sweep` again (what is done is kept)"
    )


def jobs_state(c: Clones, jobs: list[Job], root: Path) -> dict[str, bool]:
    """name -> True of the jobs already done: the points whose experiment exists, the shared
    stages' job once it succeeded."""
    done = done_names(root, c.base)
    return {j.name: True for j in jobs if (j.name in done if j.point else c.exit_code(j.name) == 0)}


# --------------------------------------------------------------------------- local GPU lanes


def _stop(proc: subprocess.Popen) -> None:
    """Stop a job's process group: SIGTERM, then SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
            return


def run_lanes(
    jobs: list[Job],
    lanes: list[str],
    start: Callable[[Job, str], subprocess.Popen],
    ended: dict[str, bool | None],
    tick: Callable[[dict, dict], None] = lambda running, ended: None,
    poll: float = POLL_S,
) -> dict[str, bool | None]:
    """Run each job not in ``ended`` on a free lane, in order, once the jobs it waits for have
    ended (those of ``after_ok`` succeeded; if one failed, it is skipped: None); one job per lane
    at a time. ``ended``: name -> succeeded. On Ctrl-C the running jobs are stopped."""
    ended = dict(ended)
    todo = [j for j in jobs if j.name not in ended]
    free, running = list(lanes), {}
    try:
        while todo or running:
            for name, (proc, lane) in list(running.items()):
                if proc.poll() is not None:
                    ended[name] = proc.returncode == 0
                    free.append(lane)
                    del running[name]
            for job in list(todo):
                if any(d in ended and ended[d] is not True for d in job.after_ok):
                    ended[job.name] = None
                    todo.remove(job)
                elif free and all(d in ended for d in (*job.after_ok, *job.after_any)):
                    lane = free.pop(0)
                    running[job.name] = (start(job, lane), lane)
                    todo.remove(job)
            tick(running, ended)
            if todo or running:
                time.sleep(poll)
    except KeyboardInterrupt:
        for proc, _ in running.values():
            _stop(proc)
        raise
    return ended


def run_local_lanes(root: Path, points: list[Point], jobs: list[Job], lanes: list[str], c: Clones) -> None:
    """The local backend with GPUs: the jobs on one lane per ``CUDA_VISIBLE_DEVICES`` value."""
    ended: dict[str, bool | None] = dict(jobs_state(c, jobs, root))
    todo = [j for j in jobs if j.name not in ended]
    print(
        f"sweep: {len(points)} grid points: {sum(p.name in ended for p in points)} done, "
        f"{sum(j.point is not None for j in todo)} to run on {len(lanes)} GPU lanes "
        f"(CUDA_VISIBLE_DEVICES {' | '.join(lanes)}); logs in {c.folder / 'logs'}",
        file=sys.stderr,
    )
    if not todo:
        return

    def start(job: Job, lane: str) -> subprocess.Popen:
        script = write_script(c, job)
        c.reset(job.name)
        with open(c.path("logs", job.name), "w") as log:
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": lane}
            return subprocess.Popen(
                ["bash", str(script)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=c.folder,
                start_new_session=True,
            )

    names = {p.name for p in points}
    bar = Bar(len(points))

    def tick(running: dict, now: dict) -> None:
        ok = sum(now.get(n) is True for n in names)
        bar.show(ok, len(names & running.keys()), sum(n in now and now[n] is not True for n in names))

    try:
        run_lanes(jobs, lanes, start, ended, tick)
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted: the lanes' running jobs were stopped; run the same `grmu sweep` again to run what is not done"
        ) from None
    finally:
        bar.close()
    done = jobs_state(c, jobs, root)
    failed = [j.name for j in jobs if j.name not in done]
    if failed:
        fail(c, points, jobs, failed)


# --------------------------------------------------------------------------- SLURM


def squeue(job_name: str) -> dict[str, str]:
    """job id -> state of the sweep's jobs that SLURM still holds (pending, running, ending)."""
    res = subprocess.run(["squeue", "-h", f"--name={job_name}", "-o", "%i %T"], capture_output=True, text=True)
    if res.returncode != 0:
        raise GrmuError(f"squeue failed: {_why(res)}")
    return dict(line.split(None, 1) for line in res.stdout.splitlines() if line.strip())


def slurm_state(c: Clones, jobs: list[Job], root: Path, ids: dict[str, str]) -> dict[str, str]:
    """name -> done, pending, running, failed (submitted, neither done nor held by SLURM) or new."""
    held = squeue(c.job_name)  # first: a job that leaves SLURM's queue has written its exit code and ref
    done = jobs_state(c, jobs, root)
    state = {}
    for j in jobs:
        if j.name in done:
            state[j.name] = "done"
        elif ids.get(j.name) in held:
            state[j.name] = "running" if held[ids[j.name]] in ACTIVE else "pending"
        else:
            state[j.name] = "failed" if j.name in ids else "new"
    return state


def _ids_file(c: Clones) -> Path:
    return c.folder / "slurm_jobs.json"


def submit(c: Clones, jobs: list[Job], state: dict[str, str], ids: dict[str, str], res: Resources) -> int:
    """sbatch the new and failed jobs, each with the ids of the jobs it waits for that are not
    done; ``sbatch --test-only`` first, so that resources SLURM refuses stop with its one line
    before anything is submitted. Returns how many were submitted."""
    todo = [j for j in jobs if state[j.name] in ("new", "failed")]
    if not todo:
        return 0
    scripts = {j.name: write_script(c, j) for j in todo}
    common = [f"--job-name={c.job_name}", f"--chdir={c.folder}", *res.sbatch_flags()]
    test = subprocess.run(
        ["sbatch", "--test-only", *common, str(scripts[todo[0].name])], capture_output=True, text=True
    )
    if test.returncode != 0:
        flags = " ".join(res.sbatch_flags()) or "no resource flags"
        raise GrmuError(f"sbatch refuses the jobs ({flags}): {_why(test)}; nothing submitted")
    for j in todo:
        ok = [ids[d] for d in j.after_ok if state[d] != "done"]
        anyway = [ids[d] for d in j.after_any if state[d] != "done"]
        deps = [f"{kind}:{':'.join(x)}" for kind, x in (("afterok", ok), ("afterany", anyway)) if x]
        flags = [f"--dependency={','.join(deps)}", "--kill-on-invalid-dep=yes"] if deps else []
        c.reset(j.name)
        out = f"--output={c.path('logs', j.name)}"
        done = subprocess.run(
            ["sbatch", "--parsable", *common, out, *flags, str(scripts[j.name])], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise GrmuError(
                f"sbatch refused the job of {j.name}: {_why(done)}; the jobs submitted before it go on "
                f"(`scancel --name={c.job_name}` cancels them)"
            )
        ids[j.name], state[j.name] = done.stdout.strip().split(";")[0], "pending"
        tmp = _ids_file(c).with_suffix(".tmp")
        tmp.write_text(json.dumps(ids, indent=1))
        tmp.replace(_ids_file(c))
    return len(todo)


def run_slurm(root: Path, points: list[Point], jobs: list[Job], res: Resources, c: Clones) -> None:
    """The slurm backend: submit what is neither done nor held by SLURM, then follow every job."""
    try:
        ids = json.loads(_ids_file(c).read_text())
    except (OSError, ValueError):
        ids = {}
    state = slurm_state(c, jobs, root, ids)
    count = {s: sum(state[p.name] == s for p in points) for s in ("done", "pending", "running", "failed", "new")}
    print(
        f"sweep: {len(points)} grid points: {count['done']} done, {count['pending'] + count['running']} pending or "
        f"running, {count['failed'] + count['new']} to submit ({count['failed']} failed before) as SLURM jobs "
        f"{c.job_name}; logs in {c.folder / 'logs'}",
        file=sys.stderr,
    )
    stop = (
        f"the SLURM jobs go on (`squeue --name={c.job_name}`); run the same `grmu sweep` again to follow them, "
        f"`scancel --name={c.job_name}` to cancel them"
    )
    bar = Bar(len(points))
    try:
        submit(c, jobs, state, ids, res)
        began, misses = time.monotonic(), 0
        while True:
            try:
                state, misses = slurm_state(c, jobs, root, ids), 0
            except GrmuError:  # squeue can time out on a busy cluster: give it a few tries
                misses += 1
                if misses == 10:
                    raise
                time.sleep(POLL_S)
                continue
            of = [state[p.name] for p in points]
            bar.show(of.count("done"), of.count("running"), of.count("failed"))
            if not any(s in ("pending", "running") for s in state.values()):
                break
            time.sleep(min(SLURM_POLL_MAX_S, max(POLL_S, (time.monotonic() - began) / 20)))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {stop}") from None
    finally:
        bar.close()
    failed = [j.name for j in jobs if state[j.name] != "done"]
    if failed:
        fail(c, points, jobs, failed, ids)


# --------------------------------------------------------------------------- the sweep


def read_grid(axes_args: list[str], grid_file: str | None) -> dict[str, list[str]]:
    axes = load_grid(grid_file) if grid_file else {}
    for key, values in parse_axes(axes_args).items():
        _add_axis(axes, key, values, "the grid file and the command line")
    if not axes:
        raise GrmuError("no grid: give axes (e.g. method=scrub,salun reweight=true,false) or --grid FILE")
    return axes


def sweep(
    axes_args: list[str],
    grid_file: str | None = None,
    jobs: int | None = None,
    backend: str = "local",
    repo: str | Path = ".",
    out: str | Path = "reports",
    paper: bool = False,
    dry: bool = False,
    res: Resources | None = None,
) -> str:
    """Run the grid; return the report over its experiments (``grmu report``, or ``--paper``)."""
    res = res or Resources()
    check_options(backend, jobs, res)
    axes = read_grid(axes_args, grid_file)
    root = Path(repo)
    if not (root / ".dvc").is_dir() or not (root / "params.yaml").is_file():
        raise GrmuError(f"{root.resolve()} is not a grmu DVC repository (no .dvc/ or params.yaml); pass --repo")
    base_params = yaml.safe_load((root / "params.yaml").read_text())
    if not isinstance(base_params, dict):
        raise GrmuError(f"{root / 'params.yaml'} must be a mapping of keys to values")
    points = plan(axes, base_params)
    if len({p.name for p in points}) != len(points):
        raise GrmuError("two grid points give the same params file; list each value once")
    lanes, env = None, None
    if backend == "local":
        gpus = visible_gpus()
        lanes = gpu_lanes(gpus, res.gpus, jobs)
        env = {"CUDA_VISIBLE_DEVICES": ""} if gpus and lanes is None else None  # --gpus-per-job 0: the CPU
        check_processes(points, len(lanes[0].split(",")) if lanes else None)
    else:
        check_processes(points, res.gpus)
    in_clones = backend == "slurm" or lanes is not None
    # DVC's queue shares the stages no axis affects (run in the workspace); jobs in clones also
    # those only one-value axes affect (each job sets them)
    graph = stage_graph(root)
    hit = affected(*graph, keys=[k for k, values in axes.items() if len(values) > 1 or not in_clones])
    sched = schedule(points, hit)
    if dry:
        once, first, _ = sched
        lines = [f"{p.name}  {p.describe()}" + ("  (runs first)" if p in first else "") for p in points]
        if not in_clones:
            lines.append(f"run once first: dvc repro {' '.join(once) or '(nothing)'}")
            lines.append(f"DVC's queue, {jobs or 1} at a time")
        else:
            lines.append(f"shared stages, a job each: {' '.join(once) or '(none)'}")
            if lanes:
                lines.append(f"GPU lanes: CUDA_VISIBLE_DEVICES {' | '.join(lanes)}")
            else:
                lines.append(f"each job: sbatch {' '.join(res.sbatch_flags()) or '(no resource flags)'}")
        return "\n".join(lines)
    base = baseline(root)
    if not in_clones:
        run_queue(root, base, points, sched, jobs or 1, env)
    elif lanes:
        run_local_lanes(root, points, plan_jobs(points, sched, hit, graph[1]), lanes, make_clones(root, base, points))
    else:
        run_slurm(root, points, plan_jobs(points, sched, hit, graph[1]), res, make_clones(root, base, points))
    return _report(root, base, points, out, paper)


def _report(root: Path, base: str, points: list[Point], out: str | Path, paper: bool) -> str:
    """``grmu report`` over the grid's experiments (one per dataset), or ``--paper`` per point."""
    if paper:
        from grmu.report.paper import report_paper

        parts = []
        for p in points:
            with tempfile.TemporaryDirectory() as tmp:
                for path in ("metrics/per_seed.csv", "metrics/summary.json", "params.yaml"):
                    res = subprocess.run(
                        ["git", "-C", str(root), "show", f"{exp_ref(base, p.name)}:{path}"],
                        capture_output=True,
                        text=True,
                    )
                    if res.returncode != 0:
                        raise GrmuError(f"experiment {p.name} has no {path}: {res.stderr.strip()}")
                    (Path(tmp) / path).parent.mkdir(parents=True, exist_ok=True)
                    (Path(tmp) / path).write_text(res.stdout)
                parts.append(f"## {p.name} ({p.describe()})\n\n{report_paper(tmp)}")
        return "\n\n".join(parts)
    from grmu.report.compare import report

    datasets = list(dict.fromkeys(p.params["dataset"] for p in points))
    texts = []
    for ds in datasets:
        names = [p.name for p in points if p.params["dataset"] == ds]
        texts.append(report(root, Path(out) / ds if len(datasets) > 1 else out, 1, ds, names))
    return "\n\n".join(texts)


# --------------------------------------------------------------------------- `grmu sweep`


def add_parser(sub) -> None:
    """The ``grmu sweep`` subcommand (``sub``: the subparsers of ``grmu``)."""
    sw = sub.add_parser(
        "sweep",
        help="run a grid of params as DVC experiments (DVC's queue, GPU lanes or SLURM jobs), then one report",
        description="Every grid point is one DVC experiment; the stages every point shares run once. "
        "--backend local: DVC's queue (dvc queue start --jobs N), or with GPUs one lane per GPU; "
        "--backend slurm: one sbatch job per point. A rerun resumes.",
    )
    sw.add_argument("axes", nargs="*", metavar="KEY=V1,V2", help="a grid axis, e.g. method=scrub,salun")
    sw.add_argument("--grid", default=None, metavar="FILE", help="a YAML grid: key -> list of values")
    sw.add_argument("--backend", default="local", help="local (this machine; default) or slurm (sbatch jobs)")
    sw.add_argument(
        "--jobs", "-j", type=int, default=None, help="local: experiments at a time (default 1; with GPUs, one per lane)"
    )
    sw.add_argument(
        "--gpus-per-job",
        type=int,
        default=None,
        help="GPUs per experiment; local: a lane's share, CUDA_VISIBLE_DEVICES (default 1 where GPUs are "
        "visible; 0: DVC's queue on the CPU); slurm: --gres=gpu:N (default 0)",
    )
    sw.add_argument("--repo", default=".", help="the grmu DVC repository (default: here)")
    sw.add_argument("--out", default="reports", help="the report's folder (default: reports/)")
    sw.add_argument("--paper", action="store_true", help="report each point next to the paper's tables")
    sw.add_argument("--dry", action="store_true", help="check the grid and print its points; run nothing")
    sl = sw.add_argument_group("--backend slurm: each job's resources")
    sl.add_argument("--partition", default=None, help="sbatch --partition")
    sl.add_argument("--cpus-per-job", type=int, default=None, help="sbatch --cpus-per-task")
    sl.add_argument("--mem", default=None, help="sbatch --mem, e.g. 32G")
    sl.add_argument("--time", default=None, help="sbatch --time, e.g. 4:00:00")
    sl.add_argument(
        "--sbatch-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="any other sbatch flag, whole (repeatable): --sbatch-arg=--account=lab",
    )


def main(args) -> int:
    """Run ``grmu sweep``: the report on stdout, one line on stderr for an error."""
    res = Resources(args.gpus_per_job, args.partition, args.cpus_per_job, args.mem, args.time, tuple(args.sbatch_arg))
    try:
        print(sweep(args.axes, args.grid, args.jobs, args.backend, args.repo, args.out, args.paper, args.dry, res))
    except GrmuError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
