"""The package's declared dependencies and the install lock stay in step, and `pip install .`
into an empty virtual environment gives a working `grmu` command."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pins(path: Path) -> dict[str, str]:
    """name -> version of every ``name==version`` line (``name[extra]==version`` too)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
            out[canonicalize_name(req.name)] = spec.version
    return out


def declared() -> dict[str, list[Requirement]]:
    """'core' and each extra -> its requirements from pyproject.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    return {k: [Requirement(r) for r in v] for k, v in groups.items()}


def test_the_lock_pins_every_declared_dependency_inside_its_range():
    lock = pins(ROOT / "constraints.txt")
    for group, reqs in declared().items():
        for req in reqs:
            name = canonicalize_name(req.name)
            if name == "grmu":
                continue  # an extra naming other extras
            if group == "ssh":
                continue  # optional remote plugin, not in the lock (docs/sharing-and-scaling.md: pip install -e .[ssh])
            assert name in lock, f"{req} ({group}) is not pinned in constraints.txt"
            assert req.specifier.contains(lock[name], prereleases=True), (
                f"constraints.txt pins {name}=={lock[name]}, outside {req} ({group})"
            )


def test_requirements_are_the_declared_dependencies_at_the_locked_versions():
    reqs, lock = pins(ROOT / "requirements.txt"), pins(ROOT / "constraints.txt")
    groups = declared()
    names = {canonicalize_name(r.name) for k, rs in groups.items() if k != "ssh" for r in rs} - {"grmu"}
    assert set(reqs) == names, "requirements.txt and pyproject.toml list other packages"
    for name, version in reqs.items():
        assert lock[name] == version, f"requirements.txt pins {name}=={version}, constraints.txt {lock[name]}"
    core = {canonicalize_name(r.name) for r in groups["core"]}
    assert {"torch", "dvc", "dvclive", "numpy"} <= core and "transformers" not in core and "pytest" not in core


def test_the_runtime_imports_only_declared_packages():
    """Every third-party module that src/grmu imports belongs to a declared distribution."""
    from importlib.metadata import packages_distributions

    provided = packages_distributions()
    allowed = {canonicalize_name(r.name) for rs in declared().values() for r in rs}
    stdlib = sys.stdlib_module_names
    for path in (ROOT / "src" / "grmu").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
        for top in {name.split(".")[0] for name in names}:
            if top in stdlib or top in ("grmu", "__future__"):
                continue
            dists = {canonicalize_name(d) for d in provided.get(top, [])}
            assert dists & allowed, (
                f"{path.relative_to(ROOT)} imports {top} ({dists or 'no distribution'}), "
                "which pyproject.toml does not declare"
            )


@pytest.mark.slow
def test_installing_the_package_into_an_empty_venv_gives_a_working_grmu(tmp_path):
    """`pip install .` (no extras, the lock as constraints) into a fresh venv: `grmu methods`
    and `grmu datasets` run, and the core install does not pull the text extra. The resolver
    is uv's, with the warm cache that tools/setup.sh left (~45 s here), when uv is in this venv:
    it reads the same package metadata as pip, which downloads and unpacks the ~6 GB of
    torch's CUDA wheels anew each time (~4 min here); GRMU_INSTALLER=pip makes the test use pip."""
    import os
    import shutil

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if os.environ.get("GRMU_INSTALLER", "uv" if uv else "pip") == "uv":
        cmd = [uv, "pip", "install", "--python", python, "-q"]
    else:
        cmd = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    from tests._repo import tracked_files

    source = tmp_path / "grmu"  # a copy: building from the checkout would leave build/ there
    for f in tracked_files():
        (source / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, source / f)
    subprocess.run([*cmd, "-c", str(source / "constraints.txt"), str(source)], check=True, cwd=tmp_path)
    grmu = str(venv / "bin" / "grmu")
    # the installed package lists the checkout's methods and datasets, all of them (the first word
    # of each line is a name; the checkout's lists come from a fresh process of its own registries)
    for command in ("methods", "datasets"):
        names = []
        for cmd, cwd in (([grmu, command], tmp_path), ([sys.executable, "-m", "grmu.cli", command], ROOT)):
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=True).stdout
            names.append([line.split()[0] for line in out.splitlines() if line.strip()])
        assert names[0] == names[1] and len(names[0]) > 1, names
    # the package data: recipes, training protocols and the paper's tables
    recipes = subprocess.run(
        [grmu, "recipes", "celeba"], capture_output=True, text=True, cwd=tmp_path, check=True
    ).stdout
    assert "celeba (training protocol)" in recipes and "miu+reweight" in recipes
    rows = subprocess.run(
        [python, "-c", "from grmu.report.paper import paper_table; print(len(paper_table()))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert int(rows) == 888
    probe = "import importlib.util as u, grmu.stages.unlearn, grmu.report.compare; print(u.find_spec('transformers'))"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"  # the core install does not pull the text extra
