"""Counting the texts an encoder truncates: the one count shared by extraction and estimators."""

from __future__ import annotations

from collections.abc import Sequence


def count_truncated(tokenizer, texts: Sequence[str], max_length: int) -> int:
    """How many texts have more than max_length tokens, special tokens included.

    No tokenizer produces more than two tokens per UTF-8 byte (byte-level BPE: one; SentencePiece:
    a word-start marker plus a piece), plus a few special tokens, so shorter texts are not
    tokenised at all. No tokenizer (none available offline): 0."""
    if tokenizer is None:
        return 0
    suspects = [t for t in texts if 2 * len(t.encode("utf-8")) + 4 > max_length]
    if not suspects:
        return 0
    lengths = tokenizer(
        suspects, add_special_tokens=True, return_length=True, truncation=False, verbose=False
    )["length"]
    return sum(int(n) > max_length for n in lengths)
