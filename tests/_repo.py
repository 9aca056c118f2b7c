"""Helpers of the end-to-end tests: a committed temporary git copy of this repository with
shrunk params, and a runner of commands inside it (or inside a clone of it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]

# The real pipeline, shrunk to run on CPU in about a minute.
SHRUNK = {
    "seeds": [1],
    "ratios": [0.5, 1.0],
    "datasets": {"colored_mnist": {"image_size": 14}},
    "model": {"width": 8},
    "train": {"epochs": 2, "batch_size": 256, "warmup_epochs": 0},
    "unlearn": {"epochs": 1, "batch_size": 256},
    "eval": {"mia": "single"},
}

Run = Callable[..., subprocess.CompletedProcess]


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, recursively for dicts (lists are replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tracked_files() -> list[str]:
    """The files git would commit in this checkout (tracked, plus untracked but not ignored)."""
    res = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [f for f in res.stdout.splitlines() if (ROOT / f).is_file()]


def repo_env(path: Path, **extra: str) -> dict:
    """Environment of commands run in the repository copy at ``path``: this interpreter's
    scripts first on PATH, its own ``src`` importable, a fixed git identity, no analytics."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(path / "src"),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        **extra,
    }


def runner(path: Path, env: dict | None = None) -> Run:
    """``run(*cmd, check=True)``: run a command in ``path``, raising with its output tails on failure."""
    env = repo_env(path) if env is None else env

    def run(*cmd, check=True):
        res = subprocess.run(list(cmd), cwd=path, env=env, capture_output=True, text=True)
        if check and res.returncode != 0:
            raise AssertionError(f"{cmd} in {path} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    return run


def copy_repo(dst: Path, over: dict | None = None) -> tuple[Path, Run]:
    """A committed git copy of the repository at ``dst`` with SHRUNK (and then ``over``) merged
    into params.yaml; returns ``(dst, run)``."""
    for f in tracked_files():
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), SHRUNK)
    (dst / "params.yaml").write_text(yaml.safe_dump(merge(params, over or {}), sort_keys=False))
    run = runner(dst)
    run("git", "init", "-q")
    if not (dst / ".dvc").exists():
        run(sys.executable, "-m", "dvc", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "init")
    return dst, run


def restore_committed(path: Path, run: Run, *pathspecs: str) -> None:
    """Put the files git tracks under ``pathspecs`` back to their committed content. They are
    deleted first: a file rewritten with the same size within the second of the last ``git add``
    (as ``dvc exp run`` can do to a stage output) passes git's stat check, and a plain
    ``git checkout -- path`` would leave its new content in place."""
    listed = run("git", "ls-files", "-z", "--", *pathspecs).stdout.split("\0")
    for name in filter(None, listed):
        (path / name).unlink(missing_ok=True)
    run("git", "checkout", "HEAD", "--", *pathspecs)


def dvc(run: Run, *args, **kw) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "dvc", *args, **kw)


def ran_stages(output: str) -> set[str]:
    """Names of the stages that a ``dvc repro`` / ``dvc exp run`` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}
