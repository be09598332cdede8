"""A user module for tests/test_recipes_malformed.py: registers the example plugin's
typed cell under a test name, as a recipe's ``plugins:`` entry would."""

from seq2seq_rnn import register_cell
from seq2seq_rnn.components import CELLS
from tests.helpers import load_layernorm_cell

if "test_malformed_layernorm" not in CELLS.names():
    register_cell("test_malformed_layernorm", load_layernorm_cell())
