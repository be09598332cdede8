"""Inference: from a trained model to text.

- ``search``: greedy and beam search over any model with ``encode``/``decode_step`` (``Decodable``);
- ``decoding``: decode settings, batching by length, subword ids ↔ text around the searches;
- ``quantize``: dynamic int8 weights for CPU decoding;
- ``ensemble``: several checkpoints decoded as one model (averaged probabilities);
- ``translator``: ``Translator``, the public facade that loads a run directory and translates.
- ``stream``: ``translate_stream``, a stream of lines (``translate``'s stdin) to output lines, batch by batch.

Nothing is imported here, so that training can decode (``search``, ``decoding``) without
loading the facade.
"""
