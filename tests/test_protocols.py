"""Training protocols (grmu.protocols): choosing a dataset alone gives the paper's model,
PRETRAIN, RETRAIN and Group-DRO settings; params.yaml still wins key by key; the stages train
with them and record them in each checkpoint."""

import copy
from pathlib import Path

import pytest
import torch
import yaml

import grmu.protocols as P
from grmu import GrmuError
from grmu.cli import main
from grmu.config import load_params, validate
from grmu.models import run_precision
from grmu.runtime import device
from grmu.stages import pretrain, retrain
from grmu.stages.forget_set import run as forget_set
from grmu.stages.prepare import run as prepare
from tests import fixtures_real as fx
from tests._repo import merge

ROOT = Path(__file__).resolve().parents[1]
D = "/data/grmu"
# the official ResNet runs train and evaluate under bf16 autocast, Group-DRO and BERT in fp32 (fact sheet §0)
RESNET = {"arch": "resnet18", "width": 16, "pretrained": f"{D}/resnet18.a1_in1k.safetensors", "precision": "auto"}
# fact sheet §4.2 (the official YAMLs), typed here from the table, not from the protocol files
PAPER = {
    "celeba": {
        "model": RESNET,
        "train": {
            "epochs": 30,
            "batch_size": 32,
            "lr": 0.01,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "warmup_epochs": 2,
            "schedule": "cosine",
            "optimizer": "sgd",
            "augment": True,
        },
        "gdro": {"lr": 0.1, "batch_size": 256, "precision": "fp32", "eta": 0.1},
    },
    "waterbirds": {
        "model": RESNET,
        "train": {
            "epochs": 30,
            "batch_size": 32,
            "lr": 0.01,
            "momentum": 0.9,
            "weight_decay": 1e-3,
            "warmup_epochs": 2,
            "schedule": "const",
            "optimizer": "sgd",
            "augment": True,
        },
        "gdro": {"lr": 1e-3, "batch_size": 32, "precision": "fp32", "eta": 1e-3},
    },
    "fairface": {
        "model": RESNET,
        "train": {
            "epochs": 30,
            "batch_size": 32,
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "warmup_epochs": 2,
            "schedule": "cosine",
            "optimizer": "sgd",
            "augment": True,
        },
        "gdro": {"lr": 0.1, "batch_size": 32, "precision": "fp32", "eta": 1e-3},
    },
    "multinli": {
        "model": {"arch": "bert", "width": 16, "pretrained": f"{D}/bert-base-uncased", "precision": "fp32"},
        "train": {
            "epochs": 30,
            "batch_size": 32,
            "lr": 1e-5,
            "weight_decay": 0.0,
            "warmup_epochs": 0,
            "schedule": "const",
            "optimizer": "adamw",
            "augment": False,
        },
        "gdro": {"lr": None, "batch_size": None, "precision": None, "eta": 0.1},
    },  # no Group-DRO in the paper
    # sharp-unlearn (its fact sheet §1): the paper's CIFAR-100 runs
    "cifar100": {
        "model": {"arch": "resnet18_cifar", "width": 16, "pretrained": "none", "precision": "fp32"},
        "train": {
            "epochs": 200,
            "batch_size": 256,
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "warmup_epochs": 0,
            "schedule": "cosine",
            "optimizer": "sgd",
            "augment": True,
        },
        "gdro": {"lr": None, "batch_size": None, "precision": None, "eta": 0.1},
    },
}


def raw_params(**over) -> dict:
    """The repository's params.yaml as written (nulls and all), with ``over`` merged in."""
    return merge(yaml.safe_load((ROOT / "params.yaml").read_text()), over)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_choosing_the_dataset_alone_gives_the_papers_protocol(name):
    p = validate(raw_params(dataset=name, data_dir=D))
    want = PAPER[name]
    assert p["model"] == want["model"]
    assert {k: p["train"][k] for k in want["train"]} == want["train"]
    assert p["train"]["sam"] == {"mode": "none", "rho": 0.1, "lamb": 1.0, "adaptive": False}
    assert p["retrain"]["gdro"] == want["gdro"]
    assert p["retrain"]["erm"] == p["retrain"]["reweight"] == {"lr": None, "batch_size": None, "precision": None}


def test_the_embedded_datasets_keep_the_built_in_cpu_setup():
    for name in ("colored_mnist", "mnist"):
        p = validate(raw_params(dataset=name))
        assert P.protocol_name(p) is None
        assert {s: p[s] for s in P.DEFAULTS} == P.DEFAULTS
    assert P.DEFAULTS["model"]["arch"] == "small_cnn" and P.DEFAULTS["train"]["epochs"] == 10


def test_params_beat_the_protocol_key_by_key_and_protocol_none_drops_it():
    p = validate(
        raw_params(
            dataset="celeba",
            data_dir=D,
            train={"lr": 0.5, "sam": {"rho": 2.0}},
            retrain={"gdro": {"eta": 0.7}},
            model={"pretrained": "none"},
        )
    )
    assert p["train"]["lr"] == 0.5 and p["train"]["batch_size"] == 32 and p["train"]["epochs"] == 30
    assert p["train"]["sam"] == {"mode": "none", "rho": 2.0, "lamb": 1.0, "adaptive": False}
    assert p["retrain"]["gdro"] == {"lr": 0.1, "batch_size": 256, "precision": "fp32", "eta": 0.7}
    assert p["model"] == {"arch": "resnet18", "width": 16, "pretrained": "none", "precision": "auto"}
    _, source = P.resolve(raw_params(dataset="celeba", data_dir=D, train={"lr": 0.5}))
    assert (source["train.lr"], source["train.epochs"], source["train.sam.mode"], source["retrain.gdro.eta"]) == (
        "params",
        "protocol",
        "default",
        "protocol",
    )
    none = validate(raw_params(dataset="celeba", data_dir=D, protocol="none"))
    assert {s: none[s] for s in P.DEFAULTS} == P.DEFAULTS
    named = validate(raw_params(dataset="colored_mnist", protocol="waterbirds", data_dir=D))
    assert named["train"]["schedule"] == "const" and named["retrain"]["gdro"]["eta"] == 1e-3


def test_a_protocols_weights_stay_with_its_architecture():
    """Choosing another model on a real dataset does not drag the protocol's ResNet weights along."""
    p, source = P.resolve(raw_params(dataset="celeba", data_dir=D, model={"arch": "small_cnn"}))
    assert p["model"] == {"arch": "small_cnn", "width": 16, "pretrained": "none", "precision": "auto"}
    assert source["model.pretrained"] == "default" and p["train"]["epochs"] == 30
    same, _ = P.resolve(raw_params(dataset="celeba", data_dir=D, model={"arch": "resnet18"}))
    assert same["model"]["pretrained"] == f"{D}/resnet18.a1_in1k.safetensors"
    tiny = validate(raw_params(dataset="multinli", data_dir=D, model={"arch": "tiny_bert"}))
    assert tiny["model"]["pretrained"] == "none"  # and check_params accepts tiny_bert then
    given = validate(raw_params(dataset="celeba", data_dir=D, model={"arch": "small_cnn", "pretrained": "/w.pth"}))
    assert given["model"]["pretrained"] == "/w.pth"  # a value given in params stays


def test_validation_is_idempotent_and_leaves_its_input_alone():
    raw = raw_params(dataset="fairface", data_dir=D)
    before = copy.deepcopy(raw)
    once = validate(raw)
    assert raw == before
    assert validate(once) == once
    assert load_params(ROOT / "params.yaml")["train"] == validate(raw_params())["train"]


def test_data_dir_is_put_into_the_protocols_text_only():
    p = validate(raw_params(dataset="multinli", data_dir="rel/dir"))
    assert p["model"]["pretrained"] == "rel/dir/bert-base-uncased"
    given = validate(raw_params(dataset="multinli", data_dir="rel/dir", model={"pretrained": "{data_dir}/x"}))
    assert given["model"]["pretrained"] == "{data_dir}/x"


def test_bad_protocols_are_refused_with_the_valid_choices(tmp_path, monkeypatch):
    with pytest.raises(GrmuError, match=r"unknown protocol 'celeb'; valid: auto, none, celeba, cifar10, cifar100, "):
        validate(raw_params(protocol="celeb"))
    with pytest.raises(GrmuError, match=r"protocol must be a name"):
        validate(raw_params(protocol=3))
    monkeypatch.setattr(P, "HERE", tmp_path)
    P._load.cache_clear()
    try:
        (tmp_path / "a.yaml").write_text("train: {lr: 0.3, epoch: 3}\n")
        with pytest.raises(GrmuError, match=r"protocol a: unknown key 'train.epoch'; valid: epochs, batch_size"):
            P.load_protocol("a")
        (tmp_path / "b.yaml").write_text("model: {arch: resnet18}\nunlearn: {lr: 1}\n")
        with pytest.raises(GrmuError, match=r"protocol b: unknown key\(s\) \['unlearn'\]"):
            P.load_protocol("b")
        (tmp_path / "c.yaml").write_text("retrain: {gdro: 0.1}\n")
        with pytest.raises(GrmuError, match=r"protocol c: 'retrain.gdro' must be a mapping, got 0.1"):
            P.load_protocol("c")
        (tmp_path / "d.yaml").write_text("train: {lr: 0.3, epochs: 3}\nretrain: {gdro: {eta: 0.5}}\n")
        (tmp_path / "e.yaml").write_text("base: d\ntrain: {epochs: 7}\n")
        assert P.load_protocol("e")["values"] == {
            "model": {},
            "train": {"lr": 0.3, "epochs": 7},
            "retrain": {"gdro": {"eta": 0.5}},
        }
        (tmp_path / "f.yaml").write_text("train: {lr: -1}\n")
        with pytest.raises(GrmuError, match=r"train.lr must be a finite number > 0, got -1"):
            validate(raw_params(protocol="f"))
    finally:
        P._load.cache_clear()


def test_every_protocol_file_is_valid_and_covers_a_dataset():
    from grmu.data import list_datasets

    datasets = {d.name for d in list_datasets()}
    for name in P.available():
        assert name in datasets, name
        validate(raw_params(dataset=name, data_dir=D))


def test_cli_shows_the_protocol_and_the_recipe(capsys):
    assert main(["recipes", "waterbirds", "--ratios", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "waterbirds (training protocol)" in out and "miu+reweight" in out
    protocol = out.split("\n\n")[0].splitlines()[1:]
    lines = {line.split()[0]: line.split()[1:] for line in protocol}
    assert lines["train.schedule"] == ["const"] and lines["retrain.gdro.eta"] == ["0.001"]
    assert lines["train.sam.mode"] == ["none", "(default)"] and lines["retrain.erm.lr"] == ["as", "train", "(default)"]
    assert lines["retrain.erm.precision"] == ["as", "model", "(default)"] and lines["model.precision"] == ["auto"]
    assert len(protocol) == 27  # every key of model, train and retrain
    assert main(["recipes"]) == 0
    assert "training protocols" in capsys.readouterr().out
    assert main(["recipes", "cifar"]) == 2
    assert "unknown recipe or protocol 'cifar'; valid: celeba, cifar10" in capsys.readouterr().err


# --- the stages train with the protocol and record it -----------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return fx.make_weights(fx.make_all(tmp_path_factory.mktemp("raw")))


@pytest.mark.parametrize("name", ["celeba", "waterbirds", "fairface", "multinli"])
def test_pretrain_and_gdro_train_with_the_protocol_and_record_it(name, data_dir, tmp_path, monkeypatch):
    """The stages, with ``fit`` replaced by a recorder: the model they build (ImageNet / BERT
    weights read from data_dir), the settings ``fit`` gets and what the checkpoint records."""
    params = validate(
        raw_params(
            dataset=name,
            data_dir=str(data_dir),
            seeds=[0],
            ratios=[0.5],
            datasets={name: {"image_size": 16}}
            if name != "multinli"
            else {"multinli": {"max_length": 16, "source": "text"}},
        )
    )
    prepare(params, tmp_path / "prep")
    forget_set(params, tmp_path / "prep", 0.5, 0, tmp_path / "forget.json")
    calls = []

    def recorder(model, prep, passes, cfg, **kw):
        calls.append({"cfg": copy.deepcopy(cfg), "model": model, "batch": passes(0)[0].batch_size})
        return model, [{"epoch": 0, "val_acc": 50.0}]

    monkeypatch.setattr(pretrain, "fit", recorder)
    pretrain.run(params, tmp_path / "prep", 0, tmp_path / "pre.pt")
    retrain.run(params, tmp_path / "prep", "gdro", tmp_path / "forget.json", 0, tmp_path / "gdro.pt")
    want = PAPER[name]
    pre, gdro = calls
    assert {k: pre["cfg"][k] for k in want["train"]} == want["train"] and pre["batch"] == want["train"]["batch_size"]
    g = want["gdro"]
    assert gdro["cfg"]["lr"] == (g["lr"] or want["train"]["lr"])
    assert gdro["batch"] == (g["batch_size"] or want["train"]["batch_size"])
    from safetensors.torch import load_file

    body = pre["model"].body
    if name == "multinli":  # the fixture's tiny BERT (hidden size 16) was read from data_dir
        saved = load_file(str(data_dir / "bert-base-uncased" / "model.safetensors"))
        key = next(k for k in saved if k.endswith("word_embeddings.weight"))
        assert torch.equal(body.bert.embeddings.word_embeddings.weight.cpu(), saved[key])
    else:  # the ImageNet init was read
        saved = load_file(str(data_dir / "resnet18.a1_in1k.safetensors"))
        assert torch.equal(body.conv1.weight.cpu(), saved["conv1.weight"])
    for path, info_cfg in ((tmp_path / "pre.pt", pre["cfg"]), (tmp_path / "gdro.pt", gdro["cfg"])):
        info = torch.load(path, weights_only=True)["info"]
        assert info["protocol"] == name and info["model"]["arch"] == want["model"]["arch"]
        assert info["model"]["pretrained"] == str(data_dir / Path(want["model"]["pretrained"]).name)
        assert info["model"]["arch"] == want["model"]["arch"]
        assert info["train"] == info_cfg
    gdro_info = torch.load(tmp_path / "gdro.pt", weights_only=True)["info"]
    assert gdro_info["eta"] == g["eta"] and gdro_info["model"]["precision"] == (
        g["precision"] or want["model"]["precision"]
    )
    # auto: fp32 on the CPU, bf16 on a GPU
    assert pre["model"].precision == gdro["model"].precision == run_precision("auto", device())
    assert "eta" not in torch.load(tmp_path / "pre.pt", weights_only=True)["info"]
