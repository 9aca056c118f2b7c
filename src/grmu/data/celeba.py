"""CelebA (Liu et al., 2015) in torchvision's layout, as the paper uses it (fact sheet §1):

* target ``y`` = attribute ``Blond_Hair``, sensitive ``a`` = attribute ``Male`` (the files
  store -1/1; ``(v + 1) / 2`` gives 0/1, as torchvision does);
* splits from the official partition file (0 train, 1 val, 2 test): 162,770 / 19,867 / 19,962;
* default forget group (y=1, a=1), blond males: 1,387 training images;
* evaluation transform: squash-resize to ``size x size`` (no crop).

Expected under ``data_dir``::

    celeba/list_attr_celeba.txt       line 1: image count, line 2: the 40 attribute names,
                                      then "<file> <40 values of -1/1>"
    celeba/list_eval_partition.txt    "<file> <0|1|2>"
    celeba/img_align_celeba/<file>    the aligned and cropped JPEGs (000001.jpg ...)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.data import register_dataset
from grmu.data.images import check_size, check_values, decode_images, need_dir, need_file

OPTIONS = ("image_size",)  # values: params.yaml datasets.celeba
TARGET, SENSITIVE = "Blond_Hair", "Male"
SPLIT_NAMES = {0: "train", 1: "val", 2: "test"}
DOWNLOAD = (
    "download img_align_celeba.zip, list_attr_celeba.txt and list_eval_partition.txt from "
    "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, or run "
    "torchvision.datasets.CelebA(data_dir, download=True)"
)


def read_attributes(path: Path):
    """``list_attr_celeba.txt`` as a DataFrame: column ``file`` and one column per attribute."""
    import pandas as pd

    need_file(path, "CelebA attribute file", DOWNLOAD)
    with open(path) as f:
        f.readline()  # the image count
        names = f.readline().split()
    if not names:
        raise GrmuError(f"{path}: line 2 must list the attribute names (the official list_attr_celeba.txt)")
    missing = [c for c in (TARGET, SENSITIVE) if c not in names]
    if missing:
        raise GrmuError(
            f"{path} lacks attribute column(s) {', '.join(missing)}; expected the 40 CelebA "
            f"attributes incl. {TARGET} and {SENSITIVE} (found: {', '.join(names[:6])}...)"
        )
    df = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None, names=["file", *names], dtype={"file": str})
    for col in (TARGET, SENSITIVE):
        check_values(df[col].dropna().unique(), (-1, 1), col, path)
        if df[col].isna().any():
            raise GrmuError(f"{path}: row of {df['file'][df[col].isna()].iloc[0]} has too few values")
    return df


def read_partition(path: Path):
    import pandas as pd

    need_file(path, "CelebA partition file", DOWNLOAD)
    df = pd.read_csv(path, sep=r"\s+", header=None, names=["file", "partition"], dtype={"file": str})
    check_values(df["partition"].unique(), (0, 1, 2), "partition", path)
    return df


@register_dataset("celeba", options=OPTIONS, forget_groups=[[1, 1]])
def build(options: dict, data_dir):
    """CelebA: blond hair (y) vs sex (a = male), official splits, forget blond males."""
    import pandas as pd

    size = check_size("celeba", options["image_size"])
    root = need_dir(Path(data_dir) / "celeba", "CelebA folder", DOWNLOAD)
    attr_path, part_path = root / "list_attr_celeba.txt", root / "list_eval_partition.txt"
    part = read_partition(part_path)
    attr = read_attributes(attr_path).drop_duplicates("file").set_index("file")
    missing = ~part["file"].isin(attr.index)
    if missing.any():
        raise GrmuError(
            f"{int(missing.sum())} image(s) of {part_path} have no row in {attr_path} "
            f"(first: {part['file'][missing].iloc[0]}); use the official files of one release"
        )
    attr = attr.loc[part["file"]]
    y = ((attr[TARGET].to_numpy() + 1) // 2).astype(np.int64)
    a = ((attr[SENSITIVE].to_numpy() + 1) // 2).astype(np.int64)
    images = need_dir(root / "img_align_celeba", "CelebA image folder", DOWNLOAD)
    inputs = decode_images(
        [images / f for f in part["file"]], size, "squash", listed_in=part_path, desc="decoding CelebA"
    )
    table = pd.DataFrame(
        {"index": np.arange(len(part)), "split": part["partition"].map(SPLIT_NAMES).to_numpy(), "y": y, "a": a}
    )
    info = {
        "n_classes": 2,
        "n_attrs": 2,
        "classes": ["not blond", "blond"],
        "attrs": ["female", "male"],
        "input": "image",
        "augment": "crop_flip",
    }
    return table, inputs, info
