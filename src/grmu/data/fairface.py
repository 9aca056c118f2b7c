"""FairFace (Kärkkäinen & Joo, 2021) as the paper uses it (fact sheet §1, §2):

* only rows whose ``service_test`` column is ``True`` are kept (the official code's filter);
* target ``y`` = column ``age`` in 9 bins: 0-2, 3-9, 10-19, 20-29, 30-39, 40-49, 50-59,
  60-69, more than 70 (0..8); sensitive ``a`` = column ``race`` (7 values, in the code's
  order): Black 0, Southeast Asian 1, Middle Eastern 2, Indian 3, Latino_Hispanic 4, White 5,
  East Asian 6 (``gender`` is not used); 63 groups;
* splits: the filtered ``fairface_label_train.csv`` is split 90/10 into train / val by the
  official protocol: its row positions ``0..n-1`` shuffled with Python's
  ``random.Random(seed).shuffle``, train = the first ``int(0.9 n)``, val = the rest (the
  ``seed`` option, the same for every experiment seed; the official code used the run's seed).
  The filtered ``fairface_label_val.csv`` is the test split;
* default forget group (y=3, a=0): 20-29 year-old Black people; ``forget.multi_group`` 3 / 5
  selects the 9- / 25-group forget sets built from ``MULTI_GROUP_PAIRS`` (``grmu.splits``);
* evaluation transform: resize the short side to ``size * 256 / 224``, centre crop ``size``.

Expected under ``data_dir``::

    fairface/fairface_label_train.csv   columns file, age, gender, race, service_test
    fairface/fairface_label_val.csv     the same
    fairface/<file>                     the images, e.g. train/1.jpg, val/1.jpg
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.data import register_dataset
from grmu.data.images import check_size, check_values, decode_images, need_dir, read_csv

OPTIONS = ("image_size", "seed")  # values: params.yaml datasets.fairface
AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
RACES = ("Black", "Southeast Asian", "Middle Eastern", "Indian", "Latino_Hispanic", "White", "East Asian")
COLUMNS = ("file", "age", "race", "service_test")
TRAIN_FRAC = 0.9
# the official --multi_group order of (age, race) pairs (fact sheet §2.3): k takes the first k
# pairs; the forget groups are then all (age, race) combinations of their ages and races
MULTI_GROUP_PAIRS = [[3, 0], [6, 4], [1, 5], [8, 6], [4, 2]]
DOWNLOAD = (
    "download the images (fairface-img-margin025-trainval.zip) and the two label CSVs from "
    "https://github.com/joojs/fairface and extract them into one folder 'fairface'"
)


def read_labels(path: Path):
    """The rows of one label CSV with ``service_test == True``, as ``(files, y, a)``."""
    df = read_csv(path, COLUMNS, DOWNLOAD, dtype={"file": str, "age": str, "race": str, "service_test": str})
    df = df[df["service_test"].str.strip() == "True"]
    check_values(df["age"].unique(), AGES, "age", path)
    check_values(df["race"].unique(), RACES, "race", path)
    y = df["age"].map({v: i for i, v in enumerate(AGES)}).to_numpy(np.int64)
    a = df["race"].map({v: i for i, v in enumerate(RACES)}).to_numpy(np.int64)
    return df["file"].tolist(), y, a


def train_val_split(n: int, seed: int) -> np.ndarray:
    """'train' / 'val' per row of the filtered train CSV (the official seeded 90/10 shuffle)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    split = np.full(n, "val", dtype=object)
    split[order[: int(TRAIN_FRAC * n)]] = "train"
    return split


@register_dataset("fairface", options=OPTIONS, forget_groups=[[3, 0]])
def build(options: dict, data_dir):
    """FairFace: age (9 bins, y) vs race (7, a), seeded 90/10 train/val, forget 20-29 & Black."""
    import pandas as pd

    size = check_size("fairface", options["image_size"])
    seed = options["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GrmuError(f"datasets.fairface.seed must be a non-negative integer, got {seed!r}")
    root = need_dir(Path(data_dir) / "fairface", "FairFace folder", DOWNLOAD)
    train_csv, val_csv = root / "fairface_label_train.csv", root / "fairface_label_val.csv"
    files_tr, y_tr, a_tr = read_labels(train_csv)
    files_te, y_te, a_te = read_labels(val_csv)
    if not files_tr or not files_te:
        empty = train_csv if not files_tr else val_csv
        raise GrmuError(f"{empty} has no row with service_test == True; use the official label CSVs")
    split = np.concatenate([train_val_split(len(files_tr), seed), np.full(len(files_te), "test", dtype=object)])
    listed_in = [train_csv] * len(files_tr) + [val_csv] * len(files_te)
    inputs = decode_images(
        [root / f for f in files_tr + files_te], size, "resize_crop", listed_in=listed_in, desc="decoding FairFace"
    )
    table = pd.DataFrame(
        {
            "index": np.arange(len(split)),
            "split": split,
            "y": np.concatenate([y_tr, y_te]),
            "a": np.concatenate([a_tr, a_te]),
        }
    )
    info = {
        "n_classes": len(AGES),
        "n_attrs": len(RACES),
        "classes": list(AGES),
        "attrs": list(RACES),
        "input": "image",
        "augment": "crop_flip",
        "multi_group_pairs": MULTI_GROUP_PAIRS,
    }
    return table, inputs, info
