"""Helpers shared by the tests: the shrunken tiny recipe, a CLI runner in a subprocess,
the example plugin's cell class. Imported as ``tests.helpers`` (pytest puts the
repository root on sys.path, see pyproject.toml); fixtures stay in conftest.py."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny.yaml"
PLUGIN_DIR = ROOT / "plugins" / "seq2seq-rnn-layernorm"

# recipes/tiny.yaml shrunk further so a training run takes seconds on one thread.
SMALL = {
    "train.threads": "1",
    "data.train.limit": "300",
    "data.validation.limit": "20",
    "data.test.limit": "20",
    "tokenizer.vocab_size": "200",
    "model.encoder.embedding_size": "16",
    "model.encoder.hidden_size": "16",
    "model.encoder.layers": "1",
    "model.decoder.embedding_size": "16",
    "model.decoder.hidden_size": "16",
    "model.decoder.layers": "1",
    "train.max_epochs": "100",
    "train.max_steps": "20",
    "train.validate_every": "10",
    "train.log_every": "5",
    "decode.beam_size": "2",
}


def small_overrides(**changes: object) -> list[str]:
    """``--set`` arguments for the small recipe; ``changes`` use ``__`` for dots (train__max_steps=40)."""
    values = dict(SMALL)
    values.update({key.replace("__", "."): str(value) for key, value in changes.items()})
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def run_cli(
    *args: str | Path, stdin: bytes | None = None, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m seq2seq_rnn.cli ARGS`` in a subprocess (stdin bytes in, text out)."""
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq_rnn.cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=env or cli_env(),
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    )


@functools.cache
def load_layernorm_cell() -> Any:
    """The example plugin's cell class, from the source tree (installed or not);
    sys.path is extended only while it is imported."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(PLUGIN_DIR))
        from seq2seq_rnn_layernorm.cell import LayerNormLSTMCell

    return LayerNormLSTMCell


USER_CELL = """
import torch
from torch import nn
from seq2seq_rnn import RecurrentCell, register_cell


@register_cell("{name}")
class UserTanhCell(RecurrentCell):
    # no forward_sequence of its own: the toolkit runs a Python loop over time steps
    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.ih = nn.Linear(input_size, hidden_size)
        self.hh = nn.Linear(hidden_size, hidden_size, bias=False)

    def initial_state(self, batch_size, device, dtype):
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def forward(self, x, state):
        h = torch.tanh(self.ih(x) + self.hh(state[0]))
        return h, (h,)
"""


def user_cell_source(name: str) -> str:
    """A user's module that registers a plain tanh-RNN cell as ``name`` with ``@register_cell``."""
    return USER_CELL.format(name=name)
