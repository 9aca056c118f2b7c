"""`dvc plots show` / `dvc plots diff` pages that render offline: the template of
`grmu plots-page` (the vega libraries inlined from their checked npm tarballs), opened from disk
by headless Chromium with the network off, every declared plot drawn.

The npm tarballs come from the set-up step (`grmu plots-page`, run by .ci/run), cached in
~/.cache/grmu/npm; the tests never download anything. Without the tarballs, or without headless
Chromium, the tests that need them are skipped with one line saying what to install; with
CI=true (as CI sets it) they fail instead, so CI never skips them silently."""

import os
import re
import shutil
import subprocess
import sys
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from grmu import GrmuError
from grmu.report import plots_page
from ._repo import copy_repo, dvc

CACHE = plots_page.default_cache()


def unavailable(what: str):
    """Skip with one line, or fail under CI=true: CI must run every test it can, never skip one."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="module")
def cache():
    missing = [f"{n}-{v}.tgz" for n, v, _, _ in plots_page.LIBRARIES if not plots_page.tarball(CACHE, n, v).is_file()]
    if missing:
        unavailable(f"no {', '.join(missing)} in {CACHE}: run `grmu plots-page` (needs npm once)")
    return CACHE


@pytest.fixture(scope="module")
def browser():
    found = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if not found:
        unavailable("headless Chromium not found: apt-get install chromium-headless-shell")
    return found


# --------------------------------------------------------------------------- the template


def test_the_template_inlines_the_three_libraries_and_loads_nothing(cache):
    page = plots_page.template(cache)
    assert "{plot_divs}" in page and "{refresh_tag}" in page and "{scripts}" not in page  # no CDN tags
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert page.count("<script>") == 3
    for name, version, _, _ in plots_page.LIBRARIES:
        assert f"<!-- {name} {version} (npm)" in page
    assert page.index("<!-- vega 5") < page.index("<!-- vega-lite") < page.index("<!-- vega-embed")


def test_a_tarball_that_is_not_the_published_one_is_refused(cache, tmp_path):
    for name, version, _, _ in plots_page.LIBRARIES:
        shutil.copy(plots_page.tarball(cache, name, version), tmp_path)
    fake = plots_page.tarball(tmp_path, "vega-lite", "5.2.0")
    with tarfile.open(fake, "w:gz") as tar:  # a valid tarball with other content
        src = tmp_path / "x.js"
        src.write_text("alert(1)")
        tar.add(src, "package/build/vega-lite.min.js")
    with pytest.raises(
        GrmuError,
        match=r"vega-lite-5.2.0.tgz is not vega-lite 5.2.0 as published \(sha512 "
        r".*delete it and run `grmu plots-page` again$",
    ):
        plots_page.template(tmp_path)


def test_install_writes_the_template_and_the_local_config_only(cache, tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    config = (tmp_path / ".dvc" / "config").read_text()
    target = plots_page.install(tmp_path, cache)
    assert target == tmp_path / ".dvc" / "plots.html" and target.read_text() == plots_page.template(cache)
    assert "html_template = plots.html" in (tmp_path / ".dvc" / "config.local").read_text()
    assert (tmp_path / ".dvc" / "config").read_text() == config  # nothing committed changes
    assert not list((tmp_path / ".dvc").glob("*.tmp"))


def test_no_npm_and_no_tarballs_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(
        GrmuError,
        match=r"^npm not found; install Node.js, or copy vega-5.20.2.tgz, "
        r"vega-lite-5.2.0.tgz, vega-embed-6.18.2.tgz \(npm pack vega@5.20.2 "
        r"vega-lite@5.2.0 vega-embed@6.18.2\) into ",
    ):
        plots_page.fetch(tmp_path / "empty")
    (tmp_path / "r").mkdir()
    with pytest.raises(GrmuError, match="is not a DVC repository"):
        plots_page.install(tmp_path / "r", tmp_path / "empty")


# --------------------------------------------------------------------------- in a browser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Drawn(HTMLParser):
    """Which elements with an ``id`` contain an ``svg`` or ``canvas``."""

    def __init__(self):
        super().__init__()
        self.stack, self.drawn = [], set()

    def handle_starttag(self, tag, attrs):
        if tag in ("svg", "canvas"):
            self.drawn.update(i for _, i in self.stack if i)
        if tag not in VOID:
            self.stack.append((tag, dict(attrs).get("id")))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break


def render(browser: str, page: Path) -> tuple[set, list[str], set]:
    """(ids of the page's vega plots, console errors, ids drawn) with the network off: a new
    network namespace where possible, and a proxy that does not exist in any case."""
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        "--virtual-time-budget=20000",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        page.as_uri(),
    ]
    if shutil.which("unshare") and subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0:
        cmd = ["unshare", "--net", *cmd]  # root with the right to make namespaces: no network at all
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    plots = set(re.findall(r"vegaEmbed\('#([^']+)'", page.read_text()))
    errors = [ln for ln in res.stderr.splitlines() if ":ERROR:CONSOLE" in ln or "Uncaught" in ln]
    parser = _Drawn()
    parser.feed(res.stdout)
    return plots, errors, parser.drawn & plots


@pytest.fixture(scope="module")
def repo(tmp_path_factory, cache):
    """A committed copy of the repository (its committed plots/ data, one seed) with a second
    commit whose GA-vs-ratio data differ, and the offline template installed."""
    path, run = copy_repo(tmp_path_factory.mktemp("plots") / "repo")
    csv = path / "plots" / "ga_vs_ratio.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0], *(re.sub(r",([\d.]+)$", ",50.0", ln) for ln in lines[1:]), ""]))
    hist = path / "plots" / "memorization" / "1.csv"  # a stage output, not in git: the seed's histogram
    hist.parent.mkdir(parents=True, exist_ok=True)
    hist.write_text("score,count\n0.0,40\n0.5,7\n1.0,3\n")
    run("git", "add", "-f", str(hist))
    run("git", "commit", "-qam", "other results")
    run("grmu", "plots-page", "--cache", str(cache))
    return path, run


@pytest.mark.slow
@pytest.mark.parametrize("command", [["plots", "show"], ["plots", "diff", "HEAD~1", "HEAD"]])
def test_every_plot_renders_offline(browser, repo, command):
    path, run = repo
    out = path / ("page_" + command[1])
    dvc(run, *command, "-o", str(out))
    plots, errors, drawn = render(browser, out / "index.html")
    assert len(plots) == 5, plots  # GA vs ratio, per-group accuracy, 2 training curves, the memorization histogram
    assert drawn == plots, f"not drawn: {sorted(plots - drawn)}"
    assert not errors, errors
    if command[1] == "diff":
        assert "HEAD~1" in (out / "index.html").read_text()


@pytest.mark.slow
def test_without_the_template_the_page_draws_nothing_offline(browser, repo):
    """The check above can fail: DVC's default page (vega from a CDN) stays blank here."""
    path, run = repo
    (path / ".dvc" / "config.local").unlink()
    try:
        dvc(run, "plots", "show", "-o", str(path / "page_cdn"))
        plots, _, drawn = render(browser, path / "page_cdn" / "index.html")
    finally:
        run("grmu", "plots-page", "--cache", str(CACHE))
    assert plots and not drawn
