"""Recipes: YAML → frozen, validated configuration objects.

Every default lives on a field below and nowhere else. Validation is strict:
an unknown key, a wrong type or an unknown component is a :class:`ConfigError`
that names the dotted path, the value and the valid choices, raised before any
work starts. This module imports neither torch nor any optional framework.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
import yaml
import yaml.reader
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from seq2seq_rnn.components import ATTENTIONS, CELLS
from seq2seq_rnn.config.base import (
    MAX_BEAM,
    MAX_COUNT,
    MAX_RECURRENT_PARAMETERS,
    MAX_WIDTH,
    Section,
    probability,
)
from seq2seq_rnn.config.cell_options import accepted_options, validate_cell_options
from seq2seq_rnn.config.sweep import ScalingConfig, SweepConfig
from seq2seq_rnn.registry import BUILTIN

# validation context key: a recipe's plugins are not imported yet, so a component name they
# may register is left unchecked in this first pass (config/loading.py validates again after)
DEFER_UNKNOWN_COMPONENTS = "defer_unknown_components"


def _deferred(info: ValidationInfo, known: bool) -> bool:
    return not known and bool(info.context and info.context.get(DEFER_UNKNOWN_COMPONENTS))


# --------------------------------------------------------------------- data
class SplitConfig(Section):
    """One split of a corpus. ``source``/``target`` for parallel text files,
    ``path`` for TSV/JSONL files, ``split`` for a hub dataset."""

    source: str | None = None
    target: str | None = None
    path: str | None = None
    split: str | None = None
    limit: int | None = Field(default=None, ge=1, le=MAX_COUNT, description="keep the first N pairs")


# What each data.format reads from a split section; every other split key is an error.
SPLIT_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("source", "target"),
    "tsv": ("path",),
    "jsonl": ("path",),
    "parquet": ("path",),
    "hub": ("split",),
}


class DataConfig(Section):
    source_lang: str
    target_lang: str
    format: Literal["text", "tsv", "jsonl", "parquet", "hub"] = Field(
        default="text",
        description="text: parallel plain/gzip files; tsv/jsonl/parquet: one file (parquet: or a folder); "
        "hub: a Hugging Face dataset name or local folder (hub layout or save_to_disk)",
    )
    hub_name: str | None = None
    hub_config: str | None = None
    train: SplitConfig
    validation: SplitConfig
    test: SplitConfig | None = None
    max_length: int = Field(
        default=100, ge=1, le=10_000, description="subword tokens per side; longer pairs are dropped and counted"
    )

    @model_validator(mode="after")
    def _check_splits(self) -> DataConfig:
        need = SPLIT_KEYS[self.format]
        for split_name in ("train", "validation", "test"):
            split = getattr(self, split_name)
            if split is None:
                continue
            for key in need:
                if getattr(split, key) is None:
                    raise ValueError(f"{split_name}.{key} is required when data.format is {self.format!r}")
            if self.format == "text" and split.source is not None and split.source == split.target:
                raise ValueError(
                    f"{split_name}.source and {split_name}.target are the same file ({split.source}); "
                    "give one file per language"
                )
        if self.format == "hub" and not self.hub_name:
            raise ValueError("hub_name is required when data.format is 'hub'")
        if self.source_lang == self.target_lang:
            raise ValueError("source_lang and target_lang must differ")
        return self

    @model_validator(mode="after")
    def _check_unused_keys(self) -> DataConfig:
        need = SPLIT_KEYS[self.format]
        for split_name in ("train", "validation", "test"):
            split = getattr(self, split_name)
            for key in ("source", "target", "path", "split"):
                if split is not None and key not in need and getattr(split, key) is not None:
                    raise ValueError(
                        f"{split_name}.{key} is not used when data.format is {self.format!r} "
                        f"(it reads {' and '.join(need)}); remove it or change data.format"
                    )
        if self.format != "hub" and (self.hub_name or self.hub_config):
            raise ValueError(f"hub_name/hub_config are only used when data.format is 'hub', not {self.format!r}")
        return self


class TokenizerConfig(Section):
    model_type: Literal["bpe", "unigram"] = "bpe"
    vocab_size: int = Field(default=8000, ge=16, le=1_000_000)
    joint: bool = True
    character_coverage: float = Field(default=1.0, gt=0.0, le=1.0)
    sample_sentences: int = Field(
        default=1_000_000,
        ge=1,
        description="train each sentencepiece model on at most this many sentences, a seeded sample of the "
        "training split (a joint model: half as many pairs, both sides)",
    )


# -------------------------------------------------------------------- model
def _check_cell_options(cell: str, options: dict[str, Any]) -> None:
    """Recipe-load check of ``cell_options`` by the cell's options model. A built-in cell
    without options is not imported (recipe validation stays free of torch)."""
    if not options and CELLS.origin(cell) == BUILTIN:
        return
    cell_cls = CELLS.get(cell)
    try:
        validate_cell_options(cell_cls, options)
    except pydantic.ValidationError as exc:
        valid = sorted(accepted_options(cell_cls))
        raise PydanticCustomError(
            "cell_options", "cell '{cell}' rejected its options", {"cell": cell, "errors": exc.errors(), "valid": valid}
        ) from None


class EncoderConfig(Section):
    cell: str = "lstm"
    cell_options: dict[str, Any] = {}
    embedding_size: int = Field(default=256, ge=1, le=MAX_WIDTH)
    hidden_size: int = Field(default=256, ge=1, le=MAX_WIDTH)
    layers: int = Field(default=2, ge=1, le=64)
    bidirectional: bool = True
    residual: bool = True
    dropout: float = probability(0.2)
    embedding_dropout: float = probability(0.1)
    dropout_mode: Literal["standard", "variational"] = Field(
        default="standard",
        description="variational: one dropout mask per sequence, shared by its time steps (Gal & Ghahramani)",
    )

    @field_validator("cell")
    @classmethod
    def _known_cell(cls, name: str, info: ValidationInfo) -> str:
        known = name in CELLS.names()
        if not known and not _deferred(info, known):
            raise ValueError(CELLS.unknown_message(name))
        return name

    @model_validator(mode="after")
    def _typed_cell_options(self, info: ValidationInfo) -> EncoderConfig:
        # after, not a field validator: a default (empty) cell_options is checked too,
        # which also surfaces a name claimed by two plugins
        if not _deferred(info, self.cell in CELLS.names()):
            _check_cell_options(self.cell, self.cell_options)
        return self

    @property
    def output_size(self) -> int:
        """Size of each memory vector: both directions concatenated when bidirectional."""
        return self.hidden_size * (2 if self.bidirectional else 1)


class DecoderConfig(EncoderConfig):
    bidirectional: Literal[False] = False
    input_feeding: bool = True
    tie_embeddings: bool = True
    bridge: bool = Field(default=True, description="initialise the decoder state from the encoder")
    output_dropout: float = probability(0.2)


NO_ATTENTION = "none"


def dot_attention_mismatch(query_size: int, memory_size: int) -> str | None:
    """The one check of dot attention's sizes (used by recipe validation and by DotAttention)."""
    if query_size == memory_size:
        return None
    return (
        f"'dot' needs decoder.hidden_size ({query_size}) to equal the encoder output size ({memory_size} = "
        "encoder.hidden_size, doubled when bidirectional); use 'general' or 'bahdanau'"
    )


class AttentionConfig(Section):
    type: str = Field(default="bahdanau", description="a registered attention, or 'none'")
    hidden_size: int | None = Field(
        default=None, ge=1, le=MAX_WIDTH, description="additive attention size; default: decoder.hidden_size"
    )

    @field_validator("type")
    @classmethod
    def _known_attention(cls, name: str, info: ValidationInfo) -> str:
        known = name == NO_ATTENTION or name in ATTENTIONS.names()
        if not known and not _deferred(info, known):
            raise ValueError(ATTENTIONS.unknown_message(name, also=[NO_ATTENTION]))
        return name


class InitConfig(Section):
    uniform: float = Field(default=0.1, gt=0.0, le=10.0, description="U(-a, a) for non-recurrent weights")
    recurrent: Literal["orthogonal", "uniform"] = "orthogonal"
    forget_bias: float = Field(default=1.0, ge=-100.0, le=100.0)


class ModelConfig(Section):
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    attention: AttentionConfig = Field(default_factory=AttentionConfig)
    init: InitConfig = Field(default_factory=InitConfig)

    @model_validator(mode="after")
    def _check_tying(self) -> ModelConfig:
        dec = self.decoder
        if dec.tie_embeddings and dec.embedding_size != dec.hidden_size:
            raise ValueError(
                "decoder.tie_embeddings needs decoder.embedding_size == decoder.hidden_size "
                f"(got {dec.embedding_size} and {dec.hidden_size})"
            )
        return self

    @model_validator(mode="after")
    def _check_size(self) -> ModelConfig:
        """Sizes each within bounds can still multiply into a model no machine holds: refuse it now
        (an estimate with four gates per cell, vocabulary excluded)."""
        enc, dec = self.encoder, self.decoder
        dirs = 2 if enc.bidirectional else 1
        total = 0
        for layer in range(enc.layers):
            width = enc.embedding_size if layer == 0 else enc.hidden_size * dirs
            total += dirs * 4 * enc.hidden_size * (width + enc.hidden_size)
        memory = enc.hidden_size * dirs
        for layer in range(dec.layers):
            width = dec.embedding_size + dec.hidden_size + memory if layer == 0 else dec.hidden_size
            total += 4 * dec.hidden_size * (width + dec.hidden_size)
        if total > MAX_RECURRENT_PARAMETERS:
            raise ValueError(
                f"the encoder and decoder sizes add up to about {total:.2e} recurrent parameters, more than "
                f"{MAX_RECURRENT_PARAMETERS:.0e}; lower hidden_size, embedding_size or layers"
            )
        return self

    @model_validator(mode="after")
    def _check_attention(self) -> ModelConfig:
        att, enc, dec = self.attention, self.encoder, self.decoder
        if att.type == "dot" and (mismatch := dot_attention_mismatch(dec.hidden_size, enc.output_size)):
            raise ValueError(f"attention.type {mismatch}")
        if att.hidden_size is not None and att.type in ("none", "dot", "general"):
            raise ValueError(
                f"attention.hidden_size is only used by additive attention ('bahdanau'), not {att.type!r}; remove it"
            )
        return self


# ----------------------------------------------------------------- training
class OptimizerConfig(Section):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    betas: list[Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(default=[0.9, 0.999], min_length=2, max_length=2)
    weight_decay: float = Field(default=0.0, ge=0.0, le=10.0)

    @model_validator(mode="after")
    def _check_betas(self) -> OptimizerConfig:
        if self.name == "sgd" and self.betas != type(self).model_fields["betas"].default:  # a saved recipe has them
            raise ValueError("betas are only used by the adam and adamw optimizers, not 'sgd'; remove them")
        return self


class SchedulerConfig(Section):
    """Linear warm-up, then decay on a plateau of validation BLEU."""

    warmup_steps: int = Field(default=0, ge=0, le=MAX_COUNT)
    plateau_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    plateau_patience: int = Field(default=2, ge=0, le=MAX_COUNT)
    min_lr: float = Field(default=1e-5, ge=0.0, le=10.0)


class TrainConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16", "fp16", "auto"] = Field(
        default="none", description="mixed precision; auto = bf16 where the device has fast bf16 (precision.py)"
    )
    threads: int = Field(default=0, ge=0, le=4096, description="torch CPU threads; 0 = torch's default")
    batch_tokens: int = Field(default=4096, ge=1, le=10_000_000, description="target tokens per batch (per worker)")
    max_epochs: int = Field(default=20, ge=1, le=MAX_COUNT)
    max_steps: int = Field(default=0, ge=0, le=MAX_COUNT, description="0 = until max_epochs")
    max_minutes: float = Field(
        default=0.0, ge=0.0, le=10_000_000.0, description="stop after this wall time; 0 = no limit"
    )
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    clip_norm: float = Field(default=1.0, ge=0.0, le=1e6, description="0 = no clipping")
    label_smoothing: float = probability(0.1)
    log_every: int = Field(default=50, ge=1, le=MAX_COUNT)
    validate_every: int = Field(default=0, ge=0, le=MAX_COUNT, description="steps; 0 = at the end of each epoch")
    validation_beam_size: int = Field(default=1, ge=1, le=MAX_BEAM)
    validation_batch_size: int = Field(
        default=64, ge=1, le=1_000_000, description="sentences per batch of the validation loss"
    )
    early_stopping_patience: int = Field(
        default=0, ge=0, le=MAX_COUNT, description="validations without improvement; 0 = off"
    )
    keep_checkpoints: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="also keep the weights of the last N validations (checkpoints/step-*.pt) for `seq2seq-rnn average`",
    )
    max_nonfinite_steps: int = Field(default=10, ge=0, le=MAX_COUNT)
    tensorboard: bool = Field(default=False, description="also log metrics to RUN_DIR/tensorboard; needs tensorboard")

    @model_validator(mode="after")
    def _check_consistency(self) -> TrainConfig:
        if self.scheduler.min_lr > self.optimizer.lr:
            raise ValueError(
                f"scheduler.min_lr ({self.scheduler.min_lr}) is above optimizer.lr ({self.optimizer.lr}): "
                "the rate would start above the one asked for and never decay; lower scheduler.min_lr"
            )
        if self.amp == "fp16" and self.device == "cpu":
            raise ValueError("amp 'fp16' needs a CUDA device (loss scaling); use amp 'bf16' or 'none' on the CPU")
        return self


class DecodeConfig(Section):
    beam_size: int = Field(default=5, ge=1, le=MAX_BEAM)
    length_penalty: float = Field(default=1.0, ge=0.0, le=10.0)
    max_length_ratio: float = Field(default=2.0, gt=0.0, le=100.0)
    max_length_offset: int = Field(default=10, ge=0, le=10_000)
    batch_size: int = Field(default=64, ge=1, le=1_000_000, description="sentences per batch")
    max_source_length: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="subwords of a source sentence kept for translation; default 2 × data.max_length",
    )


class EvaluateConfig(Section):
    split: Literal["validation", "test"] = "test"
    tokenize: Literal["13a", "intl", "none", "char", "zh", "ja-mecab", "ko-mecab", "flores101", "flores200"] = "13a"
    lowercase: bool = False


class Recipe(Section):
    name: str = Field(default="experiment", description="names the default run folder, runs/<name>")
    seed: int = Field(default=1, ge=0, le=2**32 - 1, description="0 … 2**32 - 1")
    plugins: list[str] = Field(
        default=[],
        description="modules whose register_cell() calls add cells: dotted module names, or .py files relative "
        "to the recipe; imported only when allowed with --import or SEQ2SEQ_RNN_ALLOW_PLUGINS",
    )
    data: DataConfig
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    sweep: SweepConfig | None = None

    @property
    def max_source_length(self) -> int:
        """Source subwords kept at translation (longer input is cut, with a warning)."""
        return self.decode.max_source_length or 2 * self.data.max_length

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if not 1 <= len(name) <= 100 or name in (".", "..") or "/" in name or "\\" in name or not name.isprintable():
            raise ValueError(
                "must be 1-100 printable characters without '/' or '\\', and not '.' or '..' "
                "(it names the default run folder runs/<name>)"
            )
        return name

    def to_dict(self) -> dict[str, Any]:
        raw = self.model_dump(mode="json")
        if raw.get("sweep") is None:
            raw.pop("sweep", None)  # run directories' recipe.yaml stay free of an empty sweep
        if not raw.get("plugins"):
            raw.pop("plugins", None)
        return raw

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
