"""Waterbirds (Sagawa et al., 2020), the ``waterbird_complete95_forest2water2`` release, as the
paper uses it (fact sheet §1):

* target ``y`` = column ``y`` (1 = waterbird), sensitive ``a`` = column ``place``
  (1 = water background, 0 = land);
* splits from the ``split`` column (0 train, 1 val, 2 test): 4,795 / 1,199 / 5,794;
* default forget group (y=1, a=0), waterbirds on land: 56 training images;
* evaluation transform: resize the short side to ``size * 256 / 224``, centre crop ``size``.

Expected under ``data_dir``::

    waterbird_complete95_forest2water2/metadata.csv      columns img_filename, y, split, place
    waterbird_complete95_forest2water2/<img_filename>    e.g. 001.Black_footed_Albatross/...jpg
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grmu.data import register_dataset
from grmu.data.images import check_size, check_values, decode_images, need_dir, read_csv

OPTIONS = ("image_size",)  # values: params.yaml datasets.waterbirds
FOLDER = "waterbird_complete95_forest2water2"
COLUMNS = ("img_filename", "y", "split", "place")
SPLIT_NAMES = {0: "train", 1: "val", 2: "test"}
DOWNLOAD = (
    "download and extract https://nlp.stanford.edu/data/dro/waterbird_complete95_forest2water2.tar.gz "
    "(from https://github.com/kohpangwei/group_DRO)"
)


@register_dataset("waterbirds", options=OPTIONS, forget_groups=[[1, 0]])
def build(options: dict, data_dir):
    """Waterbirds: waterbird (y) vs background (a = water), official splits, forget waterbirds on land."""
    import pandas as pd

    size = check_size("waterbirds", options["image_size"])
    root = need_dir(Path(data_dir) / FOLDER, "Waterbirds folder", DOWNLOAD)
    meta_path = root / "metadata.csv"
    df = read_csv(meta_path, COLUMNS, DOWNLOAD, dtype={"img_filename": str})
    for col, valid in (("y", (0, 1)), ("place", (0, 1)), ("split", (0, 1, 2))):
        check_values(df[col].unique(), valid, col, meta_path)
    inputs = decode_images(
        [root / f for f in df["img_filename"]], size, "resize_crop", listed_in=meta_path, desc="decoding Waterbirds"
    )
    table = pd.DataFrame(
        {
            "index": np.arange(len(df)),
            "split": df["split"].map(SPLIT_NAMES).to_numpy(),
            "y": df["y"].to_numpy(np.int64),
            "a": df["place"].to_numpy(np.int64),
        }
    )
    info = {
        "n_classes": 2,
        "n_attrs": 2,
        "classes": ["landbird", "waterbird"],
        "attrs": ["land", "water"],
        "input": "image",
        "augment": "crop_flip",
    }
    return table, inputs, info
