"""Catalogue of bad inputs. Each must give: a non-zero exit, one last line on stderr that names
the bad value (and the valid choices where there are some), no traceback, and no new or
changed file. Params are checked by the `check_params` stage (which runs before every other
stage); damaged artifacts by the stage that reads them."""

import errno
import math
import os
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


class _Delete:
    """The marker of a case that deletes the key; its repr keeps test ids the same in every process
    (pytest-xdist's workers must collect the same ids)."""

    def __repr__(self):
        return "<deleted>"


DELETE = _Delete()


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


# --- a diverged model is never saved, nor evaluated (issue #29, item 2) ----------------------


@pytest.mark.parametrize(
    "unlearn",
    [{"lr": 1000.0}, {"lr": 0.1, "sam": {"mode": "min", "rho": 1e4, "lamb": 1.0, "adaptive": True}}],
    ids=["huge_lr", "asam_huge_rho"],
)
def test_one_unlearning_step_that_blows_up_the_weights_saves_nothing(work, capsys, unlearn):
    """One step (a batch larger than the remaining set) at a huge lr, or of ASAM at a huge rho,
    gives logits of 1e10 and more that are still finite, so no NaN check sees them: the stage
    names the run, the worst logit and the bound, and writes nothing."""
    p = small_params(ratios=[0.5], seeds=[0], unlearn={"epochs": 1, "batch_size": 4096, **unlearn})
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    code, err = run_script("unlearn.py", unlearn_argv(work), capsys, work)
    assert_one_line(
        code,
        err,
        "unlearn finetune r=0.5 seed=0: the model's logits reach ",
        " on 5000 of 5000 samples, beyond 1e+06",
        "nothing was saved: lower the learning rate (or SAM's rho)",
    )
    assert not (work / "u").exists() and not (work / "live").exists()


def exploded_outputs(f, logits=1e11, loss=0.5):
    np.savez(
        f,
        logits=np.full((5000, 2), logits, np.float32),
        loss=np.full(5000, loss, np.float32),
        info=np.array("{}"),
    )


@pytest.mark.parametrize(
    "damage,fragment",
    [
        (lambda f: exploded_outputs(f), "the model's logits reach 1e+11 on 5000 of 5000 samples, beyond 1e+06"),
        (lambda f: exploded_outputs(f, logits=np.nan), "the model's outputs are not finite on 5000 of 5000"),
        (lambda f: exploded_outputs(f, logits=1.0, loss=np.inf), "the model's outputs are not finite"),
        (lambda f: exploded_outputs(f, logits=1.0, loss=1e30), "the losses reach 1e+30"),
    ],
    ids=["huge_logits", "nan_logits", "inf_loss", "huge_loss"],
)
def test_evaluate_refuses_the_outputs_of_a_diverged_model(work, capsys, damage, fragment):
    """A file of outputs from a diverged model (saved before the bound, or edited) stops
    `evaluate` with one line instead of a scikit-learn traceback."""
    damage(work / "models/pretrain/0.npz")
    assert_one_line(*run_script("evaluate.py", evaluate_argv(work), capsys, work), "0.npz", fragment)
    assert not (work / "eval").exists()


def test_a_weight_that_is_not_finite_is_never_saved_even_with_finite_outputs(prep, tmp_path):
    """A weight the outputs do not read (here an extra parameter; in BERT an unused head) can
    hold a NaN while every logit is finite: the model is still refused, naming the weight."""
    from grmu import GrmuError
    from grmu.models import new_model
    from grmu.outputs import save_outputs

    model = new_model(small_params()["model"], prep, 0)
    model.unused = torch.nn.Parameter(torch.tensor([float("nan")]))
    with pytest.raises(GrmuError, match=r"^m: the model's weights unused are not finite; the run diverged"):
        save_outputs(tmp_path / "m.npz", model, prep, 512, {}, "m")
    assert list(tmp_path.iterdir()) == []


# --- damaged files and environment faults (item 4) -------------------------------------------


@pytest.fixture
def config_dirs(tmp_path, monkeypatch):
    """Empty recipe and protocol folders (``grmu.recipes.HERE``, ``grmu.protocols.HERE``) in
    ``tmp_path/cfg``, so that a test can write damaged ones."""
    import grmu.protocols
    import grmu.recipes

    for mod in (grmu.recipes, grmu.protocols):
        folder = tmp_path / "cfg" / mod.__name__.rsplit(".", 1)[1]
        folder.mkdir(parents=True)
        monkeypatch.setattr(mod, "HERE", folder)
    grmu.recipes.load_recipe.cache_clear()
    grmu.protocols._load.cache_clear()
    yield tmp_path / "cfg"
    grmu.recipes.load_recipe.cache_clear()
    grmu.protocols._load.cache_clear()


def check_params_with(tmp_path, capsys, **over):
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run/params.yaml").write_text(yaml.safe_dump({**repo_params(), **over}))
    argv = ["--params", tmp_path / "run/params.yaml", "--out", tmp_path / "run/ok"]
    return run_script("check_params.py", argv, capsys, tmp_path / "run")


RECIPE_CASES = [
    ({"bad": "entries: [{method: finetune\n"}, ["recipe bad: ", "bad.yaml is not valid YAML"]),
    ({"bad": "- method: finetune\n"}, ["recipe bad: ", "bad.yaml must hold a mapping"]),
    ({"bad": "entries: {method: finetune}\n"}, ["recipe bad: 'entries' in ", "must be a list of mappings"]),
    ({"bad": "entries: [5]\n"}, ["recipe bad, entry 0: must be a mapping", "got 5"]),
    ({"bad": "entries: [{method: finetune, unlearn: 0.1}]\n"}, ["recipe bad, entry 0: 'unlearn' must be a mapping"]),
    ({"bad": "entries: [{ratio: half}]\n"}, ["recipe bad, entry 0: ratio must be a number", "'half'"]),
    ({"bad": "base: bad\n"}, ["recipe bad: 'base' in ", "bad.yaml makes a cycle (bad -> bad)"]),
    ({"bad": "base: other\n", "other": "base: bad\n"}, ["recipe other: 'base' in ", "cycle (bad -> other -> bad)"]),
    ({"bad": "base: [other]\n"}, ["recipe bad: base must be the name of another recipe", "['other']"]),
]


@pytest.mark.parametrize("files,fragments", RECIPE_CASES, ids=[f"recipe{i}" for i in range(len(RECIPE_CASES))])
def test_a_damaged_recipe_is_one_line(config_dirs, tmp_path, capsys, files, fragments):
    for name, text in files.items():
        (config_dirs / "recipes" / f"{name}.yaml").write_text(text)
    assert_one_line(*check_params_with(tmp_path, capsys, recipe="bad"), *fragments)


PROTOCOL_CASES = [
    ({"bad": "train: {lr: 0.1\n"}, ["protocol bad: ", "bad.yaml is not valid YAML"]),
    ({"bad": "base: bad\n"}, ["protocol bad: 'base' in ", "bad.yaml makes a cycle (bad -> bad)"]),
    ({"bad": "base: other\n", "other": "base: bad\n"}, ["protocol other: 'base' in ", "cycle (bad -> other -> bad)"]),
    ({"bad": "base: {x: 1}\n"}, ["protocol bad: base must be the name of another protocol"]),
]


@pytest.mark.parametrize("files,fragments", PROTOCOL_CASES, ids=[f"protocol{i}" for i in range(len(PROTOCOL_CASES))])
def test_a_damaged_protocol_is_one_line(config_dirs, tmp_path, capsys, files, fragments):
    for name, text in files.items():
        (config_dirs / "protocols" / f"{name}.yaml").write_text(text)
    assert_one_line(*check_params_with(tmp_path, capsys, protocol="bad"), *fragments)


def cli(argv, capsys):
    """``grmu ARGV``: (exit code, stderr), as `assert_one_line` takes them."""
    from grmu.cli import main

    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture
def paper_csv(tmp_path, monkeypatch):
    """A copy of the paper's tables that ``grmu report --paper`` reads instead of the packaged one."""
    from grmu.report import paper

    copy = tmp_path / "paper_tables.csv"
    copy.write_bytes(paper.PAPER_CSV.read_bytes())
    monkeypatch.setattr(paper, "PAPER_CSV", copy)
    paper.paper_table.cache_clear()
    yield copy
    paper.paper_table.cache_clear()


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t[: len(t) * 2 // 3],  # truncated: later tables are missing
        lambda t: t.replace("\n6,celeba,1,0.5,pretrain,False,RA,", "\n6,celeba,1,0.5,pretrain,False,RA,1"),  # edited
        lambda t: t.replace(",scrub,True,avg_gap,93.6,", ",scrub,True,avg_gap,95.6,"),
    ],
    ids=["truncated", "edited_digit", "edited_value"],
)
def test_a_damaged_paper_table_is_refused(paper_csv, tmp_path, capsys, damage):
    """A truncated or edited table would print another number as the paper's with exit 0."""
    from grmu.report import paper
    from tests.test_paper_report import write_run

    write_run(tmp_path / "run")
    assert cli(["report", "--paper", "--repo", tmp_path / "run"], capsys)[0] == 0  # the intact copy
    text = paper_csv.read_text()
    assert damage(text) != text
    paper_csv.write_text(damage(text))
    paper.paper_table.cache_clear()  # a new `grmu` process reads the table again
    code, err = cli(["report", "--paper", "--repo", tmp_path / "run"], capsys)
    assert_one_line(code, err, f"the paper's tables {paper_csv} are damaged or edited", "expected")


@pytest.mark.parametrize(
    "file,content,fragment",
    [
        ("summary.json", "{not json", "damaged results summary {run}/metrics/summary.json: not valid JSON"),
        ("summary.json", '{"dataset": "waterbirds", "reweight": true}', "lacks the key 'method'"),
        ("summary.json", '{"dataset": "waterbirds", "method": "scrub", "reweight": "yes"}', "'reweight' must be a"),
        ("summary.json", "[1, 2]", "expected a JSON object"),
        ("per_seed.csv", "model,seed\npretrain,0\n", "per_seed.csv: it lacks the column(s) ratio"),
        ("per_seed.csv", "model,ratio,seed,RA\npretrain,0.9,0,abc\n", "column RA holds 'abc', not a finite number"),
        ("per_seed.csv", "model,ratio,seed,RA\npretrian,0.9,0,98\n", "unknown model 'pretrian'"),
        ("per_seed.csv", "model,ratio,seed,RA\npretrain,9,0,98\n", "a ratio outside (0, 1]"),
        ("per_seed.csv", "", "damaged per-seed results"),
    ],
)
def test_a_damaged_summary_is_refused_by_the_paper_report(tmp_path, capsys, file, content, fragment):
    from tests.test_paper_report import write_run

    run = tmp_path / "run"
    write_run(run)
    (run / "metrics" / file).write_text(content)
    code, err = cli(["report", "--paper", "--repo", run], capsys)
    assert_one_line(code, err, fragment.format(run=run))


def test_a_damaged_summary_of_an_experiment_is_refused_by_the_report(tmp_path, capsys, monkeypatch):
    """`grmu report` reads each experiment's summary and per-seed table from git: a damaged one
    is one line naming the experiment."""
    import dvc.api

    from grmu.report import compare

    (tmp_path / ".dvc").mkdir()
    monkeypatch.setattr(dvc.api, "exp_show", lambda repo, num: [{"rev": "abc1234", "Experiment": "gm-1"}])
    files = {"metrics/summary.json": '{"method": "scrub"}', "metrics/per_seed.csv": "model,ratio,seed\n"}
    monkeypatch.setattr(compare, "git_show", lambda repo, rev, path: files[path])
    code, err = cli(["report", "--repo", tmp_path, "--out", tmp_path / "out"], capsys)
    assert_one_line(
        code,
        err,
        "damaged results summary metrics/summary.json of experiment gm-1 (abc1234): it lacks the key 'reweight'",
    )
    files["metrics/summary.json"] = '{"method": "scrub", "reweight": false}'
    code, err = cli(["report", "--repo", tmp_path, "--out", tmp_path / "out"], capsys)
    assert_one_line(code, err, "metrics/per_seed.csv of experiment gm-1 (abc1234): it has no rows")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra", [1, 45000], ids=["one_too_many", "another_dataset"])
def test_a_memorization_file_of_the_wrong_length(work, capsys, extra):
    """A scores file longer than the prepared dataset (another dataset's, or one with a stray
    entry) was read as if its first entries were this dataset's."""
    p = small_params(
        forget={"kind": "memorization", "count": 30},
        memorization={"score": "file", "file": "scores.npz"},
        data_dir=str(work),
        ratios=[0.1],
    )
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    np.savez(work / "scores.npz", tr_mem=np.zeros(5000 + extra))
    argv = ["--params", work / "params.yaml", "--prepared", work / "prep", "--seed", 0]
    code, err = run_script("memorization.py", [*argv, "--out", work / "m.npz", "--hist", work / "h.csv"], capsys, work)
    assert_one_line(
        code, err, f"scores.npz: 'tr_mem' holds {5000 + extra} scores; this prepared dataset needs 5000", "or 4000"
    )
    from grmu.stages.memorization import run as memorization

    np.savez(work / "scores.npz", tr_mem=np.zeros(5000))  # the right length passes
    assert len(memorization(p, work / "prep", 0, work / "m.npz", work / "h.csv")["scores"]) == 3000


def read_only(folder: Path, monkeypatch) -> None:
    """Make ``folder`` read-only. Root ignores the mode, so as root every open for writing and
    every new folder under it fails as it would for a user (EACCES)."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return
    real_open, real_mkdir = os.open, os.mkdir

    def refused(path):
        return Path(os.path.abspath(path)).is_relative_to(folder)

    def fake_open(path, flags, *args, **kw):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and refused(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kw)

    def fake_mkdir(path, *args, **kw):
        if refused(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_mkdir(path, *args, **kw)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


@pytest.mark.parametrize("existing", [True, False], ids=["folder", "parent"])
def test_a_read_only_output_folder(work, capsys, monkeypatch, existing):
    """The forget sets' folder (or the folder it would be made in) is read-only."""
    ro = work / "ro"
    (ro / "forget").mkdir(parents=True)
    out = ro / "forget" if existing else ro / "forget" / "new"
    read_only(ro, monkeypatch)
    try:
        argv = ["--params", work / "params.yaml", "--prepared", work / "prep", "--seed", 0, "--out", out]
        code, err = run_script("forget_set.py", argv, capsys, work)
    finally:
        ro.chmod(0o755)
    assert_one_line(code, err, f"cannot write {out}/0.5.json: Permission denied", "is not writable")


def test_a_read_only_folder_for_the_training_curves(work, capsys, monkeypatch):
    """dvclive cannot make the unlearning curves' folder: one line naming it, before any training."""
    ro = work / "ro"
    ro.mkdir()
    read_only(ro, monkeypatch)
    argv = unlearn_argv(work)
    argv[argv.index("--live") + 1] = ro / "live"
    try:
        code, err = run_script("unlearn.py", argv, capsys, work)
    finally:
        ro.chmod(0o755)
    assert_one_line(code, err, f"cannot write {ro}/live", "Permission denied", f"the folder {ro} is not writable")
    assert not (work / "u").exists()


def full_disk_after(limit: int):
    """An ``open`` whose files fill the disk after ``limit`` bytes: the write that crosses it
    writes what fits and raises ENOSPC, as a full disk does."""

    class FullDisk:
        def __init__(self, f):
            self.f, self.left = f, limit

        def write(self, data):
            data = bytes(data)
            if len(data) > self.left:
                self.f.write(data[: self.left])
                self.left = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.left -= len(data)
            return self.f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

    return lambda *args, **kw: FullDisk(open(*args, **kw))


@pytest.mark.parametrize("module,name", [("grmu.runtime", "0.5.pt"), ("grmu.outputs", "0.5.npz")])
def test_a_full_disk_while_saving_a_model(work, capsys, monkeypatch, module, name):
    """The disk fills half-way through the checkpoint (or the outputs saved before it): one line,
    and neither the half-written file, its temporary file nor the stage's other outputs are left."""
    monkeypatch.setattr(f"{module}.open", full_disk_after(40_000), raising=False)  # mid-way through a tensor
    code, err = run_script("unlearn.py", unlearn_argv(work), capsys, work)
    assert_one_line(code, err, f"cannot write {work}/u/{name}: No space left on device; the disk is full")
    assert not (work / "u").exists() and not (work / "live").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_while_preparing_the_dataset(tmp_path, capsys, monkeypatch):
    """torch writes the inputs itself (by path) and reports a full disk as a RuntimeError of its
    zip writer: still one line, and no prepared folder, whole or partial."""
    real = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **kw: real(obj, "/dev/full", *a, **kw))  # ENOSPC
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params()))
    argv = ["--params", tmp_path / "params.yaml", "--out", tmp_path / "data/prepared"]
    code, err = run_script("prepare.py", argv, capsys, tmp_path)
    assert_one_line(code, err, f"cannot write {tmp_path}/data/prepared/inputs.pt (a full disk?); nothing was saved")
    assert not (tmp_path / "data/prepared").exists()


# --- limits that hold (item 5) ----------------------------------------------------------------


def test_more_processes_than_the_machine_has_are_refused_before_torchrun(work, capsys, monkeypatch):
    import grmu.distributed

    def no_torchrun(cmd, *a, **kw):
        raise AssertionError(f"torchrun was started: {cmd}")

    monkeypatch.setattr(grmu.distributed.subprocess, "call", no_torchrun)
    monkeypatch.setenv("GRMU_DEVICE", "cpu")
    monkeypatch.delenv("GRMU_TORCHRUN", raising=False)
    p = small_params(distributed={"processes": 1000, "backend": "gloo"})
    (work / "params.yaml").write_text(yaml.safe_dump(p))
    argv = ["--params", work / "params.yaml", "--prepared", work / "prep", "--seed", 0, "--out", work / "pre.pt"]
    code, err = run_script("pretrain.py", argv, capsys, work)
    cores = len(os.sched_getaffinity(0))
    assert_one_line(
        code, err, f"distributed.processes 1000 asks this machine for 1000 processes, but it has {cores} CPU cores"
    )


def test_one_process_per_gpu_per_machine(monkeypatch):
    from grmu import GrmuError
    from grmu.distributed import check_capacity

    monkeypatch.setattr("grmu.runtime.device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_capacity(2)
    check_capacity(4, 2)  # 2 on each of 2 machines
    with pytest.raises(GrmuError, match=r"asks this machine for 3 processes, but it has 2 CUDA GPUs; use at most 2"):
        check_capacity(3)
    with pytest.raises(
        GrmuError, match=r"for 3 processes \(6 over 2 machines\), but it has 2 CUDA GPUs; use at most 4"
    ):
        check_capacity(6, 2)
