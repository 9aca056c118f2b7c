"""Process-level plumbing shared by every stage: seeding, device, atomic writes, run info."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from grmu import GrmuError, __version__


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:  # the same flag, without importing the compiler's config (grmu never compiles): 1.6 s per stage here
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def device():
    """CUDA when present, else CPU (``GRMU_DEVICE`` overrides)."""
    import torch

    name = os.environ.get("GRMU_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_info(seed: int | None = None) -> dict:
    """Seed, package versions, device and number of training processes (DDP): stored next to every
    stage's outputs. A stage that never loaded torch (evaluation, forget sets: numpy and
    scikit-learn only) records torch's installed version and the cores, without importing it
    (2 s per process)."""
    info = {
        "seed": seed,
        "grmu": __version__,
        "python": platform.python_version(),
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "dvc": _version("dvc"),
        "device": f"cpu ({os.cpu_count()} cores, no torch computation)",
        "processes": 1,
    }
    torch = sys.modules.get("torch")
    if torch is None:
        return info
    dev = device()
    return {
        **info,
        "torch": str(torch.__version__),  # a plain str: TorchVersion is not plain data
        # the CPU's vector instructions pick torch's kernels: float results differ between them
        "device": (
            torch.cuda.get_device_name(dev)
            if dev.type == "cuda"
            else f"cpu ({os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()})"
        ),
        "processes": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
    }


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def removed_on_failure(*paths):
    """Remove ``paths`` (the files and folders a stage writes, None skipped) when the block fails,
    so that a stage writing several files never leaves some of them behind. ``SystemExit(0)``
    (the launcher of distributed processes ending after their success) is not a failure."""
    import shutil

    try:
        yield
    except BaseException as e:
        if not (isinstance(e, SystemExit) and e.code in (0, None)):
            for path in (Path(p) for p in paths if p is not None):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink()
        raise


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path, what: str = "file"):
    path = Path(path)
    if not path.exists():
        raise GrmuError(f"missing {what}: {path} (run the stage that makes it, e.g. `dvc repro`)")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise GrmuError.wrap(
            f"damaged {what}: {path} is not valid JSON (rerun the stage that makes it, "
            "e.g. `dvc repro --force <stage>`)",
            e,
        ) from e


@contextmanager
def live_run(live_dir):
    """A dvclive run logging into ``live_dir`` (None: no logging). If the block fails, the
    folder is removed again (when this run made it), so a failed stage leaves nothing behind."""
    if live_dir is None:
        yield None
        return
    import shutil

    from dvclive import Live

    existed = Path(live_dir).exists()
    try:
        yield Live(str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)
    except BaseException:
        if not existed:
            shutil.rmtree(live_dir, ignore_errors=True)
        raise


def close_live(live, key: str, seconds: float) -> None:
    """Close a dvclive run, with the wall time in its summary (``metrics.json``). The time is
    kept out of the checkpoint so that a rerun with the same params writes the same bytes and
    DVC does not rerun the stages downstream of it."""
    if live is not None:
        live.summary[key] = round(seconds, 3)
        live.end()


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is a GrmuError (one line, exit 2) rather than usage text."""

    def error(self, message):
        raise GrmuError(f"{self.prog}: {message}")


def stage_main(fn) -> None:
    """Run a stage's ``fn()``: a GrmuError becomes one line on stderr and exit code 2."""
    try:
        fn()
    except GrmuError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
