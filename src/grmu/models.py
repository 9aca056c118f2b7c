"""Architectures. Every model is a ``Net``: a feature extractor ``body`` (x -> z) and a linear
``head`` (z -> logits), so methods that need the features (MIU) get them directly."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from grmu import GrmuError

ARCHS = ("small_cnn", "resnet18")


class Net(nn.Module):
    def __init__(self, body: nn.Module, feat_dim: int, n_classes: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(feat_dim, n_classes)
        self.feat_dim = feat_dim

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
        *block(in_ch, width), *block(width, 2 * width), nn.Flatten(),
        nn.Linear(2 * width * side * side, 128), nn.ReLU(inplace=True),
    )
    return body, 128


def _resnet18(in_ch: int, pretrained: str) -> tuple[nn.Module, int]:
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if pretrained != "none":
        path = Path(pretrained)
        if not path.exists():
            raise GrmuError(
                f"model.pretrained file not found: {path}; put ImageNet ResNet-18 weights there "
                "(a torchvision or timm state_dict .pth/.pt) or set model.pretrained=none"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise GrmuError(f"{path} does not look like ResNet-18 weights (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if in_ch != 3:
        net.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
    net.fc = nn.Identity()
    return net, 512


def build_model(model_cfg: dict, n_classes: int, input_shape) -> Net:
    """``input_shape`` is one sample's shape, e.g. (3, 28, 28)."""
    arch = model_cfg["arch"]
    in_channels = int(input_shape[0])
    if arch == "small_cnn":
        body, dim = _small_cnn(in_channels, int(model_cfg["width"]), int(input_shape[-1]))
    elif arch == "resnet18":
        body, dim = _resnet18(in_channels, str(model_cfg.get("pretrained", "none")))
    else:
        raise GrmuError(f"unknown model.arch '{arch}'; valid: {', '.join(ARCHS)}")
    return Net(body, dim, n_classes)


def save_checkpoint(path, model: Net, info: dict) -> None:
    from grmu.runtime import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # through a file object: torch names the archive after a path, and tmp's name is random
        torch.save({"state_dict": model.state_dict(), "info": info}, f)


def load_checkpoint(path, model: Net) -> dict:
    path = Path(path)
    if not path.exists():
        raise GrmuError(f"missing checkpoint: {path} (run the stage that trains it, e.g. `dvc repro`)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["state_dict"])
    return ckpt.get("info", {})
