"""A layer-normalised LSTM cell for seq2seq_rnn, found through the
``seq2seq_rnn.cells`` entry-point group as ``layernorm_lstm``."""

from seq2seq_rnn_layernorm.cell import LayerNormLSTMCell, LayerNormLSTMOptions

__all__ = ["LayerNormLSTMCell", "LayerNormLSTMOptions"]
__version__ = "0.1.0"
