"""Corpus decoding: cut, length-sort, batch, search, restore input order, detokenize.

The one path from a list of sentences to their translations. ``Translator``,
the trainer's validation, ``evaluate``, ensembles and the Ray Data stage all
call it, so they decode identically, and training needs no inference facade.
Sentences are sorted by length into batches (little padding, and a batch's
sentences tend to finish together, so it shrinks less raggedly); results go
back to input order. An empty line gives no hypotheses (an empty translation).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from seq2seq_rnn.config import DecodeConfig
from seq2seq_rnn.data.batching import collate, sentence_batches
from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID, SubwordTokenizer
from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.inference.search import Decodable, Hypothesis, beam_search, greedy_search, max_lengths
from seq2seq_rnn.progress_bar import progress

log = logging.getLogger(__name__)


def resolve_device(name: str, setting: str = "train.device") -> torch.device:
    """``auto``/``cpu``/``cuda`` → a device; ``setting`` names where the choice came from in errors."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting}: 'cuda' was requested but no CUDA device is available")
    return torch.device(name)


def with_overrides(
    decode: DecodeConfig,
    beam_size: int | None = None,
    batch_size: int | None = None,
    length_penalty: float | None = None,
) -> DecodeConfig:
    """The recipe's decoding settings with the given values (None, or 0 for the sizes, = keep the recipe's)."""
    given = {"beam_size": beam_size or None, "batch_size": batch_size or None, "length_penalty": length_penalty}
    update = {key: value for key, value in given.items() if value is not None}
    return decode.model_copy(update=update) if update else decode


def encode_sources(tokenizer: SubwordTokenizer, sentences: Sequence[str], max_source_length: int) -> list[list[int]]:
    """Subword ids of each (stripped) sentence, cut to ``max_source_length`` with one warning for all."""
    ids = tokenizer.encode_source([s.strip() for s in sentences])
    cut = sum(len(seq) > max_source_length for seq in ids)
    if cut:
        log.warning("%d source sentence(s) cut to %d subwords", cut, max_source_length)
    return [seq[:max_source_length] for seq in ids]


# Beam search holds batch × beam rows of vocabulary-wide scores, several copies at once: a large but
# valid beam decodes fewer sentences per batch (at least one) instead of dying in an allocation.
MAX_BEAM_ROWS = 2048


def decode_batches(lengths: Sequence[int], batch_size: int, beam_size: int) -> list[list[int]]:
    """Where decoding batches are decided: indices, longest first, ≤ ``batch_size`` sentences each,
    and batch × beam ≤ ``MAX_BEAM_ROWS`` (memory)."""
    return sentence_batches(lengths, max(1, min(batch_size, MAX_BEAM_ROWS // max(1, beam_size))))


def check_beam(beam_size: int, vocab_size: int, key: str = "beam size") -> None:
    """A beam wider than the target vocabulary could never be filled: refuse it (the one place
    this rule lives; ``key`` names the setting, e.g. ``decode.beam_size``)."""
    if beam_size > vocab_size:
        raise ConfigError(
            f"{key} {beam_size} is larger than the target vocabulary ({vocab_size} subwords), so some beams "
            f"could never be filled; use a beam of at most {vocab_size}"
        )


def decode_ids(
    model: Decodable,
    ids: Sequence[Sequence[int]],
    decode: DecodeConfig,
    device: torch.device,
    *,
    nbest: int = 1,
    attention: bool = False,
) -> list[list[Hypothesis]]:
    """Up to ``nbest`` hypotheses (token ids) per source, best first, in input order.

    ``beam_size`` 1 with ``nbest`` 1 is greedy search; ``attention=True`` fills each
    hypothesis's attention (T, S) for attentional models."""
    results: list[list[Hypothesis]] = [[] for _ in ids]
    todo = [i for i, seq in enumerate(ids) if seq]
    if isinstance(model, torch.nn.Module):
        model.eval()
    chunks = decode_batches([len(ids[i]) for i in todo], decode.batch_size, decode.beam_size)
    for chunk in progress(chunks, len(chunks), "translating", unit="batch"):
        index = [todo[j] for j in chunk]
        batch = collate([ids[i] for i in index], None).to(device)
        caps = max_lengths(batch.src_lengths, decode.max_length_ratio, decode.max_length_offset)
        common = {"caps": caps, "bos": BOS_ID, "eos": EOS_ID, "attention": attention}
        if decode.beam_size == 1 and nbest == 1:
            hyps = [[h] for h in greedy_search(model, batch.src, batch.src_lengths, **common)]
        else:
            hyps = beam_search(
                model,
                batch.src,
                batch.src_lengths,
                beam_size=decode.beam_size,
                alpha=decode.length_penalty,
                nbest=min(nbest, decode.beam_size),
                **common,
            )
        for i, h in zip(index, hyps, strict=True):
            results[i] = h
    return results


def translate_corpus(
    model: Decodable,
    tokenizer: SubwordTokenizer,
    sentences: Sequence[str],
    decode: DecodeConfig,
    device: torch.device,
    max_source_length: int,
) -> list[str]:
    """Detokenized best translations, in input order; an empty line gives an empty line."""
    check_beam(decode.beam_size, tokenizer.target_vocab_size)
    found = decode_ids(model, encode_sources(tokenizer, sentences, max_source_length), decode, device)
    return tokenizer.decode_target([hyps[0].tokens if hyps else [] for hyps in found])
