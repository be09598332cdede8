"""Validation: the teacher-forced loss and the BLEU/chrF of decoded output, on rank 0."""

from __future__ import annotations

import torch
from torch import nn

from seq2seq_rnn.config import Recipe
from seq2seq_rnn.data.batching import sentence_batches
from seq2seq_rnn.inference.decoding import translate_corpus, with_overrides
from seq2seq_rnn.metrics import Scores, score
from seq2seq_rnn.training.setup import Data, to_device
from seq2seq_rnn.training.state import Hooks
from seq2seq_rnn.training.updater import autocast, token_loss


class Validator:
    """Scores ``model`` on ``data``'s validation split."""

    def __init__(self, recipe: Recipe, model: nn.Module, data: Data, device: torch.device, hooks: Hooks) -> None:
        self.recipe, self.model, self.data, self.device, self.hooks = recipe, model, data, device, hooks

    def scores(self, beam_size: int | None = None) -> tuple[float, Scores]:
        """(teacher-forced loss per token, BLEU/chrF of decoded output) on the validation split."""
        cfg, d = self.recipe.train, self.data
        self.model.eval()
        loss, tokens = 0.0, 0
        with torch.no_grad(), autocast(cfg, self.device):
            ids = d.validation_ids
            for index in sentence_batches(ids.src_lengths.tolist(), cfg.validation_batch_size):  # little padding
                batch = to_device(ids.batch(index), self.device)
                logits = self.model(batch.src, batch.src_lengths, batch.tgt_in)
                l_sum, n = token_loss(logits, batch.tgt_out, 0.0)
                loss, tokens = loss + float(l_sum), tokens + int(n)
        decode = with_overrides(self.recipe.decode, beam_size=beam_size or cfg.validation_beam_size)
        hyps = translate_corpus(
            self.model, d.tokenizer, d.validation.sources, decode, self.device, self.recipe.max_source_length
        )
        ev = self.recipe.evaluate
        return loss / max(tokens, 1), score(hyps, d.validation.targets, ev.tokenize, ev.lowercase)

    def shared_scores(self) -> tuple[float, Scores]:
        """:meth:`scores` computed once, on rank 0, and shared with every rank.

        The other ranks wait in the all-reduce (rank 0's values plus their zeros) and so
        take the same best-checkpoint, learning-rate and early-stopping decisions.
        """
        if self.hooks.world_size == 1:
            return self.scores()
        values = [0.0] * 4
        if self.hooks.is_main:
            val_loss, scores = self.scores()
            values = [val_loss, scores.bleu, scores.chrf, scores.n]
        shared = self.hooks.all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=self.device)).cpu()
        if self.hooks.is_main:
            return val_loss, scores
        loss, bleu, chrf, n = shared.tolist()
        return loss, Scores(bleu=bleu, chrf=chrf, bleu_signature="", chrf_signature="", n=int(n))
