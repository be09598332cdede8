"""Export of a trained model as a self-contained folder that needs only torch.

- ``exporter``: writes the folder (weights, vocabularies, the inference script);
- ``template``: the inference script itself, copied verbatim (it imports nothing of seq2seq_rnn).
"""
