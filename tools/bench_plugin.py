"""Plugin cells against the fused built-in LSTM (issue 23), called by ``tools/bench.py --only cells``.

Three comparisons, each interleaved (built-in, plugin, built-in, …) so that a
shared machine's load falls on both alike; figures are the minimum and median
of the rounds, ratios are of the medians:

* one layer forward+backward, B=64 T=30 I=H=``--cell-hidden``, fp32 and bf16 autocast:
  the plain plugin LSTM and the layer-norm plugin, each "before" (hoisting only,
  linear products on ``aten::mm``) and "after" (``seq2seq_rnn/cells/fast.py``), and
  the plain LSTM with oneDNN products but per-step weight gradients;
* training steps of the recipe's model with the plain plugin LSTM in the encoder
  and the decoder against the built-in (same recipe, same synthetic batch);
* beam-5 decoding of ``--plugin-sentences`` synthetic sentences with the built-in's
  weights copied into the plugin cells, so both must find the same hypotheses.

Standalone: ``python tools/bench_plugin.py [--threads 1] [--parts kernel,train,beam]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seq2seq_rnn.cells import RecurrentCell, register_cell  # noqa: E402
from seq2seq_rnn.cells.base import State, set_hoisting  # noqa: E402
from seq2seq_rnn.cells.fast import set_deferred, set_onednn  # noqa: E402


class PlainLSTMCell(RecurrentCell):
    """An LSTM as a plugin author writes it: one step, plain PyTorch, no tricks."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.x2g = nn.Linear(input_size, 4 * hidden_size)
        self.h2g = nn.Linear(hidden_size, 4 * hidden_size, bias=False)

    def initial_state(self, batch_size: int, device: Any, dtype: torch.dtype) -> State:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        i, f, g, o = (self.x2g(x) + self.h2g(state[0])).chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    @torch.no_grad()
    def copy_from(self, builtin: nn.Module) -> None:
        """Take a built-in LSTM cell's weights (same gate order i, f, g, o): same function."""
        rnn = builtin.rnn
        self.x2g.weight.copy_(rnn.weight_ih_l0)
        self.x2g.bias.copy_(rnn.bias_ih_l0 + rnn.bias_hh_l0)
        self.h2g.weight.copy_(rnn.weight_hh_l0)


def _register() -> None:
    from seq2seq_rnn.components import CELLS

    if "bench_plain_lstm" not in CELLS.names():
        register_cell("bench_plain_lstm", PlainLSTMCell)


def _mode(fast: bool, deferred: bool = True) -> None:
    set_hoisting(True)
    set_onednn(fast)
    set_deferred(deferred)


def _rounds(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    for fn in fns.values():  # warm-up: plans, caches, oneDNN primitives
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def _summarise(times: dict[str, list[float]], base: str, out: dict[str, Any], prefix: str) -> None:
    med = {n: statistics.median(v) for n, v in times.items()}
    for name, values in times.items():
        out[f"{prefix}{name}_seconds"] = med[name]
        out[f"{prefix}{name}_min_seconds"] = min(values)
        if name != base:
            out[f"{prefix}{name}_over_{base}"] = med[name] / med[base]


def bench_kernel(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "plugins" / "seq2seq-rnn-layernorm"))
    from seq2seq_rnn_layernorm.cell import LayerNormLSTMCell

    from seq2seq_rnn.cells.builtin import LSTMCell

    b, t, h = 64, 30, args.cell_hidden
    torch.manual_seed(0)
    x = torch.randn(b, t, h, requires_grad=True)
    lengths = torch.full((b,), t)
    cells = {"builtin": LSTMCell(h, h), "plain": PlainLSTMCell(h, h), "layernorm": LayerNormLSTMCell(h, h)}
    out: dict[str, Any] = {"kernel_shape": f"B={b} T={t} I=H={h}, forward+backward of one layer"}
    for precision in ("fp32", "bf16"):

        def run(name: str, fast: bool, precision: str = precision, deferred: bool = True) -> Callable[[], None]:
            cell = cells[name]
            state = cell.initial_state(b, "cpu", torch.float32)

            def go() -> None:
                _mode(fast, deferred)
                with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                    y, _ = cell.forward_sequence(x, state, lengths)
                y.float().sum().backward()

            return go

        fns = {
            "builtin": run("builtin", True),
            "plain_before": run("plain", False),
            "plain_onednn_not_deferred": run("plain", True, deferred=False),
            "plain_after": run("plain", True),
            "layernorm_before": run("layernorm", False),
            "layernorm_after": run("layernorm", True),
        }
        _summarise(_rounds(fns, args.plugin_rounds), "builtin", out, f"kernel_{precision}_")
    _mode(True)
    return out


def _model(recipe: Any, cell: str, vocab: int) -> Any:
    from seq2seq_rnn.model import Seq2Seq

    enc = recipe.model.encoder.model_copy(update={"cell": cell})
    dec = recipe.model.decoder.model_copy(update={"cell": cell})
    cfg = recipe.model.model_copy(update={"encoder": enc, "decoder": dec})
    torch.manual_seed(0)
    return Seq2Seq.from_config(cfg, vocab, vocab)


def bench_train(args: argparse.Namespace) -> dict[str, Any]:
    from bench import _synthetic_batch

    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.training import token_loss

    _register()
    recipe = load_recipe(args.recipe)
    vocab = recipe.tokenizer.vocab_size
    batch = _synthetic_batch(recipe.train.batch_tokens, vocab, torch.device("cpu"))
    out: dict[str, Any] = {"train_target_tokens": batch.ntokens, "train_recipe": Path(args.recipe).name}
    for precision in ("fp32", "bf16"):
        fns = {}
        for name, cell, fast in (("builtin", "lstm", True), ("plain_before", "bench_plain_lstm", False)) + (
            ("plain_after", "bench_plain_lstm", True),
        ):
            model = _model(recipe, cell, vocab)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)

            def step(model: Any = model, opt: Any = opt, fast: bool = fast, precision: str = precision) -> None:
                _mode(fast)
                with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
                loss, n = token_loss(logits.float(), batch.tgt_out, 0.1)
                (loss / n).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            fns[name] = step
        times = _rounds(fns, max(3, args.plugin_rounds // 2))
        _summarise(times, "builtin", out, f"train_{precision}_")
        for name in fns:
            out[f"train_{precision}_{name}_tokens_per_sec"] = batch.ntokens / out[f"train_{precision}_{name}_seconds"]
    _mode(True)
    return out


def bench_beam(args: argparse.Namespace) -> dict[str, Any]:
    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.data.batching import collate
    from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID
    from seq2seq_rnn.inference.search import beam_search, max_lengths

    _register()
    recipe = load_recipe(args.recipe)
    vocab = recipe.tokenizer.vocab_size
    builtin = _model(recipe, "lstm", vocab).eval()
    plugin = _model(recipe, "bench_plain_lstm", vocab).eval()
    state = builtin.state_dict()
    plugin.load_state_dict({k: v for k, v in state.items() if ".cells." not in k and "_cells." not in k}, strict=False)
    pairs = [
        (builtin.encoder.forward_cells, plugin.encoder.forward_cells),
        (builtin.decoder.cells, plugin.decoder.cells),
    ]
    if builtin.encoder.backward_cells is not None:
        pairs.append((builtin.encoder.backward_cells, plugin.encoder.backward_cells))
    for bcells, pcells in pairs:
        for bc, pc in zip(bcells, pcells, strict=True):
            pc.copy_from(bc)
    g = torch.Generator().manual_seed(1)
    n = args.plugin_sentences
    lengths = (torch.randn(n, generator=g) * 4 + 13).clamp(4, 30).long().tolist()
    src = [torch.randint(4, vocab, (ln,), generator=g).tolist() for ln in lengths]
    batches = [collate(src[i : i + 64], None) for i in range(0, n, 64)]
    d = recipe.decode
    found: dict[str, list[list[int]]] = {}

    def run(name: str, model: Any, fast: bool) -> Callable[[], None]:
        def go() -> None:
            _mode(fast)
            hyps = []
            with torch.inference_mode():
                for batch in batches:
                    caps = max_lengths(batch.src_lengths, d.max_length_ratio, d.max_length_offset)
                    res = beam_search(
                        model,
                        batch.src,
                        batch.src_lengths,
                        caps=caps,
                        bos=BOS_ID,
                        eos=EOS_ID,
                        beam_size=5,
                        alpha=d.length_penalty,
                    )
                    hyps.extend(r[0].tokens for r in res)
            found[name] = hyps

        return go

    fns = {"builtin": run("builtin", builtin, True), "plain_before": run("plain_before", plugin, False)}
    fns["plain_after"] = run("plain_after", plugin, True)
    out: dict[str, Any] = {"beam5_sentences": n, "beam5_src_tokens": sum(lengths)}
    _summarise(_rounds(fns, 3), "builtin", out, "beam5_")
    for name in ("plain_before", "plain_after"):
        out[f"beam5_{name}_identical_to_builtin"] = sum(
            a == b for a, b in zip(found[name], found["builtin"], strict=True)
        )
    _mode(True)
    return out


def bench_compile(args: argparse.Namespace) -> dict[str, Any]:
    """A candidate not kept: ``torch.compile`` of the hoisted step graph instead of the oneDNN path."""
    from seq2seq_rnn.cells.builtin import LSTMCell
    from seq2seq_rnn.cells.hoist import _unpack
    from seq2seq_rnn.cells.loop import masked_steps

    b, t, h = 64, 30, args.cell_hidden
    torch.manual_seed(0)
    x = torch.randn(b, t, h, requires_grad=True)
    builtin, plain = LSTMCell(h, h), PlainLSTMCell(h, h)
    state = plain.initial_state(b, "cpu", torch.float32)
    plain.forward_sequence(x, state)
    plan = plain.__dict__["_hoisted_plan"]
    step = torch.compile(plan.step, dynamic=False)

    def compiled() -> None:
        _mode(False)
        steps = list(zip(*(v.unbind(1) for v in plan.precompute(x)), strict=True))
        y, _ = masked_steps(lambda *a: _unpack(step(*a[:-1], *a[-1])), steps, state, None)
        y.sum().backward()

    start = time.perf_counter()
    compiled()
    out: dict[str, Any] = {"compile_first_call_seconds": time.perf_counter() - start}

    def run(cell: Any, fast: bool) -> Callable[[], None]:
        def go() -> None:
            _mode(fast)
            y, _ = cell.forward_sequence(x, state)
            y.sum().backward()

        return go

    fns = {"builtin": run(builtin, True), "plain_before": run(plain, False), "plain_after": run(plain, True)}
    fns["plain_compiled_step"] = compiled
    _summarise(_rounds(fns, args.plugin_rounds), "builtin", out, "compile_fp32_")
    _mode(True)
    return out


PARTS = {"kernel": bench_kernel, "train": bench_train, "beam": bench_beam, "compile": bench_compile}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin-parts", default="kernel,train,beam", help="cells: " + ", ".join(PARTS) + " (compile: on request)"
    )
    parser.add_argument("--plugin-rounds", type=int, default=7, help="cells: interleaved rounds per comparison")
    parser.add_argument("--plugin-sentences", type=int, default=256, help="cells: sentences for beam-5 decoding")


def run_parts(args: argparse.Namespace) -> dict[str, Any]:
    """What ``bench.py --only cells`` adds: each part in ``args.plugin_parts``."""
    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    for part in args.plugin_parts.split(","):
        start = time.perf_counter()
        out.update(PARTS[part](args))
        print(f"  plugin {part}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "multi30k_de_en_lstm.yaml"))
    parser.add_argument("--cell-hidden", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for key, value in run_parts(args).items():
        print(f"  {key:<52} {value:.4g}" if isinstance(value, float) else f"  {key:<52} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
