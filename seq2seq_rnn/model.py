"""The encoder–decoder model and its construction from a recipe."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq_rnn.cells import RecurrentCell
from seq2seq_rnn.config import InitConfig, ModelConfig
from seq2seq_rnn.nn.decoder import Decoder, Memory
from seq2seq_rnn.nn.encoder import Encoder


class Seq2Seq(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @classmethod
    def from_config(cls, cfg: ModelConfig, source_vocab_size: int, target_vocab_size: int) -> Seq2Seq:
        encoder = Encoder(vocab_size=source_vocab_size, config=cfg.encoder)
        decoder = Decoder(
            vocab_size=target_vocab_size, memory_size=encoder.output_size, config=cfg.decoder, attention=cfg.attention
        )
        model = cls(encoder, decoder)
        model.reset_parameters(cfg.init)
        return model

    @torch.no_grad()
    def reset_parameters(self, init: InitConfig) -> None:
        """U(-a, a) everywhere, then each cell's recurrent init (orthogonal, forget bias)."""
        for param in self.parameters():
            nn.init.uniform_(param, -init.uniform, init.uniform)
        for module in self.modules():
            if isinstance(module, RecurrentCell):
                module.reset_parameters_for(init.recurrent, init.forget_bias)
        for emb in (self.encoder.embed, self.decoder.embed):
            emb.weight[emb.padding_idx].zero_()

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Memory, tuple[Tensor, ...]]:
        """src (B, S) → decoder memory and initial flat decoder state."""
        memory, mask, summary = self.encoder(src, lengths)
        return self.decoder.prepare(memory, mask), self.decoder.initial_state(summary)

    def forward(self, src: Tensor, lengths: Tensor, tgt_in: Tensor, keep: Tensor | None = None) -> Tensor:
        """Teacher-forced logits (B, T, V); only at ``keep``'s True positions (N, V) when given."""
        mem, state = self.encode(src, lengths)
        return self.decoder(tgt_in, state, mem, keep)

    def set_fused(self, fused: bool) -> None:
        """Switch between fused kernels and the step-by-step reference path."""
        self.encoder.fused = fused
        self.decoder.fused = fused

    def decode_step(
        self, prev: Tensor, state: tuple[Tensor, ...], memory: Memory, rows: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
        """prev (N,) → logits (N, V) (only ``rows`` (R,) when given: (R, V)), new state, attention (N, S)."""
        return self.decoder.step(prev, state, memory, rows)


def check_model_config(cfg: ModelConfig) -> None:
    """Build the model once with a toy vocabulary so that bad cell options,
    attention sizes or plugin cells fail before data preparation starts."""
    Seq2Seq.from_config(cfg, 16, 16)
