"""Tiny stand-ins for the real datasets, in their official layouts (file names, columns and
encodings as the real releases), for tests and benchmarks:

* ``make_celeba(root)``      -> root/celeba/{list_attr_celeba.txt, list_eval_partition.txt, img_align_celeba/}
* ``make_waterbirds(root)``  -> root/waterbird_complete95_forest2water2/{metadata.csv, <species>/<image>.jpg}
* ``make_fairface(root)``    -> root/fairface/{fairface_label_train.csv, fairface_label_val.csv, train/, val/}
* ``make_multinli(root)``    -> root/multinli_1.0/{metadata_random.csv, bert_features/cached_*, MNLI/*.tsv}
  and root/bert-base-uncased/vocab.txt (a tiny vocabulary); ``make_bert_folder`` saves a tiny
  random BERT there in the Hugging Face format
* ``make_cifar10(root)``     -> root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
* ``make_cifar100(root)``    -> root/cifar-100-python/{train, test, meta}  (both via ``write_cifar``)

``MAKERS`` maps every registered dataset that reads files under ``data_dir`` to its maker
(``tests/test_registries.py`` prepares each from it, and fails for a file-based dataset without
one); ``FIXTURE_OPTIONS`` holds the dataset options a fixture is written for, where
params.yaml's would not fit it.

How many images of each kind there are is given by the ``*_COUNTS`` tables below, so tests
can state the expected group counts and split sizes by hand. Rows are interleaved (not
grouped by split or group) in a fixed order, and every image is a small JPEG whose colour
depends on its label, so a model has something to learn.
"""

from __future__ import annotations

import csv
import pickle
import sys
import types
from contextlib import contextmanager
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
    (0, 0, 0): 8,
    (0, 0, 1): 7,
    (0, 1, 0): 5,
    (0, 1, 1): 6,
    (1, 0, 0): 2,
    (1, 0, 1): 2,
    (1, 1, 0): 2,
    (1, 1, 1): 2,
    (2, 0, 0): 2,
    (2, 0, 1): 2,
    (2, 1, 0): 2,
    (2, 1, 1): 2,
}

# (split 0/1/2, y 0/1, place 0/1) -> number of images
WATERBIRDS_COUNTS = {
    (0, 0, 0): 8,
    (0, 0, 1): 3,
    (0, 1, 0): 4,
    (0, 1, 1): 7,
    (1, 0, 0): 2,
    (1, 0, 1): 2,
    (1, 1, 0): 2,
    (1, 1, 1): 2,
    (2, 0, 0): 2,
    (2, 0, 1): 2,
    (2, 1, 0): 2,
    (2, 1, 1): 2,
}
WATERBIRD_SPECIES = {
    0: ["026.Bronzed_Cowbird", "157.Yellow_throated_Vireo"],
    1: ["089.Hooded_Merganser", "045.Northern_Fulmar"],
}
PLACES = {0: ["/b/bamboo_forest/", "/f/forest/broadleaf/"], 1: ["/o/ocean/", "/l/lake/natural/"]}

FAIRFACE_AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
FAIRFACE_RACES = ("Black", "Southeast Asian", "Middle Eastern", "Indian", "Latino_Hispanic", "White", "East Asian")
# (age index, race index, service_test) -> number of rows of fairface_label_train.csv
FAIRFACE_TRAIN_COUNTS = {
    (3, 0, True): 10,  # the default forget group: 20-29 & Black
    (6, 4, True): 3,
    (1, 5, True): 3,  # inside the 9 groups of multi_group 3
    (3, 5, True): 2,
    (6, 0, True): 2,
    (8, 6, True): 2,
    (4, 2, True): 2,  # inside the 25 groups of multi_group 5 only
    (3, 6, True): 1,
    (0, 3, True): 4,
    (5, 1, True): 3,  # in neither
    (3, 0, False): 4,
    (0, 3, False): 2,  # service_test False: dropped
}
# ... and of fairface_label_val.csv (the test split)
FAIRFACE_VAL_COUNTS = {
    (3, 0, True): 3,
    (6, 4, True): 2,
    (8, 6, True): 1,
    (0, 3, True): 2,
    (5, 1, True): 2,
    (3, 3, True): 2,
    (0, 0, True): 2,  # so every cell of EO's (age in T, race in S) split has test rows
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


def make_fairface(
    root: Path, train_counts: dict = FAIRFACE_TRAIN_COUNTS, val_counts: dict = FAIRFACE_VAL_COUNTS, image_size: int = 24
) -> Path:
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


# (split 0/1/2, gold_label 0/1/2, sentence2_has_negation 0/1) -> number of sentence pairs
MULTINLI_COUNTS = {
    (0, 0, 0): 6,
    (0, 0, 1): 4,
    (0, 1, 0): 6,
    (0, 1, 1): 2,
    (0, 2, 0): 5,
    (0, 2, 1): 6,
    **{(split, y, a): 2 for split in (1, 2) for y in range(3) for a in range(2)},
}
MULTINLI_FILES = {"train.tsv": 35, "dev_matched.tsv": 9, "dev_mismatched.tsv": 9}  # rows per GLUE file, in order
MULTINLI_LENGTH = 32  # tokens per pair in the fixture (the real release: 128)
GLUE_LABELS = ("contradiction", "entailment", "neutral")
# a tiny BERT vocabulary: the special tokens, whole words and the pieces of the split ones
BERT_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "is",
    "runn",
    "##ing",
    "##s",
    "happy",
    "sad",
    "maybe",
    "not",
    "never",
    "don",
    "'",
    "t",
    ".",
    ",",
    "cafe",
    "park",
    "in",
]
SUBJECTS = ("the cat", "a dog", "the dogs", "cats")
PLACES_NLI = ("on the mat", "in the park", "at the café", "running in the park")
LABEL_WORDS = ("sad", "happy", "maybe")  # sentence 2 says the label, so a model can learn it


def _multinli_pairs(counts: dict) -> list[tuple]:
    """(split, label, negation, sentence1, sentence2) rows in a fixed shuffled order."""
    rows = []
    for i, (split, y, a) in enumerate(_rows(counts, seed=6)):
        s1 = f"{SUBJECTS[i % 4].capitalize()} sat {PLACES_NLI[i % 4 if i % 7 else 3]}."
        neg = ("not ", "never ", "don't ")[i % 3] if a else ""
        s2 = f"{SUBJECTS[(i + 1) % 4]} is {neg}{LABEL_WORDS[y]}" + (" , runnings" if i % 5 == 0 else "")
        rows.append((split, y, a, s1, s2))
    return rows


@contextmanager
def glue_input_features():
    """pytorch-transformers' ``utils_glue.InputFeatures``, importable (hence picklable under
    that name, as in the real cached files) while the context lasts."""
    module = types.ModuleType("utils_glue")

    class InputFeatures:
        def __init__(self, input_ids, input_mask, segment_ids, label_id):
            self.input_ids, self.input_mask, self.segment_ids, self.label_id = (
                input_ids,
                input_mask,
                segment_ids,
                label_id,
            )

    InputFeatures.__module__, InputFeatures.__qualname__ = "utils_glue", "InputFeatures"
    module.InputFeatures = InputFeatures
    sys.modules["utils_glue"] = module
    try:
        yield InputFeatures
    finally:
        del sys.modules["utils_glue"]


def make_multinli(root: Path, counts: dict = MULTINLI_COUNTS, features: bool = True, text: bool = True) -> Path:
    """``root/multinli_1.0`` as the group-DRO release (metadata_random.csv and, if ``features``,
    the cached features pickled as pytorch-transformers ``utils_glue.InputFeatures`` by
    ``torch.save``: the train file in torch's legacy format, the dev files in the zip format,
    tokenised by the ``transformers`` BERT tokenizer), plus, if ``text``, the GLUE MNLI .tsv
    files, and ``root/bert-base-uncased/vocab.txt``."""
    import torch
    from transformers import BertTokenizer

    base = Path(root) / "multinli_1.0"
    base.mkdir(parents=True, exist_ok=True)
    vocab = Path(root) / "bert-base-uncased" / "vocab.txt"
    vocab.parent.mkdir(parents=True, exist_ok=True)
    vocab.write_text("\n".join(BERT_VOCAB) + "\n")
    rows = _multinli_pairs(counts)
    assert sum(MULTINLI_FILES.values()) == len(rows)
    with open(base / "metadata_random.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "gold_label", "sentence2_has_negation", "split"])
        for i, (split, y, a, _, _) in enumerate(rows):
            w.writerow([i, y, a, split])
    chunks, start = {}, 0
    for name, n in MULTINLI_FILES.items():
        chunks[name], start = rows[start : start + n], start + n
    if text:
        (base / "MNLI").mkdir(exist_ok=True)
        for name, chunk in chunks.items():
            labels = ["label1"] if name == "train.tsv" else [f"label{k}" for k in range(1, 6)]
            header = [
                "index",
                "promptID",
                "pairID",
                "genre",
                "sentence1_binary_parse",
                "sentence2_binary_parse",
                "sentence1_parse",
                "sentence2_parse",
                "sentence1",
                "sentence2",
                *labels,
                "gold_label",
            ]
            lines = ["\t".join(header)]
            for i, (_, y, _, s1, s2) in enumerate(chunk):
                parse = ["( x )", "( y )", "(ROOT x)", "(ROOT y)"]
                lines.append(
                    "\t".join(
                        [
                            str(i),
                            str(100 + i),
                            f"{100 + i}n",
                            "fiction",
                            *parse,
                            s1,
                            s2,
                            *[GLUE_LABELS[y]] * len(labels),
                            GLUE_LABELS[y],
                        ]
                    )
                )
            (base / "MNLI" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    if features:
        with glue_input_features() as InputFeatures:
            tok = BertTokenizer(str(vocab), do_lower_case=True)
            (base / "bert_features").mkdir(exist_ok=True)
            names = (
                "cached_train_bert-base-uncased_128_mnli",
                "cached_dev_bert-base-uncased_128_mnli",
                "cached_dev_bert-base-uncased_128_mnli-mm",
            )
            for k, (name, chunk) in enumerate(zip(names, chunks.values())):
                feats = []
                for _, y, _, s1, s2 in chunk:
                    enc = tok(s1, s2, max_length=MULTINLI_LENGTH, truncation="longest_first", padding="max_length")
                    feats.append(InputFeatures(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], y))
                torch.save(feats, base / "bert_features" / name, _use_new_zipfile_serialization=k > 0)
    return base


def make_bert_folder(folder: Path, width: int = 16) -> Path:
    """A tiny randomly initialised BERT saved by ``save_pretrained`` (config.json, model.safetensors)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(BERT_VOCAB),
        hidden_size=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * width,
    )
    BertModel(config).save_pretrained(folder)
    (Path(folder) / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    return Path(folder)


def make_weights(root: Path) -> Path:
    """What the real datasets' training protocols read from ``root`` (a data_dir): random
    ResNet-18 weights as ``resnet18.a1_in1k.safetensors`` and a tiny BERT as ``bert-base-uncased/``
    (over ``make_multinli``'s vocabulary, which is the same)."""
    import torch
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(0)
    Path(root).mkdir(parents=True, exist_ok=True)
    save_file(resnet18(weights=None).state_dict(), str(Path(root) / "resnet18.a1_in1k.safetensors"))
    make_bert_folder(Path(root) / "bert-base-uncased")
    return Path(root)


CIFAR_PER_CLASS = {"cifar10": 20, "cifar100": 10}  # training images per class in the CIFAR fixtures


def cifar_pixels(n: int, seed: int) -> np.ndarray:
    """``n`` random images as CIFAR stores them: uint8 rows of 3072 pixels (CHW order)."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar(root: Path, name: str) -> tuple[Path, np.ndarray]:
    """A small CIFAR folder (``name`` cifar10 or cifar100) in the official python layout:
    python-2-style pickles with bytes keys, ``CIFAR_PER_CLASS[name]`` training images per class
    (shuffled) and a test batch; returns the folder and the training labels in file order."""
    root = Path(root)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        labels = np.repeat(np.arange(10), CIFAR_PER_CLASS[name])
        np.random.default_rng(0).shuffle(labels)
        for i, part in enumerate(np.array_split(np.arange(len(labels)), 5)):
            batch = {
                b"batch_label": b"training batch",
                b"labels": labels[part].tolist(),
                b"data": cifar_pixels(len(part), i),
                b"filenames": [b"x.png"] * len(part),
            }
            (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=2))
        test = {b"labels": list(range(10)) * 3, b"data": cifar_pixels(30, 9)}
        (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
        meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
        return folder, labels
    if name != "cifar100":
        raise ValueError(f"write_cifar: unknown CIFAR {name!r}; valid: cifar10, cifar100")
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(100), CIFAR_PER_CLASS[name])
    np.random.default_rng(1).shuffle(labels)
    train = {
        b"fine_labels": labels.tolist(),
        b"coarse_labels": (labels // 5).tolist(),
        b"data": cifar_pixels(len(labels), 1),
    }
    (folder / "train").write_bytes(pickle.dumps(train, protocol=2))
    test = {b"fine_labels": list(range(100)), b"data": cifar_pixels(100, 2)}
    (folder / "test").write_bytes(pickle.dumps(test, protocol=2))
    meta = {b"fine_label_names": [f"f{i}".encode() for i in range(100)], b"coarse_label_names": [b"x"] * 20}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder, labels


def make_cifar10(root: Path) -> Path:
    """``root/cifar-10-batches-py`` (``write_cifar``)."""
    return write_cifar(root, "cifar10")[0]


def make_cifar100(root: Path) -> Path:
    """``root/cifar-100-python`` (``write_cifar``)."""
    return write_cifar(root, "cifar100")[0]


# every registered dataset that reads files under data_dir -> the maker of its smallest fixture
MAKERS = {
    "celeba": make_celeba,
    "waterbirds": make_waterbirds,
    "fairface": make_fairface,
    "multinli": make_multinli,
    "cifar10": make_cifar10,
    "cifar100": make_cifar100,
}
# dataset options a fixture is written for (the rest: params.yaml's): MultiNLI's cached features
# hold MULTINLI_LENGTH tokens per pair, and max_length must match them
FIXTURE_OPTIONS = {"multinli": {"max_length": MULTINLI_LENGTH}}


def make_all(root: Path) -> Path:
    """All the datasets under ``root`` (a data_dir)."""
    for make in MAKERS.values():
        make(root)
    return Path(root)
