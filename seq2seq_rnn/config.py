"""Recipes: YAML → frozen, validated configuration objects.

Every default lives on a field below and nowhere else. Validation is strict:
an unknown key, a wrong type or an unknown component is a :class:`ConfigError`
that names the dotted path, the value and the valid choices, raised before any
work starts. This module imports neither torch nor any optional framework.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from seq2seq_rnn.components import ATTENTIONS, CELLS
from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.registry import BUILTIN, did_you_mean, import_modules

# Upper bounds a real run could use; beyond them a value is a typo (or hostile), refused at validation.
MAX_COUNT = 10**9  # steps, epochs, patience, limits
MAX_WIDTH = 16_384  # embedding and hidden sizes
MAX_BEAM = 1024
MAX_WORKERS = 10_000
MAX_RECURRENT_PARAMETERS = 10**9  # what the sizes and layers of a model may add up to


class Section(BaseModel):
    """Base of every recipe section: unknown keys, type coercion, inf and nan are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def probability(default: float) -> Any:
    return Field(default=default, ge=0.0, lt=1.0)


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
class CellOptions(BaseModel):
    """Base of a cell's options model (``RecurrentCell.options_model``): unknown keys
    and type coercion are errors, as everywhere else in a recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def validate_cell_options(cell_cls: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against ``cell_cls.options_model`` when the cell declares one
    (raises pydantic.ValidationError); returned unchanged otherwise (pass-through)."""
    model = getattr(cell_cls, "options_model", None)
    if model is None:
        return dict(options)
    return model.model_validate(options).model_dump()


def _check_cell_options(cell: str, options: dict[str, Any]) -> None:
    """Recipe-load check of ``cell_options`` by the cell's options model. A built-in cell
    without options is not imported (recipe validation stays free of torch)."""
    if not options and CELLS.origin(cell) == BUILTIN:
        return
    cell_cls = CELLS.get(cell)
    try:
        validate_cell_options(cell_cls, options)
    except pydantic.ValidationError as exc:
        valid = sorted(cell_cls.options_model.model_fields)
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
    def _known_cell(cls, name: str) -> str:
        if name not in CELLS.names():
            raise ValueError(CELLS.unknown_message(name))
        return name

    @model_validator(mode="after")
    def _typed_cell_options(self) -> EncoderConfig:
        # after, not a field validator: a default (empty) cell_options is checked too,
        # which also surfaces a name claimed by two plugins
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
    def _known_attention(cls, name: str) -> str:
        if name != NO_ATTENTION and name not in ATTENTIONS.names():
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


# ------------------------------------------------------- scaling and sweeps
class ScalingConfig(Section):
    """Data-parallel training on a Ray cluster (``seq2seq-rnn train --workers``); needs ``seq2seq_rnn[ray]``."""

    workers: int = Field(
        default=1, ge=1, le=MAX_WORKERS, description="data-parallel workers; 1 = a plain single process"
    )
    gpus_per_worker: float = Field(
        default=0.0, ge=0.0, le=64.0, description="0 = CPU workers (gloo); else NCCL on GPUs"
    )
    cpus_per_worker: float = Field(default=1.0, gt=0.0, le=1024.0)
    address: str | None = Field(default=None, description="Ray cluster to join; default: RAY_ADDRESS, else a local one")
    storage_path: str | None = Field(
        default=None, description="Ray checkpoints: a shared folder or s3://… URI for multi-node; default: RUN_DIR/ray"
    )
    max_failures: int = Field(
        default=0, ge=-1, le=MAX_COUNT, description="worker-group restarts from the last checkpoint; -1 = ∞"
    )


class SearchDomain(Section):
    """One swept value: exactly one of the keys below."""

    choice: list[Any] | None = Field(default=None, min_length=1, description="sample one of the values")
    grid: list[Any] | None = Field(default=None, min_length=1, description="every value (× num_samples)")
    uniform: list[float] | None = Field(default=None, min_length=2, max_length=2, description="[low, high]")
    loguniform: list[float] | None = Field(default=None, min_length=2, max_length=2, description="[low, high], > 0")
    randint: list[int] | None = Field(default=None, min_length=2, max_length=2, description="[low, high), integers")

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchDomain:
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(type(self).model_fields)} (got {given or 'none'})")
        bounds = self.uniform or self.loguniform or self.randint
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]}: low must be below high (got {bounds})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform: low must be > 0 (got {self.loguniform})")
        return self


class SweepSchedulerConfig(Section):
    """Trial scheduler; times count validations (``train.validate_every`` steps each)."""

    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(default=1, ge=1, le=MAX_COUNT, description="validations before ASHA may stop a trial")
    reduction_factor: float = Field(default=2.0, gt=1.0, le=100.0)
    max_t: int = Field(default=100, ge=1, le=MAX_COUNT, description="validations; ASHA's last rung")


class TrialResources(Section):
    workers: int = Field(
        default=1, ge=1, le=MAX_WORKERS, description="> 1: each trial is a data-parallel Ray Train run"
    )
    cpus_per_worker: float = Field(default=1.0, gt=0.0, le=1024.0)
    gpus_per_worker: float = Field(default=0.0, ge=0.0, le=64.0)


class SweepConfig(Section):
    """``seq2seq-rnn tune``: a search space over dotted recipe keys.

    A key may name several comma-separated paths that take the same value,
    e.g. ``model.decoder.embedding_size,model.decoder.hidden_size``.
    """

    space: dict[str, SearchDomain] = Field(min_length=1)
    num_samples: int = Field(
        default=1, ge=1, le=1_000_000, description="samples of the space (each grid point this often)"
    )
    metric: Literal["val_bleu", "val_chrf", "val_loss", "best_val_bleu"] = "val_bleu"
    mode: Literal["max", "min"] | None = Field(default=None, description="default: min for val_loss, else max")
    scheduler: SweepSchedulerConfig = Field(default_factory=SweepSchedulerConfig)
    resources: TrialResources = Field(default_factory=TrialResources)
    max_concurrent_trials: int = Field(default=0, ge=0, le=MAX_WORKERS, description="0 = as many as the cluster fits")
    max_failures: int = Field(
        default=0, ge=-1, le=MAX_COUNT, description="retries of a failed trial from its checkpoint"
    )

    @field_validator("space")
    @classmethod
    def _dotted_keys(cls, space: dict[str, SearchDomain]) -> dict[str, SearchDomain]:
        for key in space:
            for path in key.split(","):
                parts = path.strip().split(".")
                if not all(parts):
                    raise ValueError(f"{key!r}: expected dotted recipe keys such as train.optimizer.lr")
                if parts[0] in ("sweep", "scaling"):
                    raise ValueError(f"{key!r}: the sweep cannot vary its own settings (sweep.*, scaling.*)")
        return space

    @property
    def resolved_mode(self) -> str:
        return self.mode or ("min" if self.metric == "val_loss" else "max")


class Recipe(Section):
    name: str = Field(default="experiment", description="names the default run folder, runs/<name>")
    seed: int = Field(default=1, ge=0, le=2**32 - 1, description="0 … 2**32 - 1")
    plugins: list[str] = Field(
        default=[],
        description="modules imported before the recipe is validated (their register_cell() calls add cells): "
        "dotted module names, or .py files relative to the recipe",
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


# ------------------------------------------------------------------ loading
class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2), not a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789."),
)


# A recipe is a few hundred values. YAML aliases can make a 1 KB document expand to 10**9
# values ("billion laughs"): everything downstream (validation, error messages) would walk them.
MAX_RECIPE_BYTES = 200_000
MAX_YAML_NODES = 50_000  # values after alias expansion
MAX_YAML_DEPTH = 64


def parse_yaml(text: str, source: str) -> Any:
    """Safe-load ``text``, refusing documents that are too large, too deep or expand too much."""
    if len(text) > MAX_RECIPE_BYTES:
        raise ConfigError(f"{source}: more than {MAX_RECIPE_BYTES:,} characters; a recipe is a few KB")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {_shorten(str(exc), 500)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Count the values ``root`` stands for with every alias expanded, without expanding them."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int, path: tuple[int, ...]) -> int:
        if id(node) in path:
            raise ConfigError(f"{source}: a YAML alias refers to a value that contains it (a cycle)")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{source}: invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep")
        if id(node) not in sizes:
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [item for pair in node.value for item in pair]
            else:
                children = []
            inner = (*path, id(node))
            total = 1 + sum(size(child, depth + 1, inner) for child in children)
            if total > MAX_YAML_NODES:
                raise ConfigError(
                    f"{source}: the YAML expands to more than {MAX_YAML_NODES:,} values (through aliases "
                    "such as *name); a recipe has a few hundred"
                )
            sizes[id(node)] = total
        return sizes[id(node)]

    size(root, 0, ())


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 25]}… ({len(text):,} characters)"


_ECHO = reprlib.Repr()  # echoes of user input in messages: a few elements, a few dozen characters
_ECHO.maxstring = _ECHO.maxother = _ECHO.maxlong = 60
_ECHO.maxlist = _ECHO.maxdict = _ECHO.maxset = _ECHO.maxtuple = 5
_ECHO.maxlevel = 2


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"model.encoder.cell=gru"`` → (["model", "encoder", "cell"], "gru")."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or any(not p for p in key.strip().split(".")):
        raise ConfigError(f"--set {_ECHO.repr(item)}: expected KEY=VALUE with a dotted KEY, e.g. train.max_steps=200")
    return key.strip().split("."), parse_yaml(raw, f"--set {key}") if raw.strip() else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"--set {_ECHO.repr(item)}: {_shorten(where)} is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


def _section_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the section at ``loc`` (for 'did you mean' hints)."""
    model: Any = Recipe
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        annotation = field.annotation
        if get_origin(annotation) is not None:  # X | None
            annotation = next((a for a in get_args(annotation) if isinstance(a, type)), None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def format_validation_error(exc: pydantic.ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after",))
        path = _shorten(".".join(str(p) for p in loc)) or "<recipe>"
        if err["type"] == "extra_forbidden":
            valid = _section_fields(loc[:-1])
            hint = did_you_mean(str(loc[-1]), valid) if len(str(loc[-1])) <= 80 else ""
            lines.append(f"{path}: unknown key{hint}. Valid keys: {', '.join(valid)}")
            continue
        if err["type"] == "cell_options":  # the cell's own options model: one line per option, dotted
            valid = err["ctx"]["valid"]
            for sub in err["ctx"]["errors"]:
                where = _shorten(".".join(str(p) for p in (*loc, "cell_options", *sub["loc"])))
                if sub["type"] == "extra_forbidden":
                    hint = did_you_mean(str(sub["loc"][-1]), valid) if len(str(sub["loc"][-1])) <= 80 else ""
                    lines.append(
                        f"{where}: unknown option of cell {err['ctx']['cell']!r}{hint}. "
                        f"Valid options: {', '.join(valid) or 'none'}"
                    )
                    continue
                got = f" (got {_ECHO.repr(sub['input'])})" if sub["type"] not in ("missing",) else ""
                lines.append(f"{where}: {_shorten(sub['msg'], 600)}{got}")
            continue
        message = _shorten(err["msg"].removeprefix("Value error, "), 600)  # it may quote the input
        got = f" (got {_ECHO.repr(err['input'])})" if err["type"] not in ("missing", "value_error") else ""
        lines.append(f"{path}: {message}{got}")
    return f"{source}: invalid recipe\n  " + "\n  ".join(lines)


def validate_recipe(raw: Any, source: str = "<recipe>") -> Recipe:
    if raw is None:
        raise ConfigError(f"{source}: the recipe is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    plugins = raw.get("plugins")
    if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):  # else validation says what is wrong
        import_modules(plugins, f"{source}: plugins")
    try:
        return Recipe.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def resolve_plugin(spec: str, base_dir: Path) -> str:
    """A ``.py`` file relative to ``base_dir`` becomes absolute; module names stay."""
    if spec.endswith(".py") and not Path(spec).expanduser().is_absolute():
        return str((base_dir / spec).resolve())
    return spec


def resolve_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Make relative data paths and ``plugins`` files absolute (relative to the recipe's folder)."""
    plugins = raw.get("plugins")
    if isinstance(plugins, list):
        raw["plugins"] = [resolve_plugin(p, base_dir) if isinstance(p, str) else p for p in plugins]
    data = raw.get("data")
    if not isinstance(data, dict):
        return raw
    if data.get("format") == "hub":  # a local dataset folder next to the recipe; else a hub name
        name = data.get("hub_name")
        if isinstance(name, str) and not Path(name).expanduser().is_absolute() and (base_dir / name).exists():
            data["hub_name"] = str((base_dir / name).resolve())
        return raw
    for split in ("train", "validation", "test"):
        spec = data.get(split)
        if not isinstance(spec, dict):
            continue
        for key in ("source", "target", "path"):
            value = spec.get(key)
            if isinstance(value, str) and not Path(value).expanduser().is_absolute():
                spec[key] = str((base_dir / value).resolve())
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file; data paths become absolute."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a recipe file")
    try:
        with path.open(encoding="utf-8") as handle:  # a bounded read: the path may be a device or a FIFO
            text = handle.read(MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the recipe: {exc}") from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raise ConfigError(f"{path}: the recipe is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides or [])
    raw = resolve_paths(raw, path.resolve().parent)
    return validate_recipe(raw, str(path))
