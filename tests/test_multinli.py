"""MultiNLI read from tiny fixtures in the group-DRO layout (tests/fixtures_real.py): the cached
BERT features and the raw GLUE text give the same inputs, the GLUE pair encoding and truncation,
BERT from a local folder, the pipeline on a tiny BERT, and clear errors."""

import numpy as np
import pytest
import torch

from grmu import GrmuError
from grmu.prepared import load_prepared
from grmu.data.multinli import bert_tokenizer, encode_pair, encode_pairs, load_feature_file
from grmu.models import build_model, model_for
from grmu.stages.evaluate import run as evaluate
from grmu.stages.forget_set import run as forget_set
from grmu.stages.prepare import run as prepare
from grmu.stages.unlearn import run as unlearn
from tests.conftest import train_reference
from grmu.splits import sample_forget
from tests import fixtures_real as fx
from tests.test_real_datasets import counts, synthetic
from tests.test_stage_errors import assert_one_line_error, run_stage

L = fx.MULTINLI_LENGTH


def nli_params(data_dir, source="auto", **over):
    from tests.conftest import small_params

    p = small_params(
        dataset="multinli",
        data_dir=str(data_dir),
        datasets={"multinli": {"source": source, "max_length": L}},
        model={"arch": "tiny_bert", "width": 16, "pretrained": "none"},
        **over,
    )
    p["train"] = {
        **p["train"],
        "epochs": 1,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "augment": False,
    }
    p["unlearn"] = {**p["unlearn"], "batch_size": 16, "augment": False}
    return p


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    fx.make_multinli(root)
    return root


@pytest.fixture(scope="module")
def prepared(data_dir, tmp_path_factory):
    """source -> prepared folder."""
    out = {}
    for source in ("features", "text"):
        out[source] = tmp_path_factory.mktemp(f"prep_{source}")
        prepare(nli_params(data_dir, source), out[source])
    return out


# --- tables, splits, forget sets -------------------------------------------------------------


def test_groups_and_splits_of_the_metadata(prepared):
    prep = load_prepared(prepared["features"])
    c = fx.MULTINLI_COUNTS
    # g = a + 2y: (contradiction, no neg), (contradiction, neg), (entailment, ...), (neutral, ...)
    for split, code in (("train", 0), ("val", 1), ("test", 2)):
        assert counts(prep, split) == [c[code, y, a] for y in range(3) for a in range(2)]
    assert prep.meta["default_forget_groups"] == [[2, 1]]  # neutral with a negation
    assert prep.meta["classes"] == ["contradiction", "entailment", "neutral"]
    assert prep.inputs.shape == (53, 3, L) and prep.inputs.dtype == torch.int16


def test_cached_features_and_raw_text_give_the_same_inputs(prepared):
    feats, text = load_prepared(prepared["features"]), load_prepared(prepared["text"])
    assert torch.equal(feats.inputs, text.inputs)
    assert (feats.g == text.g).all() and (feats.split == text.split).all()
    assert feats.meta["source"] == "features" and text.meta["source"] == "text"
    row = feats.inputs[0].long()
    n = int(row[1].sum())
    assert row[0, 0] == fx.BERT_VOCAB.index("[CLS]") and row[0, n - 1] == fx.BERT_VOCAB.index("[SEP]")
    assert (row[0, n:] == 0).all() and (row[2, n:] == 0).all() and row[2, n - 1] == 1


def test_auto_reads_the_features_and_falls_back_to_text(data_dir, tmp_path):
    prepare(nli_params(data_dir), tmp_path / "a")
    assert load_prepared(tmp_path / "a").meta["source"] == "features"
    root = tmp_path / "raw"
    fx.make_multinli(root, features=False)
    prepare(nli_params(root), tmp_path / "b")
    assert load_prepared(tmp_path / "b").meta["source"] == "text"


def test_forget_sizes_of_the_real_multinli_train_groups():
    # contradiction 57,498 / 11,158; entailment 67,376 / 1,521; neutral 66,630 / 1,992 (no neg / neg)
    prep = synthetic([57_498, 11_158, 67_376, 1_521, 66_630, 1_992])
    assert [len(sample_forget(prep, [[2, 1]], r, 0)) for r in (0.1, 0.5, 0.9)] == [199, 996, 1_792]


def test_forget_set_of_the_default_group(prepared, tmp_path):
    out = forget_set(nli_params("unused"), prepared["text"], 0.5, 0, tmp_path / "f.json")
    assert out == {"size": 3, "pool": 6}


# --- the tokenizer ---------------------------------------------------------------------------

PAIRS = [
    ("The cat sat on the mat.", "The dog's not running!"),
    ("UNWANTED, Café costs $5 中文", "a\tdog\u00a0don't\x00 cats xyz\u0301"),
    ("Ünïcödé   ,,, runnings", "a"),
    ("cat " * 3, ""),  # no second sentence: [CLS] a [SEP]
]


def vocab_file(tmp_path, extra=()):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(fx.BERT_VOCAB + list(extra)) + "\n")
    return path


def encode(tok, a, b, length):
    ids = tok([a, b], add_special_tokens=False)["input_ids"]
    cls, sep = tok.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    return encode_pair(ids[0], ids[1] if b else None, length, cls, sep).tolist()


@pytest.mark.parametrize("a,b", PAIRS)
def test_pairs_that_fit_are_encoded_as_the_bert_tokenizer_encodes_them(tmp_path, a, b):
    from transformers import BertTokenizer

    vocab = vocab_file(tmp_path, ["un", "##want", "##ed", "$", "5", "中"])
    want = BertTokenizer(str(vocab), do_lower_case=True)(a, b or None, max_length=32, padding="max_length")
    assert encode(bert_tokenizer(vocab)[0], a, b, 32) == [
        want["input_ids"],
        want["attention_mask"],
        want["token_type_ids"],
    ]


def test_words_are_lower_cased_stripped_of_accents_and_split_into_pieces(tmp_path):
    tok, size = bert_tokenizer(vocab_file(tmp_path, ["!"]))
    assert size == len(fx.BERT_VOCAB) + 1
    v = {t: i for i, t in enumerate(fx.BERT_VOCAB)}
    assert tok.tokenize("Don't, CAFÉ!") == ["don", "'", "t", ",", "cafe", "!"]
    assert tok("runnings Cats xyz " + "a" * 101, add_special_tokens=False)["input_ids"] == [
        v["runn"],
        v["##ing"],
        v["##s"],
        v["cat"],
        v["##s"],
        v["[UNK]"],
        v["[UNK]"],
    ]


def test_text_is_normalised_as_the_python_bert_tokenizer_of_the_cached_features_did(tmp_path):
    """Where the fast tokenizer alone differs: a word-final capital sigma (Python's str.lower
    gives a final sigma) and the CJK Extension E ideographs (each a word of its own)."""
    final = "ΟΔΟΣ".lower()
    assert final.endswith("ς")
    tok, _ = bert_tokenizer(vocab_file(tmp_path, [final, "\U0002b820"]))
    v = {t: i for i, t in enumerate(fx.BERT_VOCAB + [final, "\U0002b820"])}
    rows = encode_pairs(tok, ["ΟΔΟΣ", "a\U0002b820a"], ["", "cat"], 8)
    assert rows.dtype == np.int32 and rows.shape == (2, 3, 8)
    assert rows[0, 0].tolist() == [v["[CLS]"], v[final], v["[SEP]"], 0, 0, 0, 0, 0]
    assert rows[1, 0].tolist() == [v["[CLS]"], v["a"], v["\U0002b820"], v["a"], v["[SEP]"], v["cat"], v["[SEP]"], 0]
    assert encode_pairs(tok, [], [], 8).shape == (0, 3, 8)  # no pairs: the caller names the mismatch


def test_the_longer_sentence_loses_tokens_one_at_a_time_as_the_glue_code():
    cls, sep = 101, 102
    # 7 + 7 tokens into 12 - 3 = 9 places: the second sentence loses each tie, so the first keeps
    # the odd token (the fast tokenizer's longest_first would give it to the second)
    ids, mask, seg = encode_pair(list(range(1, 8)), list(range(11, 18)), 12, cls, sep).tolist()
    assert ids == [cls, 1, 2, 3, 4, 5, sep, 11, 12, 13, 14, sep]
    assert mask == [1] * 12 and seg == [0] * 7 + [1] * 5
    ids, _, seg = encode_pair([1] * 9, [2, 3], 10, cls, sep).tolist()  # only the longer one is cut
    assert ids == [cls, 1, 1, 1, 1, 1, sep, 2, 3, sep] and seg == [0] * 7 + [1] * 3
    ids, mask, seg = encode_pair([1, 2, 3, 4, 5, 6], None, 6, cls, sep).tolist()  # single sentence
    assert ids == [cls, 1, 2, 3, 4, sep] and seg == [0] * 6
    ids, mask, seg = encode_pair([1, 2, 3, 4, 5, 6], [], 8, cls, sep).tolist()  # b without tokens
    assert ids == [cls, 1, 2, 3, 4, 5, sep, 0] and mask == [1] * 7 + [0] and seg == [0] * 8


def test_a_vocabulary_without_the_special_tokens_is_refused(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("the\ncat\n[UNK]\n")
    with pytest.raises(GrmuError, match=r"not a BERT vocabulary: it lacks \[PAD\], \[CLS\], \[SEP\]"):
        bert_tokenizer(path)


# --- cached feature files --------------------------------------------------------------------


class _Payload:
    """Pickles as a call of os.system: loading it must not run the command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("legacy", [False, True])
def test_feature_pickles_with_other_objects_are_refused(tmp_path, legacy):
    path = tmp_path / "cached_train_bert-base-uncased_128_mnli"
    marker = tmp_path / "ran"
    torch.save([_Payload(marker)], path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(GrmuError, match="cannot read .*unexpected object (posix|os).system"):
        load_feature_file(path)
    assert not marker.exists()
    torch.save([np.float64(1.0)], path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(GrmuError, match="unexpected object numpy"):
        load_feature_file(path)
    torch.save([torch.zeros(2)], path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(GrmuError, match="cannot read"):
        load_feature_file(path)
    torch.save([[1, 2, 3]], path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(GrmuError, match="is not a list of pytorch-transformers InputFeatures"):
        load_feature_file(path)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_archives_are_refused(tmp_path):
    path = tmp_path / "cached_train_bert-base-uncased_128_mnli"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(GrmuError, match="cannot read .*not a torch.save archive of plain data"):
        load_feature_file(path)


def _break(tmp_path, breaker, **make):
    root = tmp_path / "raw"
    base = fx.make_multinli(root, **make)
    breaker(base)
    return root


@pytest.mark.parametrize(
    "breaker,source,fragments",
    [
        (lambda b: (b / "metadata_random.csv").unlink(), "auto", ["metadata_random.csv not found", "group_DRO"]),
        (
            lambda b: (b / "bert_features/cached_dev_bert-base-uncased_128_mnli-mm").unlink(),
            "features",
            ["cached_dev_bert-base-uncased_128_mnli-mm not found"],
        ),
        (lambda b: (b / "MNLI/dev_matched.tsv").unlink(), "text", ["dev_matched.tsv not found", "GLUE"]),
        (
            lambda b: (b.parent / "bert-base-uncased/vocab.txt").unlink(),
            "text",
            ["BERT vocabulary not found", "bert-base-uncased/vocab.txt"],
        ),
        (
            lambda b: (b / "metadata_random.csv").write_text(
                (b / "metadata_random.csv").read_text().replace("sentence2_has_negation", "negation")
            ),
            "auto",
            ["lacks column(s) sentence2_has_negation"],
        ),
        (
            lambda b: (b / "MNLI/train.tsv").write_text(
                (b / "MNLI/train.tsv").read_text().replace("\tneutral\n", "\t-\n", 1)
            ),
            "text",
            ["train.tsv line", "got '-'"],
        ),
        (
            lambda b: (b / "metadata_random.csv").write_text(
                "\n".join((b / "metadata_random.csv").read_text().splitlines()[:-1]) + "\n"
            ),
            "features",
            ["hold 53 sentence pairs", "has 52 rows"],
        ),
        (
            lambda b: (b / "bert_features/cached_dev_bert-base-uncased_128_mnli").write_bytes(b"\x80\x02garbage"),
            "features",
            ["cannot read", "cached_dev_bert-base-uncased_128_mnli"],
        ),
    ],
)
def test_broken_files_fail_in_one_line(tmp_path, breaker, source, fragments):
    root = _break(tmp_path, breaker)
    with pytest.raises(GrmuError) as err:
        prepare(nli_params(root, source), tmp_path / "prep")
    msg = str(err.value)
    assert "\n" not in msg and all(f in msg for f in fragments), msg
    assert not (tmp_path / "prep").exists()


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("label_id", 3, "label_id 3; valid: 0, 1, 2"),
        ("input_mask", [2] * L, "an input_mask or segment_ids value other than 0/1"),
        ("input_ids", [-1] * L, "a token id outside [0, 30522)"),
        ("input_ids", ["x"] * L, "non-integer tokens"),
    ],
)
def test_feature_values_out_of_range_are_refused(tmp_path, field, value, fragment):
    import re

    from grmu.data.multinli import FEATURE_FILES, read_features

    with fx.glue_input_features() as InputFeatures:
        f = InputFeatures([5] * L, [1] * L, [0] * L, 1)
        setattr(f, field, value)
        (tmp_path / "bert_features").mkdir()
        for name in FEATURE_FILES:
            torch.save([f], tmp_path / "bert_features" / name)
    with pytest.raises(GrmuError, match=re.escape(fragment)):
        read_features(tmp_path / "bert_features", L)


def test_labels_that_disagree_with_the_metadata_are_refused(tmp_path):
    def swap(base):
        lines = (base / "metadata_random.csv").read_text().splitlines()
        i, y, a, s = lines[4].split(",")
        lines[4] = ",".join([i, str((int(y) + 1) % 3), a, s])
        (base / "metadata_random.csv").write_text("\n".join(lines) + "\n")

    root = _break(tmp_path, swap)
    for source in ("features", "text"):
        with pytest.raises(GrmuError, match="pair 3 has label .* but gold_label .*do not belong together"):
            prepare(nli_params(root, source), tmp_path / "prep")


def test_unknown_source_is_refused(data_dir, tmp_path):
    res = run_stage(
        "prepare.py",
        "--out",
        tmp_path / "prep",
        tmp_path=tmp_path,
        params={"dataset": "multinli", "data_dir": str(data_dir), "datasets": {"multinli": {"source": "pickle"}}},
    )
    assert_one_line_error(res, "datasets.multinli.source 'pickle' is unknown", "auto, features, text")


# --- models ----------------------------------------------------------------------------------


def test_tiny_bert_features_and_head(prepared):
    prep = load_prepared(prepared["features"])
    model = model_for({"arch": "tiny_bert", "width": 16, "pretrained": "none"}, prep).eval()
    x = prep.inputs[:5]
    z = model.features(x)
    assert z.shape == (5, 16) and model(x).shape == (5, 3)
    assert torch.allclose(model.head(z), model(x))
    padded = x.clone()
    padded[:, 0][x[:, 1] == 0] = 7  # a token under mask 0 does not change the output
    assert torch.allclose(model(padded), model(x), atol=1e-5)


def test_tiny_bert_training_is_reproducible(prepared, tmp_path):
    p = nli_params("unused")
    runs = [train_reference(p, prepared["features"], 3, tmp_path / f"{k}.pt") for k in range(2)]
    assert runs[0]["history"] == runs[1]["history"]
    assert (tmp_path / "0.pt").read_bytes() == (tmp_path / "1.pt").read_bytes()


def test_bert_from_a_local_folder(prepared, tmp_path):
    from safetensors.torch import load_file

    folder = fx.make_bert_folder(tmp_path / "bert")
    prep = load_prepared(prepared["text"])
    cfg = {"arch": "bert", "width": 16, "pretrained": str(folder)}
    model = model_for(cfg, prep)
    saved = load_file(folder / "model.safetensors")
    mine = model.body.bert.state_dict()
    assert saved and all(torch.equal(mine[k], v) for k, v in saved.items())
    assert model(prep.inputs[:2]).shape == (2, 3)
    skipped = model_for(cfg, prep, load_weights=False)
    assert not torch.equal(
        skipped.body.bert.state_dict()["embeddings.word_embeddings.weight"], saved["embeddings.word_embeddings.weight"]
    )


def test_bert_folder_with_other_weights_is_refused(prepared, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = fx.make_bert_folder(tmp_path / "bert")
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("pooler.")}, folder / "model.safetensors")
    prep = load_prepared(prepared["text"])
    with pytest.raises(GrmuError, match=r"does not hold BERT-base weights: 2 missing, e.g. pooler.dense.bias"):
        model_for({"arch": "bert", "width": 16, "pretrained": str(folder)}, prep)
    (folder / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(GrmuError, match="cannot load BERT from"):
        model_for({"arch": "bert", "width": 16, "pretrained": str(folder)}, prep)


def test_missing_bert_weights_and_wrong_archs_say_what_to_do(prepared, tmp_path):
    prep = load_prepared(prepared["text"])
    with pytest.raises(
        GrmuError,
        match=r"no BERT weights in .*nowhere; expected a Hugging Face bert-base-uncased "
        r"folder: config.json, model.safetensors or pytorch_model.bin",
    ):
        model_for({"arch": "bert", "width": 16, "pretrained": str(tmp_path / "nowhere")}, prep)
    with pytest.raises(
        GrmuError, match="model.arch small_cnn does not take token inputs; valid for this dataset: bert, tiny_bert"
    ):
        model_for({"arch": "small_cnn", "width": 16, "pretrained": "none"}, prep)
    with pytest.raises(GrmuError, match="model.arch tiny_bert does not take image inputs"):
        build_model({"arch": "tiny_bert", "width": 16}, 2, (3, 14, 14))
    with pytest.raises(GrmuError, match="resnet18.a1_in1k"):
        build_model({"arch": "resnet18", "width": 16, "pretrained": str(tmp_path / "r18.pth")}, 2, (3, 32, 32))


# --- the pipeline ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["miu", "scrub"])
def test_pipeline_on_tiny_bert(prepared, tmp_path, method):
    p = nli_params("unused", method=method)
    prep_dir = prepared["text"]
    forget_set(p, prep_dir, 0.5, 0, tmp_path / "f.json")
    info = train_reference(p, prep_dir, 0, tmp_path / "pre.pt")
    assert info["n_train"] == 29
    train_reference(p, prep_dir, 0, tmp_path / "rw.pt", variant="reweight", forget_path=tmp_path / "f.json")
    unlearn(p, prep_dir, tmp_path / "pre.pt", tmp_path / "f.json", 0, tmp_path / "u.pt")
    res = evaluate(p, prep_dir, tmp_path / "u.npz", tmp_path / "f.json", "unlearned", tmp_path / "e.json")
    assert all(0 <= res["metrics"][k] <= 100 for k in ("RA", "UA", "TA", "MIA", "EO", "GA"))


@pytest.mark.slow
def test_dvc_exp_run_on_the_multinli_fixture(tmp_path):
    import json

    from tests._repo import copy_repo, dvc, ran_stages

    root = tmp_path / "raw"
    fx.make_multinli(root, features=False)
    fx.make_weights(root)  # the protocol's BERT folder: a tiny one
    protocol = {"model": {"width": None}, "train": {"epochs": None, "batch_size": None, "warmup_epochs": None}}
    path, run = copy_repo(tmp_path / "repo", {"ratios": [0.5], **protocol})
    res = dvc(
        run,
        "exp",
        "run",
        "-S",
        "dataset=multinli",
        "-S",
        f"data_dir={root}",
        "-S",
        f"datasets.multinli.max_length={L}",
        "-S",
        "method=miu",
    )
    assert {
        "prepare",
        "pretrain@1",
        "retrain@reweight-1",
        "unlearn@1",
        "evaluate@unlearned",
        "aggregate",
    } <= ran_stages(res.stdout)
    meta = json.loads((path / "data/prepared/meta.json").read_text())
    assert meta["dataset"] == "multinli" and meta["input_shape"] == [3, L] and meta["source"] == "text"
    forget = json.loads((path / "data/forget/1/0.5.json").read_text())
    assert forget["groups"] == [[2, 1]] and forget["size"] == 3
    assert 0 < json.loads((path / "metrics/summary.json").read_text())["avg_gap"] <= 100
    info = torch.load(path / "models/pretrain/1.pt", weights_only=True)["info"]  # the paper's BERT protocol
    assert info["model"] == {
        "arch": "bert",
        "width": 16,
        "pretrained": str(root / "bert-base-uncased"),
        "precision": "fp32",
    }
    assert (info["train"]["optimizer"], info["train"]["lr"], info["train"]["epochs"]) == ("adamw", 1e-5, 30)
