"""Data: parallel corpora, subword tokenization and batching.

``datasets`` is imported on the first :func:`load_split` call and torch when a
batching name is first used, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

from seq2seq_rnn.data.corpus import ParallelCorpus, SplitTable, filter_by_length, load_split, load_split_table
from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, SubwordTokenizer

_BATCHING = ("Batch", "BatchPlan", "TokenBatchSampler", "collate", "sentence_batches")
_TOKENS = ("TokenizedSplit", "tokenize_split")

__all__ = [
    "BOS_ID", "EOS_ID", "PAD_ID", "UNK_ID", "ParallelCorpus", "SplitTable", "SubwordTokenizer", "filter_by_length",
    "load_split", "load_split_table", *_BATCHING, *_TOKENS,
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _BATCHING:
        from seq2seq_rnn.data import batching

        return getattr(batching, name)
    if name in _TOKENS:
        from seq2seq_rnn.data import tokens

        return getattr(tokens, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
