"""Process-level plumbing shared by every stage: seeding, device, atomic writes, run info."""

from __future__ import annotations

import argparse
import errno
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
    # deterministic mode also fills every new tensor's memory (NaN), hundreds of kernel launches
    # per ResNet step that cost a GPU run ~40% of its speed; grmu never reads memory it did not
    # write, so the results are the same bytes without it (bench/determinism.py)
    torch.utils.deterministic.fill_uninitialized_memory = False
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
    scikit-learn only) computed nothing with it: its torch and device are null (importing torch
    to name them costs 2 s per process); the evaluated model's own run info names them."""
    info = {
        "seed": seed,
        "grmu": __version__,
        "python": platform.python_version(),
        "torch": None,
        "torchvision": _version("torchvision"),
        "dvc": _version("dvc"),
        "device": None,
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


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)  # no room, no permission


def write_failed(path, e: OSError) -> GrmuError:
    """The one line for an output that could not be written: a full disk, a read-only folder."""
    folder = Path(e.filename).parent if isinstance(e.filename, (str, Path)) else Path(path).parent
    read_only = f"the folder {folder} is not writable: fix its permissions or write elsewhere"
    hints = {
        errno.ENOSPC: "the disk is full: free space and rerun",
        errno.EDQUOT: "the disk quota is used up: free space and rerun",
        errno.EACCES: read_only,
        errno.EPERM: read_only,
        errno.EROFS: f"the folder {folder} is on a read-only file system",
    }
    reason = e.strerror or str(e) or type(e).__name__
    return GrmuError(f"cannot write {path}: {reason}; {hints.get(e.errno, 'nothing was saved')}")


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A write that fails for want of space or permission (``OSError``: a full disk, a read-only
    folder) becomes one line naming ``path`` (``write_failed``); the temporary file is removed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 → what open() would have made
        os.replace(tmp, path)
    except OSError as e:
        raise write_failed(path, e) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def removed_on_failure(*paths):
    """Remove ``paths`` (the files and folders a stage writes, None skipped) when the block fails,
    so that a stage writing several files never leaves some of them behind. ``SystemExit(0)``
    (the launcher of distributed processes ending after their success) is not a failure; a config
    file that the stage read and that changed while the block ran is one (``check_configs``)."""
    import shutil

    try:
        yield
        check_configs()
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


class _WriteErrors:
    """A file for ``torch.save`` that keeps the ``OSError`` of a failed write (a full disk):
    torch reports it as a ``RuntimeError`` of its zip writer ("unexpected pos …")."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):  # flush, seek, tell: the file's own
        return getattr(self.f, name)


def torch_save(obj, path: str | Path) -> None:
    """``torch.save(obj)`` into the file ``path`` (no temporary file: use ``atomic_path``
    around it), through a file object, so that the archive's name is not ``path``'s (a random
    temporary name) and a failed write (a full disk) is the ``OSError`` it is, not torch's
    ``RuntimeError``."""
    import torch

    with open(path, "wb") as f:
        out = _WriteErrors(f)
        try:
            torch.save(obj, out)
        except RuntimeError as e:
            if out.error is None:
                raise
            raise out.error from e


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
    folder is removed again (when this run made it), so a failed stage leaves nothing behind; a
    log that cannot be written (a full disk, a read-only folder) is one line (``write_failed``)."""
    if live_dir is None:
        yield None
        return
    import shutil

    from dvclive import Live

    existed = Path(live_dir).exists()
    try:
        yield Live(str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)
    except BaseException as e:
        if not existed:
            shutil.rmtree(live_dir, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:  # dvclive's own files (curves, summary)
            raise write_failed(e.filename or live_dir, e) from e
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


# The config files (params.yaml, recipes, protocols) that this stage process has read: each one's
# text as the stage used it, and whether it is the params file. None outside a stage (``stage_main``
# starts the record).
_CONFIGS: dict[Path, tuple[str, bool]] | None = None
_MISSING = object()


def read_config(path: str | Path, params: bool = False) -> str:
    """The text of a config file that decides what a stage computes (``params.yaml`` when
    ``params``, a recipe, a protocol); inside a stage it is kept for ``check_configs``."""
    path = Path(path)
    text = path.read_text()
    if _CONFIGS is not None:
        _CONFIGS.setdefault(path.resolve(), (text, params))
    return text


def tracked_keys(stage: str | None, dvc_yaml: str | Path = "dvc.yaml") -> list[str] | None:
    """The keys of params.yaml that DVC records for ``stage`` (its ``params`` in ``dvc_yaml``; a
    templated key such as ``retrain.${item.variant}`` counts as its section), or None when that is
    the whole file or cannot be told (no stage name: a stage run by hand)."""
    import yaml

    if not stage or ":" in stage:
        return None
    try:
        entry = yaml.safe_load(Path(dvc_yaml).read_text())["stages"][stage.split("@")[0]]
        items = entry.get("params") or []
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    keys = []
    for item in items:
        if isinstance(item, dict):  # {file: [keys]}; an empty list or none: the whole file
            for file, sub in item.items():
                if file == "params.yaml":
                    if not sub:
                        return None
                    keys += [str(k) for k in sub]
        elif ":" in str(item):  # file:key,key
            file, _, sub = str(item).partition(":")
            if file == "params.yaml":
                if not sub:
                    return None
                keys += sub.split(",")
        else:
            keys.append(str(item))
    keys = [k.split("${")[0].rstrip(".") for k in keys]
    return None if "" in keys else keys


def _value(tree, dotted: str):
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def changed_keys(before: str, after: str, keys: list[str]) -> list[str] | None:
    """The ``keys`` whose values differ between two texts of params.yaml (None: one does not parse)."""
    import yaml

    try:
        old, new = yaml.safe_load(before), yaml.safe_load(after)
    except yaml.YAMLError:
        return None
    return [k for k in keys if _value(old, k) != _value(new, k)]


def check_configs() -> None:
    """Refuse with one line when a config file this stage read has changed since (or is gone).

    DVC records a stage's params and deps in ``dvc.lock`` (and its run-cache) as it finds them
    *after* the command ends (treeverse/dvc#11058): had ``params.yaml`` been rewritten meanwhile
    (a second ``dvc exp run -S`` in the same workspace, an editor), the lock would pair these
    outputs with values they were not made with, and ``dvc status`` would call them up to date.
    Failing the stage records nothing. In params.yaml only the keys that DVC records for this
    stage count (``tracked_keys`` of ``$DVC_STAGE``, which DVC sets; every key without it); the
    recipe and protocol files count whole (they are deps)."""
    keys = tracked_keys(os.environ.get("DVC_STAGE"))
    for path, (text, params) in (_CONFIGS or {}).items():
        try:
            now = path.read_text()
        except (OSError, UnicodeDecodeError):
            now = None
        if now == text:
            continue
        changed = None if not params or keys is None or now is None else changed_keys(text, now, keys)
        if changed == []:
            continue  # keys that DVC does not record for this stage: the record stays true
        detail = f" ({', '.join(changed)})" if changed else ""
        raise GrmuError(
            f"{os.path.relpath(path)} changed while this stage ran{detail}: "
            "another `dvc exp run -S`, or an edit, in this workspace? DVC would record values these outputs were not "
            "made with, so nothing is kept; run one experiment at a time per workspace (`dvc exp run --queue -S ...`, "
            "then `dvc queue start`) and rerun (docs/troubleshooting.md)"
        )


def stage_main(fn) -> None:
    """Run a stage's ``fn()``: a GrmuError becomes one line on stderr and exit code 2. The config
    files ``fn`` reads must be the same when it ends (``check_configs``; a stage that writes its
    outputs under ``removed_on_failure`` has them removed then)."""
    global _CONFIGS
    _CONFIGS = {}
    try:
        try:
            fn()
        except SystemExit as e:  # the launcher of distributed processes, after their success
            if e.code not in (0, None):
                raise
        check_configs()
    except GrmuError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        _CONFIGS = None
