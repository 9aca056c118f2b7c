"""Structure: dvc.yaml's code deps equal what each stage imports, no import cycle in src/,
metrics.py is pure (no torch), and the registries know every module of their packages."""

import ast
from pathlib import Path

import pytest
import yaml

from grmu import stagedeps
from grmu.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def test_dvc_yaml_deps_match_the_code():
    problems = stagedeps.check(ROOT / "dvc.yaml")
    assert not problems, "dvc.yaml deps differ from the imports (run `python -m grmu.stagedeps`): " + repr(problems)


def _dvc_yaml_with(tmp_path, edit) -> Path:
    d = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    edit(d["stages"])
    path = tmp_path / "dvc.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_the_check_catches_a_missing_and_an_unused_dep(tmp_path):
    def drop_metrics(stages):
        stages["aggregate"]["deps"].remove("src/grmu/metrics.py")

    def add_unused(stages):
        stages["pretrain"]["deps"].append("src/grmu/robust.py")

    missing = stagedeps.check(_dvc_yaml_with(tmp_path, drop_metrics))
    assert missing == {"aggregate": {"missing": ["src/grmu/metrics.py"], "unused": []}}
    unused = stagedeps.check(_dvc_yaml_with(tmp_path, add_unused))
    assert unused == {"pretrain": {"missing": [], "unused": ["src/grmu/robust.py"]}}


def test_lazy_and_transitive_imports_and_data_files_count():
    """unlearn imports methods lazily (registry), methods import train, recipes read YAML files."""
    code = {p.relative_to(ROOT).as_posix() for p in stagedeps.stage_code("stages/unlearn.py")}
    assert {
        "src/grmu/methods/miu.py",
        "src/grmu/train.py",
        "src/grmu/recipes/celeba.yaml",
        "src/grmu/methods/__init__.py",
        "src/grmu/__init__.py",
    } <= code
    pre = {p.relative_to(ROOT).as_posix() for p in stagedeps.stage_code("stages/pretrain.py")}
    assert "src/grmu/metrics.py" not in pre and "src/grmu/recipes/celeba.yaml" not in pre
    assert "src/grmu/methods/miu.py" not in pre


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_in_src():
    """Following every grmu import (top-level or lazy), no module reaches itself again,
    except a package's own modules registering into it (``from grmu.x import register``)."""
    graph = {}
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        deps = set()
        for imp in stagedeps.imported_modules(path):
            target = stagedeps.module_path(imp)
            if target is not None:
                deps.add(_module_name(target))
        graph[name] = deps - {name}

    def is_registration(a, b):  # a package loading its own plug-in modules, which import it back
        return b.startswith(a + ".") or a.startswith(b + ".")

    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in graph.get(node, ()):
            if is_registration(node, dep):
                continue
            if state.get(dep) == "open":
                pytest.fail(f"import cycle: {' -> '.join(stack + [node, dep])}")
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_metrics_is_pure():
    tree = ast.parse((SRC / "grmu" / "metrics.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "numpy", "sklearn"}, imported


@pytest.mark.parametrize(
    "package,names",
    [
        ("methods", lambda: __import__("grmu.methods", fromlist=["x"]).METHODS.names()),
        ("data", lambda: __import__("grmu.data", fromlist=["x"]).DATASETS.names()),
    ],
)
def test_every_module_of_a_registry_package_is_loaded(package, names):
    """A new method or dataset file must be added to its package's `_load_builtin` import."""
    import importlib
    import sys

    registered = set(names())
    helpers = {"images"}
    for path in (SRC / "grmu" / package).glob("*.py"):
        if path.stem in ("__init__",) or path.stem in helpers:
            continue
        mod = f"grmu.{package}.{path.stem}"
        assert mod in sys.modules or importlib.util.find_spec(mod), mod
        assert mod in sys.modules, f"{mod} is not imported by grmu.{package}._load_builtin"
    assert registered


def test_registries_refuse_unknown_names_with_the_valid_ones():
    from grmu import GrmuError
    from grmu.augment import get_augmentation
    from grmu.data import get_dataset
    from grmu.methods import get_method
    from grmu.models import build_model

    with pytest.raises(GrmuError, match=r"unknown method 'scurb'; valid: " + ", ".join(METHODS.names()) + "$"):
        get_method("scurb")
    with pytest.raises(GrmuError, match=r"unknown dataset 'imagenet'; valid: .*colored_mnist"):
        get_dataset("imagenet")
    with pytest.raises(
        GrmuError, match=r"unknown model.arch 'vit'; valid: bert, resnet18, resnet18_cifar, small_cnn, tiny_bert"
    ):
        build_model({"arch": "vit", "width": 8}, 2, (3, 8, 8))
    with pytest.raises(GrmuError, match=r"unknown augmentation 'mixup'; valid: crop_flip, crop_pad_flip, shift"):
        get_augmentation("mixup")


def test_bytecode_caches_in_code_folders_are_not_hashed(tmp_path):
    """An import writes __pycache__ into the folders stages depend on (src/grmu/protocols...) where
    PYTHONDONTWRITEBYTECODE is unset; DVC must not hash them, or every stage looks changed."""
    import subprocess
    import sys

    dvc = Path(sys.executable).parent / "dvc"
    folder = SRC / "grmu" / "protocols" / "__pycache__"
    names = [f"{folder.relative_to(ROOT)}/x.cpython-311.pyc", "src/grmu/methods/stray.pyc"]
    res = subprocess.run([str(dvc), "check-ignore", *names], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.split() == names, res.stdout + res.stderr
    kept = subprocess.run([str(dvc), "check-ignore", "src/grmu/protocols/celeba.yaml"], cwd=ROOT, capture_output=True)
    assert kept.returncode == 1  # the code itself is hashed
