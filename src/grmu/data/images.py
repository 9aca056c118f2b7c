"""Shared helpers of the real image datasets: reading their tables with clear errors, and
decoding every image once into one uint8 ``N x 3 x S x S`` tensor with the dataset's
evaluation transform (fact sheet §1.3), scaled so that ``S`` replaces the paper's 224:

* ``squash`` (CelebA): resize to ``S x S``, ignoring the aspect ratio;
* ``resize_crop`` (Waterbirds, FairFace): resize the short side to ``round(S * 256 / 224)``
  (256 at S = 224), then take the centre ``S x S`` crop.

Both follow torchvision's PIL path (bilinear ``Image.resize``, which antialiases when it
shrinks; the crop offsets ``int(round((side - S) / 2))``), so at ``S = 224`` the stored tensor
is what the official code's test transform feeds the network before normalisation. The
training augmentation (random resized crop + flip) is applied later, on the fly, to batches
of these tensors (``grmu.train.random_resized_crop_flip``).

Images are decoded by a pool of threads (Pillow releases the GIL while decoding and
resizing), each writing its own slots of the output, so the result does not depend on the
number of threads.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

from grmu import GrmuError

TRANSFORMS = ("squash", "resize_crop")
# above this many bytes the decoded images live in an unlinked temporary file (TMPDIR)
# instead of anonymous memory, so CelebA at 224 px (30 GB) needs disk, not RAM
IN_MEMORY_LIMIT = 2 << 30
CHUNK = 64  # images per decoding task


def check_size(dataset: str, size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise GrmuError(f"datasets.{dataset}.image_size must be an integer >= 8 (the paper: 224), got {size!r}")
    return size


def need_dir(path: Path, what: str, download: str) -> Path:
    """``path`` if it is a folder, else one line saying what is expected there and where to get it."""
    if not path.is_dir():
        raise GrmuError(f"{what} not found: expected the folder {path} ({download}; set data_dir to its parent)")
    return path


def need_file(path: Path, what: str, download: str) -> Path:
    if not path.is_file():
        raise GrmuError(f"{what} not found: expected the file {path} ({download})")
    return path


def read_csv(path: Path, columns, download: str, **kw):
    """A CSV file as a DataFrame, refusing a missing file or missing columns in one line."""
    import pandas as pd

    need_file(path, path.name, download)
    try:
        df = pd.read_csv(path, **kw)
    except Exception as e:  # pandas raises several types for unreadable files
        raise GrmuError.wrap(f"cannot read {path}", e) from e
    check_columns(df, columns, path)
    return df


def check_columns(df, columns, path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise GrmuError(
            f"{path} lacks column(s) {', '.join(missing)}; expected columns {', '.join(columns)} "
            f"(found: {', '.join(map(str, df.columns))})"
        )


def check_values(values, valid, column: str, path: Path) -> None:
    """Refuse values of ``column`` outside ``valid``, naming the first bad one."""
    bad = sorted(set(values) - set(valid), key=str)
    if bad:
        raise GrmuError(f"{path}: column '{column}' has the value {bad[0]!r}; valid: {', '.join(map(str, valid))}")


def eval_geometry(width: int, height: int, size: int, transform: str):
    """``((resized_w, resized_h), crop box or None)`` of the evaluation transform."""
    if transform == "squash":
        return (size, size), None
    if transform != "resize_crop":
        raise ValueError(f"unknown transform {transform!r}; valid: {', '.join(TRANSFORMS)}")
    short_target = int(round(size * 256 / 224))
    # torchvision's Resize(int): the short side becomes the target, the long side is truncated
    if width <= height:
        new_w, new_h = short_target, int(short_target * height / width)
    else:
        new_w, new_h = int(short_target * width / height), short_target
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return (new_w, new_h), (left, top, left + size, top + size)


def load_image(path: Path, size: int, transform: str) -> np.ndarray:
    """One image as a uint8 ``S x S x 3`` array after the evaluation transform."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        (w, h), box = eval_geometry(img.width, img.height, size, transform)
        img = img.resize((w, h), Image.BILINEAR)
        if box is not None:
            img = img.crop(box)
        return np.array(img, dtype=np.uint8)  # a writable copy


def image_buffer(n: int, size: int):
    """An uninitialised uint8 ``n x 3 x size x size`` tensor; file-backed when large."""
    import torch

    nbytes = n * 3 * size * size
    if nbytes <= IN_MEMORY_LIMIT:
        return torch.empty((n, 3, size, size), dtype=torch.uint8)
    fd, name = tempfile.mkstemp(prefix="grmu-images-", suffix=".u8")
    try:
        os.ftruncate(fd, nbytes)
        os.close(fd)
        flat = torch.from_file(name, shared=True, size=nbytes, dtype=torch.uint8)
    finally:
        os.remove(name)  # the mapping keeps the data alive until the tensor is freed
    return flat.view(n, 3, size, size)


def decode_images(paths: list[Path], size: int, transform: str, *, listed_in, desc: str, workers: int | None = None):
    """Decode ``paths`` (in order) into one uint8 ``N x 3 x S x S`` tensor.

    ``listed_in`` is the table file that lists the images (one path, or one per image). A
    missing or undecodable image stops the whole run with one line naming the file and that
    table; nothing is written in that case.
    """
    import torch
    from tqdm.auto import tqdm

    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; valid: {', '.join(TRANSFORMS)}")
    out = image_buffer(len(paths), size)

    def work(start: int) -> int:
        for i in range(start, min(start + CHUNK, len(paths))):
            path = paths[i]
            table = listed_in if isinstance(listed_in, (str, Path)) else listed_in[i]
            try:
                arr = load_image(path, size, transform)
            except FileNotFoundError as e:
                raise GrmuError(
                    f"image file not found: {path} (listed in {table}); "
                    "the image folder is incomplete, re-extract the dataset archive"
                ) from e
            except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... on bad files
                raise GrmuError(
                    f"corrupt image {path} (listed in {table}): cannot decode it "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    "re-download or re-extract it"
                ) from e
            out[i].copy_(torch.from_numpy(arr).permute(2, 0, 1))
        return min(start + CHUNK, len(paths)) - start

    workers = workers or min(16, os.cpu_count() or 1)
    t0 = time.time()
    # the bar shows on a terminal only (a stage's stderr then stays one line on failure)
    bar = tqdm(total=len(paths), desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0, disable=None)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = {pool.submit(work, s) for s in range(0, len(paths), CHUNK)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in done:
                if fut.exception() is not None:
                    for p in pending:
                        p.cancel()
                    bar.close()
                    raise fut.exception()
                bar.update(fut.result())
    bar.close()
    seconds = time.time() - t0
    print(f"{desc}: {len(paths)} images in {seconds:.1f}s ({len(paths) / max(seconds, 1e-9):.0f} images/s)")
    return out
