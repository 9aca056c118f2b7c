"""Reading committed result files straight from git (a commit or an experiment's ref), without
checking it out: the report's one reader, shared by the results comparison and the audit table."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_show(repo: Path, rev: str, path: str) -> str | None:
    """The text of ``path`` at ``rev``, or None where that commit has no such file."""
    res = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{path}"], capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else None


def git_files(repo: Path, rev: str, folder: str, suffix: str) -> list[str]:
    """The names in ``folder`` at ``rev`` ending with ``suffix``, sorted; none where it has no such folder."""
    res = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "--name-only", f"{rev}:{folder}"], capture_output=True, text=True
    )
    return sorted(n for n in res.stdout.split() if n.endswith(suffix)) if res.returncode == 0 else []
