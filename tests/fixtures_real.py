"""Tiny stand-ins for the real datasets, in their official layouts (file names, columns and
encodings as the real releases), for tests and benchmarks:

* ``make_celeba(root)``      -> root/celeba/{list_attr_celeba.txt, list_eval_partition.txt, img_align_celeba/}
* ``make_waterbirds(root)``  -> root/waterbird_complete95_forest2water2/{metadata.csv, <species>/<image>.jpg}
* ``make_fairface(root)``    -> root/fairface/{fairface_label_train.csv, fairface_label_val.csv, train/, val/}

How many images of each kind there are is given by the ``*_COUNTS`` tables below, so tests
can state the expected group counts and split sizes by hand. Rows are interleaved (not
grouped by split or group) in a fixed order, and every image is a small JPEG whose colour
depends on its label, so a model has something to learn.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()

# (partition 0/1/2, Blond_Hair 0/1, Male 0/1) -> number of images
CELEBA_COUNTS = {
    (0, 0, 0): 8, (0, 0, 1): 7, (0, 1, 0): 5, (0, 1, 1): 6,
    (1, 0, 0): 2, (1, 0, 1): 2, (1, 1, 0): 2, (1, 1, 1): 2,
    (2, 0, 0): 2, (2, 0, 1): 2, (2, 1, 0): 2, (2, 1, 1): 2,
}

# (split 0/1/2, y 0/1, place 0/1) -> number of images
WATERBIRDS_COUNTS = {
    (0, 0, 0): 8, (0, 0, 1): 3, (0, 1, 0): 4, (0, 1, 1): 7,
    (1, 0, 0): 2, (1, 0, 1): 2, (1, 1, 0): 2, (1, 1, 1): 2,
    (2, 0, 0): 2, (2, 0, 1): 2, (2, 1, 0): 2, (2, 1, 1): 2,
}
WATERBIRD_SPECIES = {0: ["026.Bronzed_Cowbird", "157.Yellow_throated_Vireo"],
                     1: ["089.Hooded_Merganser", "045.Northern_Fulmar"]}
PLACES = {0: ["/b/bamboo_forest/", "/f/forest/broadleaf/"], 1: ["/o/ocean/", "/l/lake/natural/"]}

FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
FAIRFACE_RACES = ("Black", "Southeast Asian", "Middle Eastern", "Indian", "Latino_Hispanic", "White", "East Asian")
# (age index, race index, service_test) -> number of rows of fairface_label_train.csv
FAIRFACE_TRAIN_COUNTS = {
    (3, 0, True): 10,                   # the default forget group: 20-29 & Black
    (6, 4, True): 3, (1, 5, True): 3,   # inside the 9 groups of multi_group 3
    (3, 5, True): 2, (6, 0, True): 2,
    (8, 6, True): 2, (4, 2, True): 2,   # inside the 25 groups of multi_group 5 only
    (3, 6, True): 1,
    (0, 3, True): 4, (5, 1, True): 3,   # in neither
    (3, 0, False): 4, (0, 3, False): 2,  # service_test False: dropped
}
# ... and of fairface_label_val.csv (the test split)
FAIRFACE_VAL_COUNTS = {
    (3, 0, True): 3, (6, 4, True): 2, (8, 6, True): 1, (0, 3, True): 2, (5, 1, True): 2,
    (3, 3, True): 2, (0, 0, True): 2,  # so every cell of EO's (age in T, race in S) split has test rows
    (3, 0, False): 2,
}


def _rows(counts: dict, seed: int) -> list[tuple]:
    """The keys of ``counts`` repeated by their counts, in a fixed shuffled order."""
    rows = [key for key, n in counts.items() for _ in range(n)]
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in order]


def _write_image(path: Path, width: int, height: int, tint: tuple, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 96, size=(height, width, 3)) + np.asarray(tint)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_celeba(root: Path, counts: dict = CELEBA_COUNTS, image_size=(18, 22)) -> Path:
    """``root/celeba`` with torchvision's files; images ``image_size`` (w, h) (real: 178 x 218)."""
    base = Path(root) / "celeba"
    rows = _rows(counts, seed=1)
    rng = np.random.default_rng(2)
    blond, male = CELEBA_ATTRS.index("Blond_Hair"), CELEBA_ATTRS.index("Male")
    attr_lines = [f"{len(rows)}", " ".join(CELEBA_ATTRS) + " "]
    part_lines = []
    for i, (part, y, a) in enumerate(rows, start=1):
        name = f"{i:06d}.jpg"
        values = rng.choice([-1, 1], size=len(CELEBA_ATTRS))
        values[blond], values[male] = 2 * y - 1, 2 * a - 1
        attr_lines.append(f"{name} " + " ".join(f"{v:2d}" for v in values))
        part_lines.append(f"{name} {part}")
        _write_image(base / "img_align_celeba" / name, *image_size, (150 * y, 60, 150 * a), seed=i)
    (base / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (base / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")
    return base


def make_waterbirds(root: Path, counts: dict = WATERBIRDS_COUNTS) -> Path:
    """``root/waterbird_complete95_forest2water2`` with metadata.csv; images of mixed shapes."""
    base = Path(root) / "waterbird_complete95_forest2water2"
    base.mkdir(parents=True, exist_ok=True)
    rows = _rows(counts, seed=3)
    with open(base / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["img_id", "img_filename", "y", "split", "place", "place_filename"])
        for i, (split, y, place) in enumerate(rows, start=1):
            species = WATERBIRD_SPECIES[y][i % 2]
            bird = species.split(".", 1)[1]
            name = f"{species}/{bird}_{i:04d}_{1000 + i}.jpg"
            w.writerow([i, name, y, split, place, f"{PLACES[place][i % 2]}{i:08d}.jpg"])
            size = (30, 20) if i % 3 else (20, 27)  # landscape and portrait, as the real images
            _write_image(base / name, *size, (150 * y, 150 * place, 60), seed=100 + i)
    return base


def make_fairface(root: Path, train_counts: dict = FAIRFACE_TRAIN_COUNTS, val_counts: dict = FAIRFACE_VAL_COUNTS,
                  image_size: int = 24) -> Path:
    """``root/fairface`` with both label CSVs and the square images they list (real: 224 px)."""
    base = Path(root) / "fairface"
    genders = ("Male", "Female")
    for part, counts, seed in (("train", train_counts, 4), ("val", val_counts, 5)):
        rows = _rows(counts, seed=seed)
        base.mkdir(parents=True, exist_ok=True)
        with open(base / f"fairface_label_{part}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "age", "gender", "race", "service_test"])
            for i, (age, race, service) in enumerate(rows, start=1):
                name = f"{part}/{i}.jpg"
                w.writerow([name, FAIRFACE_AGES[age], genders[i % 2], FAIRFACE_RACES[race], str(service)])
                _write_image(base / name, image_size, image_size, (25 * age, 30 * race, 60), seed=seed * 1000 + i)
    return base


MAKERS = {"celeba": make_celeba, "waterbirds": make_waterbirds, "fairface": make_fairface}


def make_all(root: Path) -> Path:
    """All three datasets under ``root`` (a data_dir)."""
    for make in MAKERS.values():
        make(root)
    return Path(root)
