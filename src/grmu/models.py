"""Architectures. Every model is a ``Net``: a feature extractor ``body`` (x -> z) and a linear
``head`` (z -> logits), so methods that need the features (MIU) get them directly.

Image models (``small_cnn``, ``resnet18``) take ``N x C x H x W`` batches; text models
(``bert``, ``tiny_bert``) take ``N x 3 x L`` integer batches of token ids, attention mask and
segment ids (see ``grmu.data.multinli``). Weights are only ever read from local files."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dataclasses import dataclass
from typing import Callable

from grmu import GrmuError
from grmu.registry import Registry

BERT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# plain attention: PyTorch's fused attention with a padding mask has a non-deterministic
# backward on CUDA, and the same params and seed must give the same model
EAGER = {"attn_implementation": "eager"}
BERT_HOWTO = (
    "a Hugging Face bert-base-uncased folder: config.json, model.safetensors or pytorch_model.bin, "
    "vocab.txt; e.g. `hf download bert-base-uncased --local-dir <folder>` on a machine with internet"
)


def run_precision(precision: str, dev: torch.device) -> str:
    """The precision a model of ``model.precision`` (``grmu.schema.PRECISIONS``) runs in on device
    ``dev``: ``fp32`` or ``bf16`` (``auto``: bf16 on a CUDA device, as the official code, else fp32)."""
    return "bf16" if precision == "bf16" or (precision == "auto" and dev.type == "cuda") else "fp32"


class Net(nn.Module):
    """``precision``: ``"bf16"`` runs the forward passes of training, unlearning and inference
    under bf16 autocast (``grmu.inference.autocast``), ``"fp32"`` in float32; the weights are
    float32 either way."""

    def __init__(self, body: nn.Module, feat_dim: int, n_classes: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(feat_dim, n_classes)
        self.feat_dim = feat_dim
        self.precision = "fp32"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _small_cnn(in_ch: int, width: int, size: int) -> tuple[nn.Module, int]:
    """LeNet-style: two conv-BN-ReLU-pool blocks, then a dense layer to a 128-d feature z.

    Flattening (rather than global pooling) keeps the spatial layout, so digit shape is
    learnt about as fast as colour, which the embedded default relies on.
    """

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True), nn.MaxPool2d(2)]

    side = size // 4
    body = nn.Sequential(
        *block(in_ch, width),
        *block(width, 2 * width),
        nn.Flatten(),
        nn.Linear(2 * width * side * side, 128),
        nn.ReLU(inplace=True),
    )
    return body, 128


def _resnet18(in_ch: int, pretrained: str) -> tuple[nn.Module, int]:
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if pretrained != "none":
        path = Path(pretrained)
        if not path.is_file():
            raise GrmuError(
                f"model.pretrained file not found: {path}; expected ImageNet ResNet-18 weights there, as "
                "timm's resnet18.a1_in1k (the paper's: `hf download timm/resnet18.a1_in1k model.safetensors`) or "
                "torchvision's https://download.pytorch.org/models/resnet18-f37072fd.pth; or set model.pretrained=none"
            )
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch / safetensors raise several types for a damaged file
            raise GrmuError.wrap(f"cannot read {path}", e) from e
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise GrmuError(
                f"{path} does not look like ResNet-18 weights (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
    if in_ch != 3:
        net.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
    net.fc = nn.Identity()
    return net, 512


def _resnet18_cifar(in_ch: int) -> tuple[nn.Module, int]:
    """The CIFAR ResNet-18 of the sharp-unlearn code (fact sheet §4 "Datasets and
    architectures"): torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool, so a
    32 px image keeps its resolution into the first block. Every conv (the new stem too) is
    initialised kaiming-normal (fan_out), BatchNorm weight 1 and bias 0, as upstream."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, 512


class BertBody(nn.Module):
    """BERT's pooled ``[CLS]`` output after dropout, i.e. the input of
    ``BertForSequenceClassification``'s classifier (the paper's ``z``, fact sheet §3)."""

    def __init__(self, bert: nn.Module, dropout: float):
        super().__init__()
        self.bert = bert
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        out = self.bert(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2])
        return self.dropout(out.pooler_output)


def _bert(
    arch: str, pretrained: str, width: int, vocab_size: int | None, length: int, load_weights: bool
) -> tuple[nn.Module, int]:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
    try:
        from transformers import BertConfig, BertModel
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise GrmuError.wrap(f"model.arch {arch} needs transformers: pip install 'grmu[text]'", e) from e

    hf_logging.set_verbosity_error()  # the unused pre-training heads of a checkpoint are expected
    vocab_size = int(vocab_size or 30522)
    if arch == "tiny_bert":
        if pretrained != "none":
            raise GrmuError("model.arch tiny_bert is randomly initialised; set model.pretrained=none (or use bert)")
        if width < 2 or width % 2:
            raise GrmuError(f"model.width must be an even integer >= 2 for tiny_bert (2 attention heads), got {width}")
        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=width,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=4 * width,
            max_position_embeddings=max(512, length),
            **EAGER,
        )
        bert = BertModel(config)
    elif pretrained == "none":
        bert = BertModel(BertConfig(vocab_size=max(vocab_size, 30522), **EAGER))  # BERT-base, random
    else:
        folder = Path(pretrained)
        if not (folder / "config.json").is_file() or not any((folder / w).is_file() for w in BERT_WEIGHTS):
            raise GrmuError(
                f"model.pretrained: no BERT weights in {folder}; expected {BERT_HOWTO}; or set model.pretrained=none"
            )
        try:
            if load_weights:
                bert, loading = BertModel.from_pretrained(
                    str(folder), local_files_only=True, dtype=torch.float32, output_loading_info=True, **EAGER
                )
            else:
                config = BertConfig.from_pretrained(str(folder), local_files_only=True, **EAGER)
                bert, loading = BertModel(config), {}
        except Exception as e:  # transformers / safetensors raise many types for a damaged folder
            raise GrmuError.wrap(f"cannot load BERT from {folder}", e) from e
        if loading.get("missing_keys"):
            missing = sorted(loading["missing_keys"])
            raise GrmuError(f"{folder} does not hold BERT-base weights: {len(missing)} missing, e.g. {missing[0]}")
    config = bert.config
    if length > config.max_position_embeddings:
        raise GrmuError(
            f"datasets.multinli.max_length {length} exceeds the {config.max_position_embeddings} "
            f"positions of the BERT in {pretrained}"
        )
    if vocab_size > config.vocab_size:
        raise GrmuError(
            f"the prepared data uses {vocab_size} token ids but the BERT in {pretrained} has a "
            f"vocabulary of {config.vocab_size}"
        )
    return BertBody(bert, config.hidden_dropout_prob), config.hidden_size


@dataclass
class ArchSpec:
    name: str
    build: Callable  # (model_cfg, input_shape, vocab_size, load_weights) -> (body, feature dim)
    text: bool  # takes N x 3 x L token batches (else N x C x H x W images)


MODELS: Registry[ArchSpec] = Registry("model.arch")


def register_model(name: str, *, text: bool = False):
    """Register ``build(model_cfg, input_shape, vocab_size, load_weights) -> (body, dim)``."""

    def deco(fn):
        MODELS.add(name, ArchSpec(name, fn, text))
        return fn

    return deco


def list_models() -> list[str]:
    return MODELS.names()


@register_model("small_cnn")
def _build_small_cnn(cfg, shape, vocab_size, load_weights):
    return _small_cnn(int(shape[0]), int(cfg["width"]), int(shape[-1]))


@register_model("resnet18")
def _build_resnet18(cfg, shape, vocab_size, load_weights):
    return _resnet18(int(shape[0]), str(cfg.get("pretrained", "none")) if load_weights else "none")


@register_model("resnet18_cifar")
def _build_resnet18_cifar(cfg, shape, vocab_size, load_weights):
    return _resnet18_cifar(int(shape[0]))


@register_model("bert", text=True)
def _build_bert(cfg, shape, vocab_size, load_weights):
    return _bert(
        "bert", str(cfg.get("pretrained", "none")), int(cfg["width"]), vocab_size, int(shape[-1]), load_weights
    )


@register_model("tiny_bert", text=True)
def _build_tiny_bert(cfg, shape, vocab_size, load_weights):
    return _bert(
        "tiny_bert", str(cfg.get("pretrained", "none")), int(cfg["width"]), vocab_size, int(shape[-1]), load_weights
    )


def build_model(
    model_cfg: dict, n_classes: int, input_shape, *, vocab_size: int | None = None, load_weights: bool = True
) -> Net:
    """``input_shape`` is one sample's shape: ``(C, H, W)`` for images, ``(3, L)`` for tokens.

    ``vocab_size``: the prepared text's vocabulary (text models). ``load_weights=False`` skips
    reading ``model.pretrained`` (the caller loads a checkpoint over the weights next)."""
    spec = MODELS.get(model_cfg["arch"])
    text = len(input_shape) == 2
    if text != spec.text:
        valid = [m.name for m in MODELS.entries() if m.text == text]
        raise GrmuError(
            f"model.arch {spec.name} does not take {'token' if text else 'image'} inputs; "
            f"valid for this dataset: {', '.join(valid)}"
        )
    body, dim = spec.build(model_cfg, input_shape, vocab_size, load_weights)
    net = Net(body, dim, n_classes)
    if spec.text:  # BertForSequenceClassification's classifier init
        nn.init.normal_(net.head.weight, std=0.02)
        nn.init.zeros_(net.head.bias)
    return net


def model_for(model_cfg: dict, prep, *, load_weights: bool = True) -> Net:
    """``build_model`` for a prepared dataset (its classes, input shape and vocabulary)."""
    return build_model(
        model_cfg,
        prep.n_classes,
        prep.meta["input_shape"],
        vocab_size=prep.meta.get("vocab_size"),
        load_weights=load_weights,
    )


def new_model(model_cfg: dict, prep, seed: int | None = None, *, load_weights: bool = True) -> Net:
    """``model_for`` on the run's device, first seeding every RNG with ``seed`` (unless None),
    so that a model's initial weights depend on the seed alone. ``load_weights=False`` when a
    checkpoint is loaded over it next."""
    from grmu.runtime import device, seed_everything

    if seed is not None:
        seed_everything(seed)
    net = model_for(model_cfg, prep, load_weights=load_weights).to(device())
    net.precision = run_precision(model_cfg.get("precision", "fp32"), device())
    return net


def save_checkpoint(path, model: Net, info: dict) -> None:
    """Save ``model``'s weights and ``info`` to ``path`` through a temporary file; a write that
    fails (a full disk, a read-only folder) is one line and leaves nothing (``atomic_path``)."""
    from grmu.runtime import atomic_path, torch_save

    with atomic_path(path) as tmp:
        torch_save({"state_dict": model.state_dict(), "info": info}, tmp)


def load_checkpoint(path, model: Net) -> dict:
    path = Path(path)
    if not path.exists():
        raise GrmuError(f"missing checkpoint: {path} (run the stage that trains it, e.g. `dvc repro`)")
    try:
        # weights_only: tensors and plain data only, so a tampered checkpoint (from a remote, a
        # teammate's dvc.lock, `dvc exp pull`) can never run code while it is read
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
            raise ValueError("not a grmu checkpoint (expected a dict with 'state_dict' and 'info')")
        model.load_state_dict(ckpt["state_dict"])
    except Exception as e:  # pickle, zipfile, torch raise many types for a damaged or foreign file
        raise GrmuError.wrap(
            f"cannot load checkpoint {path} (rerun the stage that makes it, e.g. "
            "`dvc repro --force <stage>`, or `dvc pull` it again)",
            e,
        ) from e
    return ckpt.get("info", {})
