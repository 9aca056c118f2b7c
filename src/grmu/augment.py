"""Training augmentations of image batches, drawn from the training loop's seeded generator so
that runs stay reproducible: a random shift (``shift``, the default, used by colored_mnist and
mnist), the paper's random resized crop + horizontal flip (``crop_flip``, the real image
datasets) or CIFAR's padded random crop + flip (``crop_pad_flip``).
A prepared dataset names its augmentation in ``meta["augment"]``."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from grmu.registry import Registry

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _padded_crops(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Each image padded by ``pad`` (background -1) and cropped back to its size at a random
    offset in ``[0, 2 * pad]`` per axis, a different offset per image (one gather)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    offs = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).to(x.device)
    rows = offs[:, 0, None] + torch.arange(h, device=x.device)  # n x h
    cols = offs[:, 1, None] + torch.arange(w, device=x.device)  # n x w
    images = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[images, channels, rows[:, None, :, None], cols[:, None, None, :]]


def random_shift(x: torch.Tensor, gen: torch.Generator, frac: float = 0.1) -> torch.Tensor:
    """Training augmentation for images: shift each image by up to ``frac`` of its side
    (padding with the background value -1), a different random offset per image."""
    return _padded_crops(x, max(1, round(frac * x.shape[-1])), gen)


def _crop_boxes(n: int, height: int, width: int, gen: torch.Generator, scale, ratio, attempts: int = 10):
    """torchvision's ``RandomResizedCrop.get_params`` for ``n`` images at once: per image, the
    first of ``attempts`` draws (area fraction uniform in ``scale``, log aspect ratio uniform in
    ``log(ratio)``) whose integer box fits, else the central crop clamped to ``ratio``.
    Returns ``(top, left, h, w)`` as long tensors of length ``n``."""
    area = height * width
    frac = scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=gen, dtype=torch.float64)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, attempts, generator=gen, dtype=torch.float64))
    w = torch.round(torch.sqrt(area * frac * aspect)).long()
    h = torch.round(torch.sqrt(area * frac / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    found = ok.any(1)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (height - h + 1)).long(), (height - h) // 2)
    left = torch.where(found, (u[:, 1] * (width - w + 1)).long(), (width - w) // 2)
    return top, left, h, w


def random_resized_crop_flip(
    x: torch.Tensor, gen: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_p: float = 0.5
) -> torch.Tensor:
    """The paper's training augmentation on a batch ``B x C x H x W``:
    ``RandomResizedCrop((H, W), scale, ratio)`` then ``RandomHorizontalFlip(flip_p)``, a
    different crop and flip per image, in one ``grid_sample`` on ``x``'s device.

    Each crop box is drawn as torchvision draws it and resized back to ``H x W`` bilinearly at
    torchvision's sampling points (``align_corners=False``, clamped to the box, as
    ``resized_crop`` does; a crop is never larger than the image, so no antialiasing is
    involved)."""
    n, _, height, width = x.shape
    top, left, h, w = (v.double()[:, None] for v in _crop_boxes(n, height, width, gen, scale, ratio))
    flip = (torch.rand(n, generator=gen) < flip_p)[:, None]

    def coords(start, length, side):  # normalised sampling coordinates, n x side
        src = start + (torch.arange(side, dtype=torch.float64) + 0.5) * length / side - 0.5
        src = torch.minimum(torch.maximum(src, start), start + length - 1)
        return (2 * src + 1) / side - 1

    xs = coords(left, w, width)
    xs = torch.where(flip, xs.flip(1), xs)
    ys = coords(top, h, height)
    grid = torch.stack([xs[:, None, :].expand(n, height, width), ys[:, :, None].expand(n, height, width)], dim=-1)
    grid = grid.to(device=x.device, dtype=x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip_p: float = 0.5) -> torch.Tensor:
    """CIFAR's training augmentation on a batch: ``RandomCrop(side, padding=pad)`` (zero
    padding: black, -1 in grmu's [-1, 1] inputs) then ``RandomHorizontalFlip(flip_p)``, a
    different offset and flip per image."""
    out = _padded_crops(x, pad, gen)
    flip = torch.rand(len(x), generator=gen) < flip_p
    flipped = flip.nonzero().squeeze(1).to(x.device)
    out[flipped] = out[flipped].flip(-1)
    return out


# training augmentations of image batches, chosen by the prepared dataset's meta["augment"]
AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")
AUGMENTATIONS.add("shift", random_shift)
AUGMENTATIONS.add("crop_flip", random_resized_crop_flip)
AUGMENTATIONS.add("crop_pad_flip", random_crop_flip)


def list_augmentations() -> list[str]:
    return AUGMENTATIONS.names()


def get_augmentation(name: str) -> Augmentation:
    return AUGMENTATIONS.get(name)


def train_augmentation(prep) -> Augmentation:
    """The augmentation ``(x, gen) -> x`` that a prepared dataset's images get in training
    (its meta's ``augment``; ``shift`` when the meta does not say)."""
    return get_augmentation(prep.meta.get("augment", "shift"))
