"""BERT's uncased WordPiece tokenizer, written for grmu, and the GLUE sentence-pair encoding.

It turns raw MultiNLI text into the same ``[input_ids, input_mask, segment_ids]`` rows as the
cached ``bert-base-uncased_128_mnli`` features the paper used (fact sheet §1.2), from the
``vocab.txt`` of a BERT folder:

1. basic tokenisation: drop NUL, U+FFFD and control characters, turn whitespace into spaces,
   put spaces around CJK ideographs, lower-case, strip accents (NFD, drop combining marks),
   split on whitespace and on every punctuation character;
2. WordPiece: each word becomes the longest vocabulary prefix, then the longest ``##``-prefixed
   pieces of the rest; a word that cannot be covered, or longer than 100 characters, is ``[UNK]``;
3. pair encoding (pytorch-transformers' GLUE code): ``[CLS] a [SEP] b [SEP]``, truncating the
   longer sentence one token at a time (the second on ties) to fit ``max_length``; segment ids
   0 for ``[CLS] a [SEP]``, 1 for ``b [SEP]``; mask 1 on tokens; padding id 0, mask 0,
   segment 0.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path

from grmu import GrmuError

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
MAX_WORD_CHARS = 100


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True  # BERT counts every non-alphanumeric ASCII symbol ($, ^, `...) as punctuation
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _clean(text: str) -> str:
    out = []
    for ch in text:
        cp = ord(ch)
        if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
            out.append(" ")
        elif cp == 0 or cp == 0xFFFD or unicodedata.category(ch).startswith("C"):
            continue
        elif _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    return "".join(out)


def basic_tokens(text: str) -> list[str]:
    """Step 1: lower-cased, accent-free words and single punctuation marks."""
    words = []
    for word in _clean(text).lower().split():
        word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
        current = []
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
    return words


class WordPiece:
    """The tokenizer of one ``vocab.txt`` (one token per line; its line number is its id)."""

    def __init__(self, vocab_file: str | Path):
        path = Path(vocab_file)
        if not path.is_file():
            raise GrmuError(f"BERT vocabulary not found: expected the file {path} (vocab.txt of a bert-base-uncased folder)")
        tokens = path.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self.size = len(tokens)  # ids run to the last line, even if a token repeats
        self.vocab = {tok: i for i, tok in enumerate(tokens)}
        missing = [t for t in SPECIAL if t not in self.vocab]
        if missing:
            raise GrmuError(f"{path} is not a BERT vocabulary: it lacks {', '.join(missing)}")
        self.unk, self.cls, self.sep = (self.vocab[t] for t in ("[UNK]", "[CLS]", "[SEP]"))
        self._cache: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return self.size

    def word_ids(self, word: str) -> list[int]:
        """Step 2 for one basic token (memoised: MultiNLI repeats its words a lot)."""
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        ids, start = [], 0
        while start < len(word) and len(word) <= MAX_WORD_CHARS:
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:  # no piece fits: the whole word is unknown
                ids = []
                break
            ids.append(self.vocab[piece])
            start = end
        ids = ids or [self.unk]
        self._cache[word] = ids
        return ids

    def ids(self, text: str) -> list[int]:
        return [i for word in basic_tokens(text) for i in self.word_ids(word)]

    def encode_pair(self, text_a: str, text_b: str, max_length: int) -> tuple[list[int], list[int], list[int]]:
        """Step 3: ``(input_ids, input_mask, segment_ids)``, each ``max_length`` long.

        As the GLUE code: an empty ``text_b`` makes a single-sentence row ``[CLS] a [SEP]``;
        a ``text_b`` without tokens still truncates for three special tokens but adds none."""
        a = self.ids(text_a)
        b = self.ids(text_b) if text_b else None
        if b is None:
            del a[max_length - 2 :]
        while b is not None and len(a) + len(b) > max_length - 3:
            (a if len(a) > len(b) else b).pop()
        ids = [self.cls, *a, self.sep]
        segments = [0] * len(ids)
        if b:
            ids += [*b, self.sep]
            segments += [1] * (len(b) + 1)
        pad = max_length - len(ids)
        return ids + [0] * pad, [1] * len(ids) + [0] * pad, segments + [0] * pad
