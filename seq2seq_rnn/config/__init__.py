"""Recipes: YAML → frozen, validated configuration objects.

Every default lives on a field of ``schema`` (and ``sweep``, the Ray sections) and nowhere else.
Validation is strict: an unknown key, a wrong type or an unknown component is a
:class:`ConfigError` that names the dotted path, the value and the valid choices, raised
before any work starts. This package imports neither torch nor any optional framework.

- ``base``: ``Section`` and the bounds a real run could use;
- ``schema``: the recipe sections (data, tokenizer, model, train, decode, evaluate) and ``Recipe``;
- ``sweep``: the ``scaling:`` and ``sweep:`` sections (read by ``integrations/ray``);
- ``safe_yaml``: the hardened YAML loader; ``messages``: error messages;
- ``overrides``: ``--set`` overrides and relative paths; ``loading``: ``load_recipe``, ``validate_recipe``.
"""

from seq2seq_rnn.config.base import (
    MAX_BEAM,
    MAX_COUNT,
    MAX_RECURRENT_PARAMETERS,
    MAX_WIDTH,
    MAX_WORKERS,
    Section,
    probability,
)
from seq2seq_rnn.config.cell_options import CellOptions, accepted_options, check_cell_options, validate_cell_options
from seq2seq_rnn.config.loading import (
    load_recipe,
    require_mapping,
    validate_recipe,
)
from seq2seq_rnn.config.messages import (
    ECHO,
    format_validation_error,
    shorten,
)
from seq2seq_rnn.config.overrides import (
    apply_overrides,
    parse_override,
    resolve_paths,
    resolve_plugin,
)
from seq2seq_rnn.config.safe_yaml import (
    MAX_RECIPE_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    parse_yaml,
)
from seq2seq_rnn.config.schema import (
    NO_ATTENTION,
    AttentionConfig,
    DataConfig,
    DecodeConfig,
    DecoderConfig,
    EncoderConfig,
    EvaluateConfig,
    InitConfig,
    ModelConfig,
    OptimizerConfig,
    Recipe,
    SchedulerConfig,
    SplitConfig,
    TokenizerConfig,
    TrainConfig,
    dot_attention_mismatch,
)
from seq2seq_rnn.config.sweep import (
    ScalingConfig,
    SearchDomain,
    SweepConfig,
    SweepSchedulerConfig,
    TrialResources,
)

__all__ = [
    "AttentionConfig",
    "CellOptions",
    "DataConfig",
    "DecodeConfig",
    "DecoderConfig",
    "ECHO",
    "EncoderConfig",
    "EvaluateConfig",
    "InitConfig",
    "MAX_BEAM",
    "MAX_COUNT",
    "MAX_RECIPE_BYTES",
    "MAX_RECURRENT_PARAMETERS",
    "MAX_WIDTH",
    "MAX_WORKERS",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "ModelConfig",
    "NO_ATTENTION",
    "OptimizerConfig",
    "Recipe",
    "ScalingConfig",
    "SchedulerConfig",
    "SearchDomain",
    "Section",
    "SplitConfig",
    "SweepConfig",
    "SweepSchedulerConfig",
    "TokenizerConfig",
    "TrainConfig",
    "TrialResources",
    "accepted_options",
    "apply_overrides",
    "check_cell_options",
    "dot_attention_mismatch",
    "format_validation_error",
    "load_recipe",
    "parse_override",
    "parse_yaml",
    "probability",
    "require_mapping",
    "resolve_paths",
    "resolve_plugin",
    "shorten",
    "validate_cell_options",
    "validate_recipe",
]
