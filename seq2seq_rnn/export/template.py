"""Translate stdin to stdout with an exported seq2seq_rnn model (greedy decoding).

Needs only torch (TorchScript export) or onnxruntime + numpy (ONNX export), and
sentencepiece — not seq2seq_rnn. Usage, from anywhere:

    echo "Ein Hund läuft." | python translate.py
    python translate.py --folder EXPORT_DIR < input.txt > output.txt

One sentence per line, in order; an empty line gives an empty line.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import sentencepiece as spm


class TorchScriptModel:
    def __init__(self, folder: Path) -> None:
        import torch

        torch.set_grad_enabled(False)
        self.torch = torch
        self.encoder = torch.jit.load(str(folder / "encoder.pt"), map_location="cpu")
        self.step = torch.jit.load(str(folder / "decoder_step.pt"), map_location="cpu")

    def encode(self, ids: list[int]) -> list:
        return list(self.encoder(self.torch.tensor([ids], dtype=self.torch.long)))

    def decode_step(self, prev: int, memory: list) -> tuple[list[float], list]:
        out = self.step(self.torch.tensor([prev], dtype=self.torch.long), *memory)
        logp = self.torch.log_softmax(out[0].float(), dim=-1)[0]
        return logp, list(out[2:])


class OnnxModel:
    def __init__(self, folder: Path) -> None:
        import numpy as np
        import onnxruntime

        self.np = np
        self.encoder = onnxruntime.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
        self.step = onnxruntime.InferenceSession(str(folder / "decoder_step.onnx"), providers=["CPUExecutionProvider"])
        self.step_inputs = [i.name for i in self.step.get_inputs()]

    def encode(self, ids: list[int]) -> list:
        return self.encoder.run(None, {"src": self.np.array([ids], dtype=self.np.int64)})

    def decode_step(self, prev: int, memory: list) -> tuple[list[float], list]:
        inputs = [self.np.array([prev], dtype=self.np.int64), *memory]
        out = self.step.run(None, dict(zip(self.step_inputs, inputs, strict=True)))
        logits = out[0][0].astype(self.np.float64)
        logp = logits - logits.max()
        logp = logp - self.np.log(self.np.exp(logp).sum())
        return logp, list(out[2:])


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def greedy(model, ids: list[int], cfg: dict) -> list[int]:
    """Argmax decoding of one sentence, as seq2seq_rnn's greedy search does it."""
    src = [*ids, cfg["eos_id"]]  # the encoder reads the source followed by EOS
    outputs = model.encode(src)
    fixed, state = outputs[:3], outputs[3:]  # memory, keys, mask; then the decoder state
    # the cap in float32 arithmetic, exactly as seq2seq_rnn computes it
    cap = int(_f32(_f32(len(src)) * _f32(cfg["max_length_ratio"]))) + cfg["max_length_offset"]
    prev, tokens = cfg["bos_id"], []
    for t in range(cap):
        logp, state = model.decode_step(prev, [*fixed, *state])
        if t + 1 >= cap:  # at the cap only EOS may follow
            break
        prev = int(logp.argmax())
        if prev == cfg["eos_id"]:
            break
        tokens.append(prev)
    return tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(__file__).resolve().parent, help="the export folder")
    args = parser.parse_args()
    cfg = json.loads((args.folder / "config.json").read_text(encoding="utf-8"))
    model = TorchScriptModel(args.folder) if cfg["format"] == "torchscript" else OnnxModel(args.folder)
    source = spm.SentencePieceProcessor(model_file=str(args.folder / cfg["source_spm"]))
    target = spm.SentencePieceProcessor(model_file=str(args.folder / cfg["target_spm"]))
    skip = {cfg["pad_id"], cfg["bos_id"]}
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    for line in stdin:
        ids = source.encode(line.strip(), out_type=int)[: cfg["max_source_length"]]
        text = target.decode([i for i in greedy(model, ids, cfg) if i not in skip]) if ids else ""
        sys.stdout.write(text.replace("\n", " ") + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
