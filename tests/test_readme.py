"""The "Adding a dataset" and "Adding an unlearning method" recipes of docs/contributing.md run as written:
their code blocks are extracted, executed, and the new dataset and method go through the
stages (prepare; forget set, pretrain, unlearn, evaluate)."""

import re
from pathlib import Path

import pytest
import yaml

from grmu.config import validate
from grmu.data import DATASETS
from grmu.methods import METHODS
from grmu.prepared import load_prepared
from grmu.stages import evaluate, forget_set, pretrain, prepare, unlearn
from tests._repo import merge
from tests.conftest import small_params

DOC = Path(__file__).resolve().parents[1] / "docs" / "contributing.md"  # linked from README.md
TEXT = DOC.read_text()


def section(heading: str) -> str:
    start = TEXT.index(f"\n{heading}\n") + len(heading) + 2
    end = TEXT.find("\n## ", start)
    return TEXT[start:] if end < 0 else TEXT[start:end]


def block(text: str, lang: str) -> str:
    found = re.search(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)
    assert found, f"no ```{lang} block"
    return found.group(1)


@pytest.fixture
def readme_plugins():
    """Execute both snippets of docs/contributing.md; unregister what they registered afterwards."""
    ds, ms = section("## Adding a dataset"), section("## Adding an unlearning method")
    exec(compile(block(ds, "python"), "docs/contributing.md: Adding a dataset", "exec"), {})
    exec(compile(block(ms, "python"), "docs/contributing.md: Adding an unlearning method", "exec"), {})
    yield merge(yaml.safe_load(block(ds, "yaml")), yaml.safe_load(block(ms, "yaml")))
    DATASETS.remove("my_dataset")
    METHODS.remove("my_method")


def test_readme_dataset_and_method_run_through_the_stages(readme_plugins, tmp_path):
    params = validate(merge(small_params(dataset="my_dataset", method="my_method"), readme_plugins))
    assert params["methods"]["my_method"] == {"ascent_weight": None}  # null: the registered default
    prepare.run(params, tmp_path / "prep")
    prep = load_prepared(tmp_path / "prep")
    assert len(prep.y) == params["datasets"]["my_dataset"]["n"] and set(prep.split) == {"train", "val", "test"}
    forget_set.run(params, tmp_path / "prep", 0.5, 0, tmp_path / "f.json")
    pretrain.run(params, tmp_path / "prep", 0, tmp_path / "pre.pt")
    info = unlearn.run(params, tmp_path / "prep", tmp_path / "pre.pt", tmp_path / "f.json", 0, tmp_path / "u.pt")
    assert info["name"] == "my_method" and info["options"] == {"ascent_weight": 1.0}
    result = evaluate.run(
        params, tmp_path / "prep", tmp_path / "u.npz", tmp_path / "f.json", "unlearned", tmp_path / "u.json"
    )
    assert 0 <= result["metrics"]["UA"] <= 100
