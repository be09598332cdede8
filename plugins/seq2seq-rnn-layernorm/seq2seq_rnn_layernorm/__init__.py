"""A layer-normalised LSTM cell for seq2seq_rnn, found through the
``seq2seq_rnn.cells`` entry-point group as ``layernorm_lstm``."""

from seq2seq_rnn_layernorm.cell import LayerNormLSTMCell

__all__ = ["LayerNormLSTMCell"]
__version__ = "0.1.0"
