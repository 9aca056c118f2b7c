"""MultiNLI (Williams et al., 2018) in the group-DRO release the paper uses (fact sheet §1):

* ``metadata_random.csv``: one row per sentence pair, in the order of the GLUE MNLI files
  train, dev_matched, dev_mismatched concatenated; target ``y`` = column ``gold_label`` in the
  GLUE order 0 contradiction, 1 entailment, 2 neutral; sensitive ``a`` = column
  ``sentence2_has_negation`` (0/1); splits from the ``split`` column (0 train, 1 val, 2 test):
  206,175 / 82,462 / 123,712 pairs; 6 groups;
* default forget group (y=2, a=1), neutral pairs with a negation: 1,992 training pairs;
* inputs: ``[input_ids, input_mask, segment_ids]`` of length ``max_length`` (128) per pair,
  stored as one ``N x 3 x L`` integer tensor, either

  - ``source: features``: read from the cached ``bert-base-uncased`` feature files of the
    release (pytorch-transformers ``InputFeatures`` pickles, read without importing that
    package and refusing any other kind of object), their ``label_id`` checked against
    ``gold_label``; or
  - ``source: text``: tokenised by the ``transformers`` fast BERT tokenizer from the GLUE MNLI
    text files and a BERT ``vocab.txt``, encoded in the GLUE sentence-pair format with the GLUE
    code's truncation (``encode_pair``), for users without the cached pickles;
  - ``source: auto`` (default): ``features`` when ``bert_features/`` exists, else ``text``.

Expected under ``data_dir``::

    multinli_1.0/metadata_random.csv        columns gold_label, sentence2_has_negation, split
    multinli_1.0/bert_features/cached_train_bert-base-uncased_128_mnli
    multinli_1.0/bert_features/cached_dev_bert-base-uncased_128_mnli
    multinli_1.0/bert_features/cached_dev_bert-base-uncased_128_mnli-mm
    # or, for source: text (GLUE's MNLI.zip extracted) and a BERT vocabulary:
    multinli_1.0/MNLI/{train,dev_matched,dev_mismatched}.tsv   columns sentence1, sentence2, gold_label
    bert-base-uncased/vocab.txt             (option ``vocab``; the folder model.pretrained reads)
"""

from __future__ import annotations

import csv
import pickle
import re
import sys
from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.data import register_dataset
from grmu.data.images import check_values, need_dir, need_file, read_csv

OPTIONS = ("source", "max_length", "vocab")  # values: params.yaml datasets.multinli
SOURCES = ("auto", "features", "text")
FOLDER = "multinli_1.0"
LABELS = ("contradiction", "entailment", "neutral")  # GLUE order
COLUMNS = ("gold_label", "sentence2_has_negation", "split")
SPLIT_NAMES = {0: "train", 1: "val", 2: "test"}
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
FEATURE_FILES = (
    "cached_train_bert-base-uncased_128_mnli",
    "cached_dev_bert-base-uncased_128_mnli",
    "cached_dev_bert-base-uncased_128_mnli-mm",
)
TEXT_FILES = ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv")
BERT_BASE_VOCAB = 30522
DOWNLOAD = (
    "download and extract https://nlp.stanford.edu/data/dro/multinli_bert_features.tar.gz and "
    "metadata_random.csv from https://github.com/kohpangwei/group_DRO (dataset_metadata/multinli)"
)
TEXT_DOWNLOAD = (
    "GLUE's MNLI.zip (https://gluebenchmark.com/tasks) extracted, with its train, dev_matched and dev_mismatched .tsv"
)
VOCAB_DOWNLOAD = "vocab.txt of https://huggingface.co/bert-base-uncased; or set datasets.multinli.vocab"


@register_dataset("multinli", options=OPTIONS, forget_groups=[[2, 1]])
def build(options: dict, data_dir):
    """MultiNLI: entailment label (y) vs negation in sentence 2 (a), group-DRO splits, forget neutral+negation."""
    import pandas as pd
    import torch

    source, max_length = options["source"], options["max_length"]
    if source not in SOURCES:
        raise GrmuError(f"datasets.multinli.source '{source}' is unknown; valid: {', '.join(SOURCES)}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
        raise GrmuError(f"datasets.multinli.max_length must be an integer >= 8 (the paper: 128), got {max_length!r}")
    data_dir = Path(data_dir)
    root = need_dir(data_dir / FOLDER, "MultiNLI folder", DOWNLOAD)
    meta_path = root / "metadata_random.csv"
    df = read_csv(meta_path, COLUMNS, DOWNLOAD)
    for col, valid in (("gold_label", (0, 1, 2)), ("sentence2_has_negation", (0, 1)), ("split", (0, 1, 2))):
        check_values(df[col].unique(), valid, col, meta_path)
    if source == "auto":
        source = "features" if (root / "bert_features").is_dir() else "text"
    if source == "features":
        tokens, labels, where, vocab_size = read_features(root / "bert_features", max_length)
    else:
        vocab = Path(options["vocab"]) if options["vocab"] else data_dir / "bert-base-uncased" / "vocab.txt"
        tokens, labels, where, vocab_size = read_text(root / "MNLI", vocab, max_length)
    if len(labels) != len(df):
        raise GrmuError(
            f"{where} hold {len(labels)} sentence pairs but {meta_path} has {len(df)} rows; "
            "they must be the same pairs in the same order"
        )
    gold = df["gold_label"].to_numpy(np.int64)
    bad = np.flatnonzero(labels != gold)
    if len(bad):
        i = int(bad[0])
        raise GrmuError(
            f"pair {i} has label {LABELS[labels[i]]} in {where} but gold_label {gold[i]} in {meta_path}; "
            "the files do not belong together"
        )
    dtype = torch.int16 if vocab_size <= np.iinfo(np.int16).max + 1 else torch.int32
    inputs = torch.from_numpy(tokens).to(dtype)
    table = pd.DataFrame(
        {
            "index": np.arange(len(df)),
            "split": df["split"].map(SPLIT_NAMES).to_numpy(),
            "y": gold,
            "a": df["sentence2_has_negation"].to_numpy(np.int64),
        }
    )
    info = {
        "n_classes": 3,
        "n_attrs": 2,
        "classes": list(LABELS),
        "attrs": ["no negation", "negation"],
        "input": "tokens",
        "vocab_size": vocab_size,
        "max_length": max_length,
        "source": source,
    }
    return table, inputs, info


# ----------------------------------------------------------------------------- cached features


class InputFeatures:
    """Stands in for pytorch-transformers' ``utils_glue.InputFeatures`` when unpickling."""


class _Unpickler(pickle.Unpickler):
    """Builds ``InputFeatures`` (from any module) and plain data, nothing else: no other class or
    function, and no tensor storage (the features hold lists of ints)."""

    ALLOWED = {
        ("copyreg", "_reconstructor"),
        ("copy_reg", "_reconstructor"),
        ("builtins", "object"),
        ("__builtin__", "object"),
    }

    def find_class(self, module, name):
        if name == "InputFeatures":
            return InputFeatures
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("unexpected tensor data")


# torch.save's legacy format starts with this pickled number, then the protocol and system info
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def load_feature_file(path: Path) -> list:
    """The list of ``InputFeatures`` in one cached file, written by ``torch.save`` in its zip or
    legacy format. Read with ``_Unpickler`` only (never ``torch.load``, which would run a
    TorchScript archive's code), so the file cannot run code."""
    import zipfile

    need_file(path, path.name, DOWNLOAD)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                pickles = [n for n in names if n.rsplit("/", 1)[-1] == "data.pkl"]
                if len(pickles) != 1 or any("/code/" in n or n.endswith("constants.pkl") for n in names):
                    raise pickle.UnpicklingError("not a torch.save archive of plain data")
                with z.open(pickles[0]) as f:
                    feats = _Unpickler(f, encoding="utf-8").load()
        else:
            with open(path, "rb") as f:
                if _Unpickler(f, encoding="utf-8").load() != LEGACY_MAGIC:
                    raise pickle.UnpicklingError("not a torch.save file")
                for _ in range(2):  # protocol version, system info
                    _Unpickler(f, encoding="utf-8").load()
                feats = _Unpickler(f, encoding="utf-8").load()
    except Exception as e:  # pickle and zipfile raise many types for a damaged or foreign file
        raise GrmuError.wrap(f"cannot read {path}", e) from e
    if not isinstance(feats, list) or not all(isinstance(f, InputFeatures) for f in feats):
        raise GrmuError(f"{path} is not a list of pytorch-transformers InputFeatures")
    return feats


def read_features(folder: Path, max_length: int):
    """``(N x 3 x L token array, labels, where)`` from the three cached files, in their order."""
    need_dir(folder, "MultiNLI bert_features folder", DOWNLOAD)
    parts, labels = [], []
    for name in FEATURE_FILES:
        path = folder / name
        feats = load_feature_file(path)
        arr = np.zeros((len(feats), 3, max_length), dtype=np.int32)
        lab = np.zeros(len(feats), dtype=np.int64)
        for i, f in enumerate(feats):
            try:
                row, lab[i] = (f.input_ids, f.input_mask, f.segment_ids), f.label_id
            except AttributeError as e:
                raise GrmuError(
                    f"{path}: feature {i} lacks {e.name}; expected input_ids, input_mask, segment_ids, label_id"
                ) from e
            if not len(row[0]) == len(row[1]) == len(row[2]) == max_length:
                raise GrmuError(
                    f"{path}: feature {i} has {len(row[0])} tokens; datasets.multinli.max_length is "
                    f"{max_length} (the cached files: 128)"
                )
            try:
                arr[i] = row
            except (TypeError, ValueError, OverflowError) as e:
                raise GrmuError(f"{path}: feature {i} holds non-integer tokens ({e})") from e
        del feats
        where = f"{path}: a feature has"
        if arr.size and (arr[:, 0].min() < 0 or arr[:, 0].max() >= BERT_BASE_VOCAB):
            raise GrmuError(f"{where} a token id outside [0, {BERT_BASE_VOCAB}); not bert-base-uncased features")
        if arr.size and not np.isin(arr[:, 1:], (0, 1)).all():
            raise GrmuError(f"{where} an input_mask or segment_ids value other than 0/1")
        if not np.isin(lab, (0, 1, 2)).all():
            raise GrmuError(f"{where} label_id {sorted(set(lab) - {0, 1, 2})[0]}; valid: 0, 1, 2 (GLUE order)")
        parts.append(arr)
        labels.append(lab)
    return np.concatenate(parts), np.concatenate(labels), f"{folder}/{{{','.join(FEATURE_FILES)}}}", BERT_BASE_VOCAB


# ----------------------------------------------------------------------------- raw text


def read_tsv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """``sentence1``, ``sentence2`` and the GLUE label index of each row of a GLUE MNLI file
    (read row by row, keeping only those three columns)."""
    need_file(path, path.name, TEXT_DOWNLOAD)
    label_of = {name: i for i, name in enumerate(LABELS)}
    s1, s2, labels = [], [], []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(rows, None)
            missing = [c for c in ("sentence1", "sentence2", "gold_label") if c not in (header or [])]
            if missing:
                raise GrmuError(
                    f"{path} lacks column(s) {', '.join(missing)}; expected sentence1, sentence2, "
                    f"gold_label (found: {', '.join(header or [])})"
                )
            c1, c2 = header.index("sentence1"), header.index("sentence2")
            for n, row in enumerate(rows, start=2):
                if len(row) < len(header) or row[-1] not in label_of:
                    got = repr(row[-1]) if len(row) >= len(header) else f"{len(row)} fields"
                    raise GrmuError(
                        f"{path} line {n}: expected {len(header)} tab-separated fields ending in a "
                        f"gold_label ({', '.join(LABELS)}), got {got}"
                    )
                s1.append(row[c1])
                s2.append(row[c2])
                labels.append(label_of[row[-1]])
    except (UnicodeDecodeError, csv.Error) as e:
        raise GrmuError.wrap(f"cannot read {path}", e) from e
    return s1, s2, np.asarray(labels, dtype=np.int64)


def bert_tokenizer(vocab: Path):
    """``(tokenizer, size)``: the ``transformers`` fast BERT tokenizer (lower-casing, accent
    stripping, WordPiece) of a ``vocab.txt``, checked to be a BERT vocabulary, and the size of
    the vocabulary as BERT's embedding table counts it: the file's lines."""
    need_file(vocab, "BERT vocabulary", VOCAB_DOWNLOAD)
    lines = vocab.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    missing = [t for t in SPECIAL if t not in lines]
    if missing:
        raise GrmuError(f"{vocab} is not a BERT vocabulary: it lacks {', '.join(missing)}")
    try:
        from transformers import BertTokenizerFast
    except ImportError as e:
        raise GrmuError.wrap("MultiNLI from text needs transformers: pip install 'grmu[text]'", e) from e
    # positional: the vocab argument of transformers 4 and 5
    return BertTokenizerFast(str(vocab), do_lower_case=True), len(lines)


# Where the fast tokenizer's normaliser differs from the Python BERT tokenizer that made the
# cached features: it lower-cases letter by letter (Python's str.lower makes a word-final capital
# sigma a final sigma, ς), and it does not split off the CJK Extension E ideographs U+2B820-U+2B91F
# as words of their own. Done here first, the tokens are the same.
CJK_EXT_E = re.compile("([\U0002b820-\U0002b91f])")


def glue_text(text: str) -> str:
    return CJK_EXT_E.sub(r" \1 ", text.lower())


def encode_pair(a: list[int], b: list[int] | None, max_length: int, cls: int, sep: int) -> np.ndarray:
    """One GLUE sentence-pair row ``[input_ids, input_mask, segment_ids]`` (3 x ``max_length``)
    from the WordPiece ids of the two sentences, as pytorch-transformers' GLUE code built the
    cached features: ``[CLS] a [SEP] b [SEP]``, truncating the longer sentence one token at a time
    (the second on ties) to fit; segment ids 0 for ``[CLS] a [SEP]``, 1 for ``b [SEP]``; padding 0.
    ``b`` None (an empty second sentence) makes ``[CLS] a [SEP]``; a second sentence without
    tokens still truncates for three special tokens but adds none. (The fast tokenizer's own
    ``longest_first`` gives the odd token to the second sentence instead.)"""
    a, b = list(a), None if b is None else list(b)
    if b is None:
        del a[max_length - 2 :]
    while b is not None and len(a) + len(b) > max_length - 3:
        (a if len(a) > len(b) else b).pop()
    b = b or []
    ids = [cls, *a, sep] + ([*b, sep] if b else [])
    row = np.zeros((3, max_length), dtype=np.int64)
    row[0, : len(ids)] = ids
    row[1, : len(ids)] = 1
    row[2, len(a) + 2 : len(ids)] = 1
    return row


def encode_pairs(tok, s1: list[str], s2: list[str], max_length: int) -> np.ndarray:
    """The ``N x 3 x max_length`` rows of sentence pairs (``encode_pair``), tokenised in batch."""
    from tqdm.auto import tqdm

    if not s1:
        return np.zeros((0, 3, max_length), dtype=np.int32)
    ids_a = tok([glue_text(t) for t in s1], add_special_tokens=False)["input_ids"]
    ids_b = tok([glue_text(t) for t in s2], add_special_tokens=False)["input_ids"]
    cls, sep = tok.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    tokens = np.zeros((len(s1), 3, max_length), dtype=np.int32)
    for i in tqdm(
        range(len(s1)),
        desc="encoding MultiNLI pairs",
        unit="pair",
        file=sys.stderr,
        disable=len(s1) < 10000,
        mininterval=2,
    ):
        tokens[i] = encode_pair(ids_a[i], ids_b[i] if s2[i] else None, max_length, cls, sep)
    return tokens


def read_text(folder: Path, vocab: Path, max_length: int):
    need_dir(folder, "MultiNLI text folder (for datasets.multinli.source text)", TEXT_DOWNLOAD)
    tok, vocab_size = bert_tokenizer(vocab)
    s1, s2, labels = [], [], []
    for name in TEXT_FILES:
        a, b, y = read_tsv(folder / name)
        s1 += a
        s2 += b
        labels.append(y)
    tokens = encode_pairs(tok, s1, s2, max_length)
    return tokens, np.concatenate(labels), f"{folder}/{{{','.join(TEXT_FILES)}}}", vocab_size
