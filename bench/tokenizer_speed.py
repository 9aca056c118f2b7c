"""How fast is MultiNLI's ``source: text`` encoding, and is it the same as before?

grmu first tokenised MultiNLI with a hand-written WordPiece tokenizer (``src/grmu/data/wordpiece.py``,
removed in the commit after ``a877a7b``); it now uses the ``transformers`` fast BERT tokenizer with
the GLUE code's pair truncation (``grmu.data.multinli.encode_pairs``). This script loads the old
module from git history, encodes the same sentence pairs with both, checks that the two
``N x 3 x L`` token arrays are byte-identical and prints pairs/s of each and the speed-up.

The corpus is the real GLUE MNLI text when ``--data-dir`` holds ``multinli_1.0/MNLI/*.tsv`` and
``bert-base-uncased/vocab.txt``; otherwise a synthetic one of MultiNLI's size (412,349 pairs; a
Zipf vocabulary with accents, punctuation, Greek capitals, a CJK Extension E ideograph and
words missing from the vocabulary, so both tokenizers split words into pieces and truncate
long pairs). Usage:

    python bench/tokenizer_speed.py [--pairs 412349] [--max-length 128] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

from grmu.data.multinli import TEXT_FILES, bert_tokenizer, encode_pairs, read_tsv

ROOT = Path(__file__).resolve().parents[1]
OLD = "a877a7b:src/grmu/data/wordpiece.py"


def old_tokenizer_module():
    source = subprocess.run(["git", "-C", str(ROOT), "show", OLD], check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("wordpiece_a877a7b")
    exec(compile(source, OLD, "exec"), module.__dict__)
    return module


def synthetic_corpus(pairs: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """(sentence1, sentence2, vocabulary tokens): sentences of ~20 and ~10 Zipf-drawn words."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz") + ["é", "ü", "ñ"]
    words = ["".join(rng.choice(letters, size=rng.integers(1, 10))) for _ in range(30_000)]
    words = list(dict.fromkeys(words))
    p = 1.0 / np.arange(1, len(words) + 1)
    p /= p.sum()
    # and the two spots where the fast tokenizer alone would differ (grmu.data.multinli.glue_text)
    marks = np.array([".", ",", "!", "?", "'s", "n't", "(", ")", "$5", "É", " ΟΔΟΣ", "\U0002b820"], dtype=object)

    def sentences(mean_words: int) -> list[str]:
        lengths = rng.poisson(mean_words, size=pairs) + 1
        drawn = rng.choice(len(words), size=int(lengths.sum()), p=p)
        out, start = [], 0
        for n in lengths:
            toks = [words[k] for k in drawn[start : start + n]]
            start += n
            if rng.random() < 0.5:
                toks[rng.integers(len(toks))] += str(rng.choice(marks))
            out.append(" ".join(toks).capitalize())
        return out

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,!?'()$5", "s", "n", "t", "e", "u", "οδος", "\U0002b820"]
    # like BERT's 30k entries for English: the frequent words whole, the rare ones in pieces
    vocab += words[:25_000] + letters + ["##" + c for c in letters] + ["##" + w for w in words[:2_000]]
    return sentences(20), sentences(10), list(dict.fromkeys(vocab))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=412_349)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.data_dir is not None:
            s1, s2 = [], []
            for name in TEXT_FILES:
                a, b, _ = read_tsv(args.data_dir / "multinli_1.0" / "MNLI" / name)
                s1 += a
                s2 += b
            vocab = args.data_dir / "bert-base-uncased" / "vocab.txt"
            what = f"GLUE MNLI text under {args.data_dir}"
        else:
            s1, s2, tokens = synthetic_corpus(args.pairs)
            vocab = Path(tmp) / "vocab.txt"
            vocab.write_text("\n".join(tokens) + "\n", encoding="utf-8")
            what = f"synthetic corpus, {len(tokens):,} vocabulary entries"
        n, length = len(s1), args.max_length
        print(f"{n:,} sentence pairs ({what}), max_length {length}")

        t0 = time.perf_counter()
        new = encode_pairs(bert_tokenizer(vocab)[0], s1, s2, length)
        t_new = time.perf_counter() - t0

        wp = old_tokenizer_module().WordPiece(vocab)
        t0 = time.perf_counter()
        old = np.zeros_like(new)
        for i in range(n):
            old[i] = wp.encode_pair(s1[i], s2[i], length)
        t_old = time.perf_counter() - t0

    same = old.tobytes() == new.tobytes()
    print(f"hand-written WordPiece ({OLD.split(':')[0]}): {t_old:8.1f} s  {n / t_old:10,.0f} pairs/s")
    print(f"transformers fast tokenizer + GLUE pairs:  {t_new:8.1f} s  {n / t_new:10,.0f} pairs/s")
    print(
        f"speed-up {t_old / t_new:.1f}x; token arrays byte-identical: {same}; "
        f"pairs that fill all {length} places: {int((new[:, 1, -1] == 1).sum()):,}"
    )
    if not same:
        rows = np.flatnonzero((old != new).any(axis=(1, 2)))
        sys.exit(f"{len(rows)} pairs differ, the first: {rows[0]} ({s1[rows[0]]!r} / {s2[rows[0]]!r})")


if __name__ == "__main__":
    main()
