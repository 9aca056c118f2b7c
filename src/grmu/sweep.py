"""`grmu sweep`: a grid of params run as DVC experiments by DVC's own queue.

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
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import itertools
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from grmu import GrmuError

BACKENDS = ("local",)
NOT_BUILT = ("slurm",)  # backends planned, not built yet
CHECK_STAGE = "check_params"  # depends on every key; writes "ok", so nothing downstream depends on a value
POLL_S = 2.0
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
    if backend in NOT_BUILT:
        raise GrmuError(f"backend '{backend}' is not built yet; valid: {', '.join(BACKENDS)}")
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


# --------------------------------------------------------------------------- DVC's queue


def _run(root: Path, *args: str, quiet: bool = False) -> subprocess.CompletedProcess:
    """A ``dvc`` command in ``root``; its output goes to stderr (or is kept, ``quiet``)."""
    if quiet:
        out = subprocess.PIPE
    else:  # stdout too: the report alone goes to stdout
        try:
            sys.stderr.flush()
            out = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):  # a stream without a file (pytest): the process's
            out = 2
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, stdout=out, stderr=out, text=True)


def _dvc(root: Path, *args: str, what: str) -> None:
    res = _run(root, *args, quiet=True)
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


class Progress:
    """The sweep's tqdm bar on stderr: done / running / failed / left."""

    def __init__(self, root: Path, base: str, points: list[Point]):
        from tqdm import tqdm

        self.root, self.base, self.names = root, base, [p.name for p in points]
        self.bar = tqdm(total=len(points), desc="sweep", unit="exp", file=sys.stderr, dynamic_ncols=True)

    def poll(self) -> tuple[set[str], dict[str, tuple[str, str]]]:
        """The grid's experiments that are done, and the queue's state of the others."""
        done, state = grid_state(self.root, self.base, self.names)
        running = sum(s == "running" for s, _ in state.values())
        failed = sum(s == "failed" for s, _ in state.values())
        self.bar.n = len(done)
        self.bar.set_postfix_str(
            f"running {running}, failed {failed}, left {len(self.names) - len(done) - failed}", refresh=False
        )
        self.bar.refresh()
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

    def close(self) -> None:
        self.bar.close()


def launch(root: Path, points: list[Point], jobs: int, state: dict[str, tuple[str, str]]) -> None:
    """Queue the points that are not queued or running yet (a failed task of the same name is
    removed from the queue first), and start DVC's workers."""
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
        _dvc(root, "queue", "start", "--jobs", str(jobs), what="starting DVC's queue")


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
    jobs: int = 1,
    backend: str = "local",
    repo: str | Path = ".",
    out: str | Path = "reports",
    paper: bool = False,
    dry: bool = False,
) -> str:
    """Run the grid; return the report over its experiments (``grmu report``, or ``--paper``)."""
    check_backend(backend)
    if jobs < 1:
        raise GrmuError(f"--jobs {jobs} is invalid; valid: integers >= 1")
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
    once, first, upstream = schedule(points, affected(*stage_graph(root), keys=list(axes)))
    if dry:
        lines = [f"{p.name}  {p.describe()}" + ("  (runs first)" if p in first else "") for p in points]
        return "\n".join([*lines, f"run once in the workspace first: dvc repro {' '.join(once) or '(nothing)'}"])
    base = baseline(root)
    done, state = grid_state(root, base, [p.name for p in points])
    todo = [p for p in points if p.name not in done and state.get(p.name, ("new",))[0] in ("new", "failed")]
    print(
        f"sweep: {len(points)} grid points: {len(done)} done, {len(points) - len(done) - len(todo)} queued or "
        f"running, {len(todo)} to queue",
        file=sys.stderr,
    )
    if todo and once:
        print(f"sweep: the stages every point shares, once: dvc repro {' '.join(once)}", file=sys.stderr)
        if _run(root, "repro", *once).returncode != 0:
            raise GrmuError(f"the shared stages failed (`dvc repro {' '.join(once)}`, output above); nothing queued")
    progress = Progress(root, base, points)
    try:
        lead = [p for p in first if p.name not in done]
        launch(root, lead, 1, state)
        progress.wait([p.name for p in lead])
        done, state = progress.poll()
        broken = {combination(p, upstream) for p in first if p.name not in done}
        rest = [p for p in points if p not in first and p.name not in done and combination(p, upstream) not in broken]
        launch(root, rest, jobs, state)
        progress.wait([p.name for p in rest])
        done, _ = progress.poll()
    finally:
        progress.close()
    failed = [p.name for p in points if p.name not in done]
    if failed:
        held = "; the points that share a failed first run's stages were not queued" if broken else ""
        raise GrmuError(
            f"{len(failed)} of {len(points)} grid points did not finish: {', '.join(failed)} "
            f"(`dvc queue logs NAME` says why{held}); fix it and run the same `grmu sweep` again"
        )
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
        help="run a grid of params as DVC experiments on DVC's queue, then one report over the grid",
        description="Every grid point is one DVC experiment (dvc exp run --queue -S key=value ...), run by "
        "dvc queue start --jobs N; the stages every point shares run once. A rerun resumes.",
    )
    sw.add_argument("axes", nargs="*", metavar="KEY=V1,V2", help="a grid axis, e.g. method=scrub,salun")
    sw.add_argument("--grid", default=None, metavar="FILE", help="a YAML grid: key -> list of values")
    sw.add_argument("--jobs", "-j", type=int, default=1, help="experiments at a time (default 1)")
    sw.add_argument("--backend", default="local", help="where the experiments run: local (slurm: not built yet)")
    sw.add_argument("--repo", default=".", help="the grmu DVC repository (default: here)")
    sw.add_argument("--out", default="reports", help="the report's folder (default: reports/)")
    sw.add_argument("--paper", action="store_true", help="report each point next to the paper's tables")
    sw.add_argument("--dry", action="store_true", help="check the grid and print its points; queue nothing")


def main(args) -> int:
    """Run ``grmu sweep``: the report on stdout, one line on stderr for an error."""
    try:
        print(sweep(args.axes, args.grid, args.jobs, args.backend, args.repo, args.out, args.paper, args.dry))
    except GrmuError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: what is queued stays in DVC's queue and goes on running (`dvc queue status`); "
            "run the same `grmu sweep` again to follow it, `dvc queue stop` (--kill: the running ones too) to stop it",
            file=sys.stderr,
        )
        return 130
    return 0
