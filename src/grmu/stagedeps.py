"""Stage dependencies derived from the code.

A DVC stage must list in ``deps`` exactly the files whose change can change its outputs: its
script, every grmu module it imports (directly, lazily inside a function, or through other
grmu modules; a package's ``__init__`` counts when a module inside it is imported) and the
data files those modules read (``READS``). ``stage_code(script)`` computes that set from the
source, statically (nothing is imported); ``check(dvc_yaml)`` compares it with each stage's
declared code deps (``src/`` and ``stages/`` entries, folders expanded to their files).

``python -m grmu.stagedeps`` prints each stage script's deps in dvc.yaml's form (a folder
where every file of it is needed).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (src/grmu/ -> root)
SRC = ROOT / "src"
CODE_SUFFIXES = (".py", ".yaml")
# data files that a module reads at run time, relative to src/
READS = {"grmu/recipes/__init__.py": ("grmu/recipes/*.yaml",), "grmu/protocols/__init__.py": ("grmu/protocols/*.yaml",)}
# registries that import every module of their folder at run time (``pkgutil``, not an import
# statement): a stage that imports the package depends on the whole folder
LOADS_FOLDER = {"grmu/methods/__init__.py", "grmu/data/__init__.py"}


def module_path(name: str) -> Path | None:
    """The file of grmu module ``name`` (``grmu.a.b``), or None when it is not one."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    else:
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """grmu modules that the file at ``path`` imports anywhere in its body."""
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = _package_of(path).split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "grmu" or name.startswith("grmu."):
                found.add(name)
    return found


def stage_code(script: str | Path) -> set[Path]:
    """Every file the stage script ``script`` runs or reads: itself, its grmu modules
    (transitively, with their packages' ``__init__``) and their data files."""
    script = Path(script)
    if not script.is_absolute():
        script = ROOT / script
    seen, todo = {script}, [script]
    while todo:
        path = todo.pop()
        names = imported_modules(path)
        if path.is_relative_to(SRC) and path.relative_to(SRC).as_posix() in LOADS_FOLDER:
            names |= {f"{_package_of(path)}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__"}
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                path = module_path(".".join(parts[:i]))
                if path is not None and path not in seen:
                    seen.add(path)
                    todo.append(path)
    for path in list(seen):
        if path.is_relative_to(SRC):
            for pattern in READS.get(path.relative_to(SRC).as_posix(), ()):
                seen.update(SRC.glob(pattern))
    return seen


def code_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts}


def declared_code(deps: list[str]) -> set[Path]:
    """The code files named by a stage's deps (entries under src/ or stages/; folders expanded)."""
    out = set()
    for dep in deps:
        if dep.split("/")[0] not in ("src", "stages"):
            continue
        path = ROOT / dep
        out.update(code_files(path) if path.is_dir() else {path})
    return out


def compact(files: set[Path]) -> list[str]:
    """``files`` as dvc.yaml deps: a folder of src/ where all its code files are needed."""
    out, files = [], set(files)
    for folder in sorted({p.parent for p in files if p.parent != SRC / "grmu" and p.is_relative_to(SRC)}):
        if code_files(folder) <= files:
            out.append(folder.relative_to(ROOT).as_posix())
            files -= code_files(folder)
    return sorted(out + [p.relative_to(ROOT).as_posix() for p in files])


def stage_script(cmd: str) -> str | None:
    for token in cmd.split():
        if token.startswith("stages/") and token.endswith(".py"):
            return token
    return None


def check(dvc_yaml: str | Path = ROOT / "dvc.yaml") -> dict[str, dict[str, list[str]]]:
    """``{stage: {"missing": [...], "unused": [...]}}`` for every stage whose declared code
    deps differ from what its script imports; empty when dvc.yaml is right."""
    import yaml

    stages = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    problems = {}
    for name, stage in stages.items():
        script = stage_script(stage["cmd"])
        if script is None:
            continue
        need, have = stage_code(script), declared_code(stage.get("deps", []))
        if need != have:
            rel = lambda s: sorted(p.relative_to(ROOT).as_posix() for p in s)  # noqa: E731
            problems[name] = {"missing": rel(need - have), "unused": rel(have - need)}
    return problems


def main() -> int:
    for script in sorted((ROOT / "stages").glob("*.py")):
        print(f"{script.relative_to(ROOT)}: [{', '.join(compact(stage_code(script)))}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
