"""`grmu recover-lock`: make a repository whose ``dvc.lock`` DVC cannot read reproducible again.

DVC rewrites ``dvc.lock`` in place after every stage it runs: it truncates the file, then writes
the new YAML into it (``dvc.utils.serialize._common._dump_data``, not a temporary file and a
rename). A ``dvc repro`` killed in between (``kill -9``, out of memory, a power cut) leaves the
file empty or half-written, and from then on every DVC command, the ``dvc repro`` that should
recover included, stops with DVC's parse or validation error. DVC's record of the stages' read
and write locks, ``.dvc/tmp/rwlock`` (JSON), is rewritten the same way.

``recover`` moves an unreadable ``dvc.lock`` aside to ``dvc.lock.broken`` (and an unreadable
``.dvc/tmp/rwlock`` to ``rwlock.broken``). Without a lock file DVC sees every stage as never run:
``dvc repro`` then restores each stage whose command, deps and params equal a run it recorded in
its run-cache (``.dvc/cache/runs``) from the cache, without running it, and runs the others. It
refuses while a DVC command holds the repository's lock (``.dvc/tmp/lock``): that command may be
writing the file this very moment.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from grmu import GrmuError


def lock_problem(path: Path) -> str | None:
    """Why DVC cannot read the lock file ``path``, in a few words; None when it can."""
    from dvc.exceptions import DvcException
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from dvc.utils.strictyaml import load

    if not path.read_bytes().strip():
        return "it is empty"
    try:
        load(str(path), COMPILED_LOCKFILE_SCHEMA)  # what DVC's Lockfile does when it loads the file
    except DvcException as e:
        cause = e.__cause__ or e
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    return None


def rwlock_problem(path: Path) -> str | None:
    """Why DVC cannot read its rwlock file ``path``; None when it can."""
    from dvc.rwlock import SCHEMA

    try:
        SCHEMA(json.loads(path.read_text()))
    except Exception as e:  # json's ValueError, a bad encoding, DVC's schema (voluptuous.Invalid)
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return None


def _move_aside(path: Path) -> Path:
    broken = path.with_name(path.name + ".broken")
    os.replace(path, broken)
    return broken


def recover(repo: str | Path = ".") -> list[str]:
    """Move an unreadable ``dvc.lock`` / ``.dvc/tmp/rwlock`` of the DVC repository ``repo``
    aside; returns what was done, one line each."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.lock import LockError, make_lock
    from dvc.repo import Repo

    try:
        with Repo(str(repo), uninitialized=False) as dvc_repo:
            root, tmp_dir = Path(dvc_repo.root_dir), Path(dvc_repo.tmp_dir)
            hardlink = dvc_repo.config["core"].get("hardlink_lock", False)
    except NotDvcRepoError as e:
        raise GrmuError(f"{repo} is not in a DVC repository (no .dvc folder above it): {e}") from e
    tmp_dir.mkdir(parents=True, exist_ok=True)
    repo_lock = make_lock(str(tmp_dir / "lock"), tmp_dir=str(tmp_dir), hardlink_lock=hardlink)
    try:
        repo_lock.lock()
    except LockError as e:
        raise GrmuError(
            f"a DVC command is running in {root} (it holds {tmp_dir / 'lock'}): let it finish or stop it, "
            "then run `grmu recover-lock` again"
        ) from e
    try:
        done = []
        lock = root / "dvc.lock"
        problem = lock_problem(lock) if lock.exists() else None
        if problem:
            broken = _move_aside(lock)
            done.append(
                f"dvc.lock was unreadable ({problem}); moved it to {broken.name}. Now run `dvc repro`: "
                "a stage whose run is in DVC's run-cache is restored from it, the others run"
            )
        rwlock = tmp_dir / "rwlock"
        problem = rwlock_problem(rwlock) if rwlock.exists() else None
        if problem:
            broken = _move_aside(rwlock)
            done.append(f"{os.path.relpath(rwlock, root)} was unreadable ({problem}); moved it to {broken.name}")
        if not done:
            state = "DVC reads dvc.lock" if lock.exists() else "there is no dvc.lock (`dvc repro` writes one)"
            done.append(f"nothing to recover: {state}")
        return done
    finally:
        repo_lock.unlock()
