"""Export a trained run as a self-contained folder that translates without seq2seq_rnn.

OUTPUT/
  encoder.{pt,onnx}        source ids (1, S) → memory, keys, mask, initial decoder state
  decoder_step.{pt,onnx}   one step: prev (1,), memory, keys, mask, *state → logits, attention, *state
  spm*.model               the sentencepiece model(s)
  config.json              special ids, length caps, the number of state tensors, provenance
  translate.py             greedy decoding with only torch (or onnxruntime) + sentencepiece

The exported encoder handles one sentence at a time (no padding), so it runs
each cell's whole-sequence path without packing; after tracing, the export is
checked against the toolkit on a source of another length and refused if it
differs (e.g. a plugin cell whose sequence path cannot be traced).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from seq2seq_rnn.errors import ConfigError, Seq2SeqError
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.model import Seq2Seq
from seq2seq_rnn.nn.decoder import Memory
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.run.outputs import OutputFolder

FORMATS = ("torchscript", "onnx")
SCRIPT = Path(__file__).with_name("template.py")


class ExportError(Seq2SeqError):
    """The model cannot be exported faithfully."""


class SentenceEncoder(nn.Module):
    """Encoder + decoder preparation for one unpadded sentence: src (1, S) → memory, keys, mask, *state."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor) -> tuple[Tensor, ...]:
        enc = self.model.encoder
        x = enc.stack(enc.embed(src), None)  # (1, S, D); no lengths: nothing packed
        mask = src != enc.padding_idx  # (1, S), all True: no padding
        mem = self.model.decoder.prepare(x, mask)
        state = self.model.decoder.initial_state(x.mean(dim=1))  # summary (1, D)
        return (mem.memory, mem.keys, mem.mask, *state)


class DecoderStep(nn.Module):
    """One decoder step with a flat signature: prev (N,), memory, keys, mask, *state → logits, attention, *state."""

    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, prev: Tensor, memory: Tensor, keys: Tensor, mask: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        logits, new_state, attn = self.model.decode_step(prev, tuple(state), Memory(memory, keys, mask))
        if attn is None:  # no attention: a zero (N, S) map keeps the signature fixed
            attn = torch.zeros(mask.shape, dtype=logits.dtype, device=logits.device)
        return (logits, attn, *new_state)


def _examples(translator: Translator, length: int) -> Tensor:
    vocab = translator.tokenizer.source_vocab_size
    return (torch.arange(length) % max(vocab - 4, 1) + 4).clamp(max=vocab - 1).unsqueeze(0)  # (1, S), no specials


def _check(reference: nn.Module, exported: Any, inputs: tuple[Tensor, ...], what: str) -> None:
    with torch.no_grad():
        want, got = reference(*inputs), exported(*inputs)
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        if w.shape != g.shape or not torch.allclose(w.float(), torch.as_tensor(g).float(), atol=1e-5, rtol=1e-4):
            raise ExportError(
                f"the exported {what} differs from the model on a new input (output {i}); "
                "the model cannot be traced faithfully (a plugin cell with a step-by-step sequence path?)"
            )


def export(
    run_dir: Path, output: Path, fmt: str = "torchscript", checkpoint: str = "best", quantize: str = "none"
) -> Path:
    """Write the export folder for ``run_dir``; returns ``output``.

    Everything is traced and checked in memory first: a model that cannot be exported,
    or a missing onnxruntime, raises before the folder is created. ``quantize='int8'``
    exports the dynamically quantized model (TorchScript only: the ONNX exporter has
    no dynamic int8 RNN; quantize an ONNX export with onnxruntime's own tools).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format {fmt!r}. Valid choices: {', '.join(FORMATS)}")
    if quantize != "none" and fmt != "torchscript":
        raise ConfigError(f"--quantize {quantize} works with --format torchscript only")
    run = RunDir(Path(run_dir))
    inputs = [run.path, run.recipe, run.tokenizer, run.checkpoints]
    OutputFolder(Path(output), "export", inputs, strict=True).check([])  # a user's folder: refused at once
    onnxruntime = _require_onnx() if fmt == "onnx" else None
    translator = Translator.load(run_dir, checkpoint, "cpu", quantize)
    folder = OutputFolder(Path(output), "export", [*inputs, run.checkpoint(checkpoint), *translator.tokenizer.files])
    names = [*files_of(fmt), *(p.name for p in translator.tokenizer.files), "config.json", "translate.py"]
    folder.strict = True
    folder.check(names)
    model = translator.model.eval()
    encoder, step = SentenceEncoder(model).eval(), DecoderStep(model).eval()
    src, other = _examples(translator, 7), _examples(translator, 12)
    try:
        with torch.no_grad():
            enc_out = encoder(src)
            other_inputs = (torch.tensor([BOS_ID]), *encoder(other))
            memory, state = model.encode(other, torch.tensor([other.size(1)]))
        # the one-sentence encoder must compute what the toolkit's (padded, packed) encoder does
        _check(lambda _src: (*memory, *state), encoder, (other,), "one-sentence encoder")
        step_inputs = (torch.tensor([BOS_ID]), *enc_out)
        if fmt == "torchscript":
            files = _export_torchscript(encoder, step, src, other, step_inputs, other_inputs)
        else:
            files = _export_onnx(encoder, step, src, other, step_inputs, other_inputs, onnxruntime)
    except ExportError as exc:
        raise ExportError(f"{run_dir}: {exc}{_plugin_cells_hint(translator)}") from None
    except Exception as exc:  # tracing runs the cells' own code
        detail = (str(exc).strip().splitlines() or [""])[-1]  # TorchScript's last line says what failed
        detail = detail.removeprefix(f"{type(exc).__name__}: ")
        raise ExportError(
            f"{run_dir}: the model cannot be traced for export ({type(exc).__name__}: {detail})"
            f"{_plugin_cells_hint(translator)}"
        ) from exc
    folder.check(names)  # again: the folder may have changed while tracing
    for name, data in files.items():
        folder.write_bytes(name, data)
    for path in translator.tokenizer.files:
        folder.write(path.name, lambda tmp, src=path: shutil.copy2(src, tmp))
    config = _config(translator, fmt, len(enc_out) - 3, run_dir, checkpoint, quantize)
    folder.write_bytes("config.json", (json.dumps(config, indent=2) + "\n").encode("utf-8"))
    folder.write("translate.py", lambda tmp: shutil.copy2(SCRIPT, tmp))
    return Path(output)


def files_of(fmt: str) -> list[str]:
    """The model files an export in ``fmt`` writes."""
    suffix = "pt" if fmt == "torchscript" else "onnx"
    return [f"encoder.{suffix}", f"decoder_step.{suffix}"]


def _require_onnx() -> Any:
    try:
        import onnx  # noqa: F401 - torch.onnx.export needs it
        import onnxruntime
    except ImportError:
        raise ConfigError("--format onnx needs onnx and onnxruntime: pip install 'seq2seq_rnn[export]'") from None
    return onnxruntime


def _plugin_cells_hint(translator: Translator) -> str:
    """Names the plugin cells of a model that failed to export: the usual cause."""
    from seq2seq_rnn.components import CELLS
    from seq2seq_rnn.registry import BUILTIN

    model_cfg = translator.recipe.model
    plugins = [
        f"model.{side}.cell {cfg.cell!r} ({CELLS.origin(cfg.cell)})"
        for side, cfg in (("encoder", model_cfg.encoder), ("decoder", model_cfg.decoder))
        if CELLS.origin(cfg.cell) != BUILTIN
    ]
    if not plugins:
        return ""
    return (
        f". It uses {' and '.join(plugins)}: a cell whose sequence path is a Python loop over time steps traces to "
        "one fixed length. Give the cell a traceable forward_sequence, or translate with `seq2seq-rnn translate`"
    )


def _export_torchscript(
    encoder: nn.Module,
    step: nn.Module,
    src: Tensor,
    other: Tensor,
    step_inputs: tuple[Tensor, ...],
    other_inputs: tuple[Tensor, ...],
) -> dict[str, bytes]:
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch ≥ 2.10
        traced_encoder = torch.jit.trace(encoder, (src,), check_trace=False)
        traced_step = torch.jit.trace(step, step_inputs, check_trace=False)
    _check(encoder, traced_encoder, (other,), "encoder")
    _check(step, traced_step, other_inputs, "decoder step")
    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, module in (("encoder.pt", traced_encoder), ("decoder_step.pt", traced_step)):
            buffer = io.BytesIO()
            torch.jit.save(module, buffer)
            files[name] = buffer.getvalue()
    return files


def _export_onnx(
    encoder: nn.Module,
    step: nn.Module,
    src: Tensor,
    other: Tensor,
    step_inputs: tuple[Tensor, ...],
    other_inputs: tuple[Tensor, ...],
    onnxruntime: Any,
) -> dict[str, bytes]:
    import warnings

    n_state = len(step_inputs) - 4
    state_names = [f"state{i}" for i in range(n_state)]
    enc_buffer, step_buffer = io.BytesIO(), io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript-based exporter handles the fused RNN kernels; it warns that it is legacy,
        # and about batch sizes other than 1, which the export never uses
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            encoder,
            (src,),
            enc_buffer,
            input_names=["src"],
            output_names=["memory", "keys", "mask", *state_names],
            dynamic_axes={"src": {1: "S"}, "memory": {1: "S"}, "keys": {1: "S"}, "mask": {1: "S"}},
            dynamo=False,
        )
        torch.onnx.export(
            step,
            step_inputs,
            step_buffer,
            input_names=["prev", "memory", "keys", "mask", *state_names],
            output_names=["logits", "attention", *[f"new_{n}" for n in state_names]],
            dynamic_axes={"memory": {1: "S"}, "keys": {1: "S"}, "mask": {1: "S"}, "attention": {1: "S"}},
            dynamo=False,
        )
    files = {"encoder.onnx": enc_buffer.getvalue(), "decoder_step.onnx": step_buffer.getvalue()}
    providers = ["CPUExecutionProvider"]
    enc_session = onnxruntime.InferenceSession(files["encoder.onnx"], providers=providers)
    step_session = onnxruntime.InferenceSession(files["decoder_step.onnx"], providers=providers)

    def run_encoder(x: Tensor) -> list[Any]:
        return enc_session.run(None, {"src": x.numpy()})

    def run_step(*inputs: Tensor) -> list[Any]:
        names = [i.name for i in step_session.get_inputs()]
        return step_session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})

    _check(encoder, run_encoder, (other,), "encoder")
    _check(step, run_step, other_inputs, "decoder step")
    return files


def _config(
    translator: Translator, fmt: str, n_state: int, run_dir: Path, checkpoint: str, quantize: str
) -> dict[str, Any]:
    recipe = translator.recipe
    files = [p.name for p in translator.tokenizer.files]
    return {
        "format": fmt,
        "name": recipe.name,
        "source_lang": recipe.data.source_lang,
        "target_lang": recipe.data.target_lang,
        "source_spm": files[0],
        "target_spm": files[-1],
        "pad_id": PAD_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "state_tensors": n_state,
        "max_source_length": translator.max_source_length,
        "max_length_ratio": recipe.decode.max_length_ratio,
        "max_length_offset": recipe.decode.max_length_offset,
        "quantize": quantize,
        "exported_from": {"run_dir": str(run_dir), "checkpoint": checkpoint, "torch": torch.__version__},
    }
