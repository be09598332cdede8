"""The registries of every swappable component, declared in one visible place.

Built-ins are listed by import path; nothing here imports torch. Plugins join
through the entry-point groups named below or ``register_*`` calls.
"""

from __future__ import annotations

from typing import Any

from seq2seq_rnn.registry import Registry

CELLS = Registry(
    kind="cell",
    group="seq2seq_rnn.cells",
    builtins={
        "rnn": "seq2seq_rnn.cells.builtin:TanhRNNCell",
        "lstm": "seq2seq_rnn.cells.builtin:LSTMCell",
        "gru": "seq2seq_rnn.cells.builtin:GRUCell",
        # cells whose matrix products depend on the input only: they train in parallel over time
        "mingru": "seq2seq_rnn.cells.parallel:MinGRUCell",
        "minlstm": "seq2seq_rnn.cells.parallel:MinLSTMCell",
        "sru": "seq2seq_rnn.cells.parallel:SRUCell",
        "ssru": "seq2seq_rnn.cells.parallel:SSRUCell",
    },
    validator="seq2seq_rnn.cells.base:validate_cell_class",  # by path: the cell contract lives with torch code
)

# "none" (no attention) is not a component: the decoder's attention is then None.
ATTENTIONS = Registry(
    kind="attention",
    group="seq2seq_rnn.attention",
    builtins={
        "dot": "seq2seq_rnn.nn.attention:DotAttention",
        "general": "seq2seq_rnn.nn.attention:GeneralAttention",
        "bahdanau": "seq2seq_rnn.nn.attention:AdditiveAttention",
    },
)


def register_cell(name: str, cls: Any = None) -> Any:
    """Register a :class:`~seq2seq_rnn.RecurrentCell` subclass as ``name``.

    Usable as a decorator: ``@register_cell("my_lstm")``.
    """
    return CELLS.register(name, cls)


def register_attention(name: str, cls: Any = None) -> Any:
    return ATTENTIONS.register(name, cls)
