"""Catalogue of bad inputs. Each must give: a non-zero exit, one last line on stderr that names
the bad value (and the valid choices where there are some), no traceback, and no new or
changed file. Params are checked by the `check_params` stage (which runs before every other
stage); damaged artifacts by the stage that reads them."""

import math
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from grmu.methods import METHODS
from grmu.stages.forget_set import run as forget_set
from tests.conftest import repo_params, small_params

ROOT = Path(__file__).resolve().parents[1]
DELETE = object()


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def run_script(script: str, argv: list, capsys, folder: Path):
    """Run stages/<script> in-process as `dvc repro` would; return (exit code, stderr); assert
    that it wrote nothing into ``folder``."""
    before = snapshot(folder)
    old = sys.argv
    sys.argv = [script, *map(str, argv)]
    try:
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")
    finally:
        sys.argv = old
    err = capsys.readouterr().err
    assert snapshot(folder) == before, "a failed stage left or changed files"
    return stop.value.code, err


def assert_one_line(code, err, *fragments):
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    for frag in fragments:
        assert frag in last, f"{frag!r} not in {last!r}"


def edit(params: dict, key: str, value):
    *path, last = key.split(".")
    d = params
    for k in path:
        d = d[k]
    if value is DELETE:
        del d[last]
    else:
        d[last] = value


PARAM_CASES = [
    # (key, value, fragments of the one line)
    ("trian", {"epochs": 3}, ["unknown key 'trian'", "valid keys here:", "train"]),
    ("train.learning_rate", 0.1, ["unknown key 'train.learning_rate'", "lr"]),
    ("method", "scurb", ["unknown method 'scurb'", "valid: " + ", ".join(METHODS.names())]),
    ("dataset", "imagenet", ["unknown dataset 'imagenet'", "colored_mnist"]),
    ("model.arch", "vit", ["unknown model.arch 'vit'", "valid: bert, resnet18, resnet18_cifar, small_cnn, tiny_bert"]),
    ("recipe", "celebA", ["unknown recipe 'celebA'", "valid: auto, none,", "celeba"]),
    ("methods.scrub.temprature", 2, ["unknown key 'methods.scrub.temprature'", "temperature"]),
    ("methods.scurb", {}, ["unknown method 'scurb'", "scrub"]),
    ("datasets.colored_mnist.size", 14, ["unknown key 'datasets.colored_mnist.size'", "image_size"]),
    ("forget.level", "highest", ["forget.level 'highest' is unknown", "valid: high, mid, low, mix"]),
    ("memorization.score", "loss", ["memorization.score 'loss' is unknown", "valid: auto, none, heldout, confidence"]),
    ("memorization.fraction", 0, ["memorization.fraction must be a finite number > 0 and < 1, got 0"]),
    ("memorization.model", 4, ["unknown key 'memorization.model'", "models"]),
    ("datasets.celbea", {"image_size": 224}, ["unknown dataset 'celbea'", "celeba"]),
    ("datasets.colored_mnist.image_size", DELETE, ["'datasets.colored_mnist.image_size'"]),
    ("train.lr", DELETE, ["params lack the key 'train.lr'"]),
    ("train.lr", -0.1, ["train.lr must be a finite number > 0", "got -0.1"]),
    ("train.lr", "abc", ["train.lr must be a finite number > 0", "got 'abc'"]),
    ("train.lr", math.nan, ["train.lr must be a finite number > 0", "got nan"]),
    ("train.lr", math.inf, ["train.lr must be a finite number > 0", "got inf"]),
    ("train.momentum", "x", ["train.momentum must be a finite number >= 0 and < 1", "got 'x'"]),
    ("train.momentum", 1.5, ["train.momentum", "got 1.5"]),
    ("train.weight_decay", -1, ["train.weight_decay must be a finite number >= 0", "got -1"]),
    ("train.epochs", 0, ["train.epochs must be a positive integer", "got 0"]),
    ("train.batch_size", 2.5, ["train.batch_size must be a positive integer", "got 2.5"]),
    ("train.schedule", "linear", ["train.schedule 'linear' is unknown", "valid: cosine, const"]),
    ("train.optimizer", "adam", ["train.optimizer 'adam' is unknown", "valid: sgd, adamw"]),
    ("train.warmup_epochs", -1, ["train.warmup_epochs must be a non-negative integer", "got -1"]),
    ("train.augment", "yes", ["train.augment must be true or false", "got 'yes'"]),
    ("unlearn.lr", -1, ["unlearn.lr must be a finite number > 0", "got -1"]),
    ("unlearn.lr", math.nan, ["unlearn.lr must be a finite number > 0", "got nan"]),
    ("unlearn.epochs", 0, ["unlearn.epochs must be a positive integer", "got 0"]),
    ("retrain.gdro.eta", 0, ["retrain.gdro.eta must be a finite number > 0", "got 0"]),
    ("retrain.erm.lr", -1, ["retrain.erm.lr must be a finite number > 0", "got -1"]),
    ("model.width", 0, ["model.width must be a positive integer", "got 0"]),
    ("eval.batch_size", 0, ["eval.batch_size must be a positive integer", "got 0"]),
    ("eval.mia", "all", ["eval.mia 'all' is unknown", "valid: best_of_grid, single"]),
    ("forget.groups", [[1.5, 0]], ["forget.groups must be a list of [y, a] pairs", "1.5"]),
    ("forget.groups", "abc", ["forget.groups must be a list of [y, a] pairs", "'abc'"]),
    ("forget.multi_group", 4, ["forget.multi_group 4 is invalid", "valid: null, 3 (9 groups), 5 (25 groups)"]),
    ("forget.multi_group", 3, ["forget.multi_group is only supported by fairface", "colored_mnist"]),
    ("ratios", [], ["ratios must be a non-empty list", "got []"]),
    ("ratios", [0.5, 0.5], ["ratios [0.5, 0.5] repeats a value"]),
    ("ratios", ["abc"], ["ratio 'abc' is outside (0, 1]"]),
    ("ratios", [1.5], ["ratio 1.5 is outside (0, 1]"]),
    ("ratios", ["0.5; touch /tmp/grmu_injected; echo"], ["ratio '0.5; touch /tmp/grmu_injected; echo'"]),
    ("seeds", [], ["seeds must be a non-empty list", "got []"]),
    ("seeds", [0, 0], ["seeds [0, 0] repeats a value"]),
    ("seeds", [-1], ["seed -1 is not a non-negative integer"]),
    ("seeds", [1.5], ["seed 1.5 is not a non-negative integer"]),
    ("reweight", "yes", ["reweight must be true or false", "got 'yes'"]),
    (
        "model.pretrained",
        "/weights/resnet18.pth",
        ["model.pretrained '/weights/resnet18.pth' would be ignored", "set model.pretrained: none"],
    ),
    ("dataset", 5, ["dataset must be a name", "got 5"]),
]


@pytest.mark.parametrize("key,value,fragments", PARAM_CASES, ids=[f"{c[0]}={c[1]!r}"[:60] for c in PARAM_CASES])
def test_bad_param_is_refused_by_check_params(tmp_path, capsys, key, value, fragments):
    params = repo_params()
    edit(params, key, value)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = run_script(
        "check_params.py", ["--params", tmp_path / "params.yaml", "--out", tmp_path / "ok"], capsys, tmp_path
    )
    assert_one_line(code, err, *fragments)


def test_the_repository_params_pass(tmp_path, capsys):
    runpy_argv = ["--params", ROOT / "params.yaml", "--out", tmp_path / "ok"]
    old = sys.argv
    sys.argv = ["check_params.py", *map(str, runpy_argv)]
    try:
        runpy.run_path(str(ROOT / "stages" / "check_params.py"), run_name="__main__")
    finally:
        sys.argv = old
    assert (tmp_path / "ok").read_text() == "ok\n"


def test_params_file_that_is_not_yaml(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("train: {epochs: 3\n")
    code, err = run_script(
        "check_params.py", ["--params", tmp_path / "params.yaml", "--out", tmp_path / "ok"], capsys, tmp_path
    )
    assert_one_line(code, err, "params.yaml is not valid YAML")


# --- damaged artifacts, read by a stage run on its own (`dvc repro -s`) ---------------------


@pytest.fixture
def work(prepared_dir, tmp_path):
    """A copy of the prepared data, a params file (one ratio, one seed), the seed's forget set and
    a (tiny, untrained) PRETRAIN checkpoint with its outputs, in the pipeline's layout."""
    from grmu.outputs import save_outputs
    from grmu.models import model_for, save_checkpoint
    from grmu.prepared import load_prepared

    prep_dir = tmp_path / "prep"
    shutil.copytree(prepared_dir, prep_dir)
    p = small_params(ratios=[0.5], seeds=[0])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    forget_set(p, prep_dir, 0.5, 0, tmp_path / "forget/0/0.5.json")
    model, prep = model_for(p["model"], load_prepared(prep_dir)), load_prepared(prep_dir)
    save_checkpoint(tmp_path / "models/pretrain/0.pt", model, {"name": "x"})
    save_outputs(tmp_path / "models/pretrain/0.npz", model, prep, 512, {"name": "x"}, "x")
    return tmp_path


def evaluate_argv(w):
    return [
        "--params",
        w / "params.yaml",
        "--prepared",
        w / "prep",
        "--model",
        "pretrain",
        "--models",
        w / "models",
        "--forget",
        w / "forget",
        "--out",
        w / "eval",
    ]


def unlearn_argv(w):
    return [
        "--params",
        w / "params.yaml",
        "--prepared",
        w / "prep",
        "--pretrained",
        w / "models/pretrain/0.pt",
        "--forget",
        w / "forget/0",
        "--seed",
        0,
        "--out",
        w / "u",
        "--live",
        w / "live",
    ]


def test_truncated_checkpoint(work, capsys):
    data = (work / "models/pretrain/0.pt").read_bytes()
    (work / "models/pretrain/0.pt").write_bytes(data[: len(data) // 3])
    assert_one_line(*run_script("unlearn.py", unlearn_argv(work), capsys, work), "cannot load checkpoint", "0.pt")
    assert not (work / "u").exists() and not (work / "live").exists()


def test_checkpoint_of_another_architecture(work, capsys):
    from grmu.models import build_model, save_checkpoint

    save_checkpoint(work / "models/pretrain/0.pt", build_model({"arch": "small_cnn", "width": 4}, 2, (3, 14, 14)), {})
    assert_one_line(*run_script("unlearn.py", unlearn_argv(work), capsys, work), "cannot load checkpoint")


@pytest.mark.parametrize(
    "damage,fragment",
    [
        (lambda f: f.write_bytes(f.read_bytes()[:100]), "cannot read model outputs"),
        (
            lambda f: np.savez(
                f, logits=np.zeros((7, 2), np.float32), loss=np.zeros(7, np.float32), info=np.array("{}")
            ),
            "do not cover the 5000 prepared samples",
        ),
        (
            lambda f: np.savez(f, logits=np.zeros((5000, 2), object), loss=np.zeros(5000), info=np.array("{}")),
            "cannot read model outputs",
        ),  # pickled objects are never loaded
        (lambda f: f.unlink(), "missing model outputs"),
    ],
)
def test_damaged_model_outputs(work, capsys, damage, fragment):
    damage(work / "models/pretrain/0.npz")
    assert_one_line(*run_script("evaluate.py", evaluate_argv(work), capsys, work), fragment, "0.npz")
    assert not (work / "eval").exists()


def test_truncated_prepared_inputs(work, capsys):
    data = (work / "prep/inputs.pt").read_bytes()
    (work / "prep/inputs.pt").write_bytes(data[: len(data) // 2])
    assert_one_line(*run_script("unlearn.py", unlearn_argv(work), capsys, work), "cannot read the prepared dataset")


def test_prepared_table_and_inputs_disagree(work, capsys):
    torch.save(torch.zeros(3, 3, 14, 14, dtype=torch.uint8), work / "prep/inputs.pt")
    assert_one_line(*run_script("unlearn.py", unlearn_argv(work), capsys, work), "is inconsistent")


@pytest.mark.parametrize(
    "content,fragment",
    [
        ("{not json", "damaged forget set: "),
        ('{"ratio": 0.5}', "expected the keys ratio, seed, groups, forget"),
        ('{"ratio": 0.5, "seed": 0, "groups": [[1, 0]], "forget": []}', "'forget' must be a non-empty list"),
        ('{"ratio": 0.5, "seed": 0, "groups": [[1, 0]], "forget": [99999]}', "index 99999 is outside 0..4999"),
        ('{"ratio": 0.5, "seed": 0, "groups": [[1, 0]], "forget": [-1]}', "index -1 is outside"),
    ],
)
def test_damaged_forget_set(work, capsys, content, fragment):
    (work / "forget/0/0.5.json").write_text(content)
    assert_one_line(*run_script("evaluate.py", evaluate_argv(work), capsys, work), fragment)


def test_forget_index_outside_the_training_split_or_the_groups(work, capsys):
    import json

    from grmu.prepared import load_prepared

    f = work / "forget/0/0.5.json"
    prep = load_prepared(work / "prep")
    fs = json.loads(f.read_text())
    test_sample = int(prep.indices("test")[0])
    f.write_text(json.dumps({**fs, "forget": fs["forget"][:5] + [test_sample]}))
    assert_one_line(
        *run_script("evaluate.py", evaluate_argv(work), capsys, work), f"sample {test_sample} is in the test split"
    )
    other = int(next(i for i in prep.indices("train") if (prep.y[i], prep.a[i]) != (1, 0)))
    f.write_text(json.dumps({**fs, "forget": sorted(fs["forget"][:5] + [other])}))
    assert_one_line(
        *run_script("evaluate.py", evaluate_argv(work), capsys, work), f"sample {other} is not in the forget groups"
    )


def test_a_bad_command_line_argument_is_one_line(work, capsys):
    code, err = run_script(
        "forget_set.py",
        ["--params", work / "params.yaml", "--prepared", work / "prep", "--seed", "abc", "--out", work / "g"],
        capsys,
        work,
    )
    assert_one_line(code, err, "--seed", "'abc'")


def test_grmu_recipes_refuses_a_ratio_outside_the_unit_interval(capsys):
    from grmu.cli import main

    assert main(["recipes", "colored_mnist", "--ratios", "7"]) == 2
    assert "--ratios 7 is outside (0, 1]" in capsys.readouterr().err


def test_a_diverging_run_stops_and_saves_nothing(work, capsys):
    """lr 1e6: the loss goes non-finite; the stage names the model, epoch, pass and lr and exits."""
    p = small_params(train={"lr": 1e6, "epochs": 1})
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    code, err = run_script(
        "pretrain.py",
        [
            "--params",
            work / "params.yaml",
            "--prepared",
            work / "prep",
            "--seed",
            0,
            "--out",
            work / "pre.pt",
            "--live",
            work / "live",
        ],
        capsys,
        work,
    )
    assert_one_line(code, err, "pretrain s0: the loss became", "epoch 0, pass 'train'", "lr", "lower the learning rate")
    assert not (work / "live").exists()
