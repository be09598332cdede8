"""Translate sentences with a trained run: the public inference API."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from seq2seq_rnn.config import Recipe
from seq2seq_rnn.data.tokenizer import SubwordTokenizer
from seq2seq_rnn.errors import CheckpointError, ConfigError
from seq2seq_rnn.inference.decoding import (
    check_beam,
    decode_ids,
    encode_sources,
    resolve_device,
    translate_corpus,
    with_overrides,
)
from seq2seq_rnn.inference.quantize import apply_quantization
from seq2seq_rnn.inference.search import Hypothesis
from seq2seq_rnn.model import Seq2Seq
from seq2seq_rnn.run.checkpoint import check_fingerprint, fingerprint, load_checkpoint, load_model_state
from seq2seq_rnn.run.directory import RunDir

__all__ = ["Alignment", "Translator", "resolve_device"]


class Alignment(NamedTuple):
    """A translation with the attention its decoder paid to each source subword."""

    source: str
    translation: str
    source_pieces: list[str]  # S subwords (as fed to the encoder, after any cut)
    target_pieces: list[str]  # T subwords, ``</s>`` last when the model emitted it
    weights: torch.Tensor | None  # (T, S)


def _load_member(run_dir: Path, checkpoint: str) -> tuple[Recipe, SubwordTokenizer, Seq2Seq]:
    run = RunDir(run_dir)
    recipe = run.load_recipe()
    tokenizer = SubwordTokenizer.load(run.tokenizer)
    model = Seq2Seq.from_config(recipe.model, tokenizer.source_vocab_size, tokenizer.target_vocab_size)
    path = run.checkpoint(checkpoint)
    payload = load_checkpoint(path)
    expected = fingerprint(tokenizer.files, recipe.model)
    check_fingerprint(payload, expected, path, run.path, ("tokenizer",))
    load_model_state(model, payload["model"], path)  # another shape says so first, more precisely
    check_fingerprint(payload, expected, path, run.path, ("model",))
    return recipe, tokenizer, model


class Translator:
    """A model, its tokenizer and decoding settings.

    >>> Translator.load("runs/multi30k_de_en_lstm").translate(["Ein Hund läuft."], beam_size=5)
    """

    def __init__(self, recipe: Recipe, tokenizer: SubwordTokenizer, model: Seq2Seq, device: torch.device) -> None:
        self.recipe = recipe
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.max_source_length = recipe.max_source_length

    @classmethod
    def load(
        cls, run_dir: str | Path, checkpoint: str = "best", device: str = "auto", quantize: str = "none"
    ) -> Translator:
        """``quantize='int8'``: dynamic int8 weights on the CPU (:mod:`seq2seq_rnn.inference.quantize`)."""
        recipe, tokenizer, model = _load_member(Path(run_dir), checkpoint)
        dev = resolve_device(device, "--device")
        return cls(recipe, tokenizer, apply_quantization(model.to(dev).eval(), quantize, dev), dev)

    @classmethod
    def load_ensemble(
        cls, members: Sequence[tuple[str | Path, str]], device: str = "auto", quantize: str = "none"
    ) -> Translator:
        """An ensemble of (run directory, checkpoint) pairs sharing one vocabulary;
        decoding settings come from the first run. One member = ``load``."""
        if len(members) == 1:
            return cls.load(members[0][0], members[0][1], device, quantize)
        from seq2seq_rnn.inference.ensemble import Ensemble

        loaded = [_load_member(Path(run), ckpt) for run, ckpt in members]
        recipe, tokenizer, _ = loaded[0]
        for (run, _), (_, other, _) in zip(members[1:], loaded[1:], strict=True):
            if not tokenizer.same_vocabulary(other):
                raise CheckpointError(f"{run} uses another vocabulary than {members[0][0]}; cannot ensemble them")
        dev = resolve_device(device, "--device")
        ensemble = Ensemble([m for _, _, m in loaded]).to(dev).eval()
        return cls(recipe, tokenizer, apply_quantization(ensemble, quantize, dev), dev)

    def translate(
        self,
        sentences: Sequence[str],
        beam_size: int | None = None,
        batch_size: int | None = None,
        length_penalty: float | None = None,
    ) -> list[str]:
        """Detokenized translations, in input order; an empty line gives an empty line."""
        decode = with_overrides(self.recipe.decode, beam_size, batch_size, length_penalty)
        return translate_corpus(self.model, self.tokenizer, sentences, decode, self.device, self.max_source_length)

    def translate_nbest(
        self,
        sentences: Sequence[str],
        beam_size: int | None = None,
        batch_size: int | None = None,
        length_penalty: float | None = None,
        nbest: int = 1,
        attention: bool = False,
    ) -> list[list[Hypothesis]]:
        """Up to ``nbest`` hypotheses per sentence (token ids), best first.

        ``attention=True`` fills each hypothesis's ``attention`` (T, S) for attentional models.
        """
        decode = with_overrides(self.recipe.decode, beam_size, batch_size, length_penalty)
        check_beam(decode.beam_size, self.tokenizer.target_vocab_size)
        ids = self._encode(sentences)
        return decode_ids(self.model, ids, decode, self.device, nbest=nbest, attention=attention)

    @property
    def has_attention(self) -> bool:
        decoder = getattr(self.model, "decoder", None)  # an Ensemble shows its first member's attention
        if decoder is None:
            decoder = self.model.members[0].decoder
        return decoder.attention is not None

    def translate_with_attention(
        self, sentences: Sequence[str], beam_size: int | None = None, batch_size: int | None = None
    ) -> list[Alignment]:
        """Best translation of each sentence with its attention weights (None for an empty line)."""
        if not self.has_attention:
            raise ConfigError(
                f"model.attention.type: '{self.recipe.model.attention.type}' has no attention weights to show; "
                "train with bahdanau, general or dot attention"
            )
        found = self.translate_nbest(sentences, beam_size, batch_size, nbest=1, attention=True)
        out = []
        for sentence, hyps in zip(sentences, found, strict=True):
            if not hyps:
                out.append(Alignment(sentence, "", [], [], None))
                continue
            best = hyps[0]
            target = self.tokenizer.target_pieces(best.tokens)
            if best.attention is not None and best.attention.size(0) > len(best.tokens):
                target.append("</s>")
            pieces = self.tokenizer.source_pieces(sentence.strip())[: self.max_source_length]  # the cut _encode makes
            source = [*pieces, "</s>"]  # batching adds EOS
            text = self.tokenizer.decode_target([best.tokens])[0]
            out.append(Alignment(sentence, text, source, target, best.attention))
        return out

    def _encode(self, sentences: Sequence[str]) -> list[list[int]]:
        return encode_sources(self.tokenizer, sentences, self.max_source_length)
