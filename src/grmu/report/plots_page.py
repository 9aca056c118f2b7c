"""A self-contained page template for `dvc plots show` and `dvc plots diff`.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so on a machine without
internet every interactive plot stays blank. ``grmu plots-page`` writes ``.dvc/plots.html``, a
DVC HTML template with the three libraries inlined (the versions DVC's own page asks for), and
points the repository's local DVC config (``.dvc/config.local``, not committed) at it:
``plots.html_template = plots.html``. After that both commands write pages that render offline.

The libraries come from the npm registry, as the packages' release tarballs fetched once with
``npm pack`` into a cache folder (or copied there by hand on a machine without npm), each
checked against the sha512 pinned below before anything is read from it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from grmu import GrmuError

# (package, version, file in the tarball, npm's sha512 integrity of the tarball): the versions
# dvc-render's default page loads
LIBRARIES = (
    (
        "vega",
        "5.20.2",
        "package/build/vega.min.js",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
    ),
    (
        "vega-lite",
        "5.2.0",
        "package/build/vega-lite.min.js",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
    ),
    (
        "vega-embed",
        "6.18.2",
        "package/build/vega-embed.min.js",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
    ),
)
TEMPLATE_NAME = "plots.html"
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
SCRIPTS
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "grmu" / "npm"


def tarball(cache: Path, name: str, version: str) -> Path:
    return cache / f"{name}-{version}.tgz"


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(cache: Path) -> None:
    """``npm pack`` the libraries whose tarball is not in ``cache`` yet."""
    missing = [f"{name}@{version}" for name, version, _, _ in LIBRARIES if not tarball(cache, name, version).is_file()]
    if not missing:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise GrmuError(
            f"npm not found; install Node.js, or copy {', '.join(m.replace('@', '-') + '.tgz' for m in missing)} "
            f"(npm pack {' '.join(missing)}) into {cache}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([npm, "pack", *missing, "--pack-destination", str(cache)], capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise GrmuError(f"npm pack {' '.join(missing)} failed: {last}")


def scripts(cache: Path) -> str:
    """The three libraries as inline ``<script>`` elements, each read from its checked tarball."""
    out = []
    for name, version, member, pinned in LIBRARIES:
        path = tarball(cache, name, version)
        got = integrity(path)
        if got != pinned:
            raise GrmuError(
                f"{path} is not {name} {version} as published (sha512 {got[:24]}…, expected "
                f"{pinned[:24]}…); delete it and run `grmu plots-page` again"
            )
        with tarfile.open(path, "r:gz") as tar:
            code = tar.extractfile(member).read().decode("utf-8")
        if "</script" in code.lower():  # would end the inline element early
            raise GrmuError(f"{name} {version}'s {member} cannot be inlined: it contains '</script'")
        out.append(f"    <!-- {name} {version} (npm), BSD-3-Clause -->\n    <script>{code}</script>")
    return "\n".join(out)


def template(cache: Path) -> str:
    return PAGE.replace("SCRIPTS", scripts(cache))


def install(repo: str | Path = ".", cache: str | Path | None = None) -> Path:
    """Write ``<repo>/.dvc/plots.html`` (temp file, then rename) and set ``plots.html_template``
    in the repository's local DVC config; returns the template's path."""
    from dvc.repo import Repo

    repo = Path(repo)
    if not (repo / ".dvc").is_dir():
        raise GrmuError(f"{repo.resolve()} is not a DVC repository (no .dvc folder)")
    cache = Path(cache) if cache else default_cache()
    fetch(cache)
    page = template(cache)
    target = repo / ".dvc" / TEMPLATE_NAME
    tmp = repo / ".dvc" / "tmp" / f"{TEMPLATE_NAME}.tmp"  # DVC's own git-ignored folder
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    with Repo(str(repo)) as r, r.config.edit("local") as conf:
        conf.setdefault("plots", {})["html_template"] = TEMPLATE_NAME
    return target
