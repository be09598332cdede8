"""Loop-invariant hoisting for plugin cells: compute the input-only part of a
cell's step for the whole sequence at once.

A plugin cell is written one time step at a time. Most of a step's work that
depends on x_t only — typically the input projection W_x x_t, perhaps a layer
norm — does not need the recurrence, so it can run as one large matrix product
over all B·T positions instead of T small ones. This module traces
``cell.forward`` with ``torch.fx``, splits its graph into the x-only part
(hoisted) and the rest (the per-step recurrence), and checks numerically that
the split computes the same function before it is ever used. Any cell that
cannot be traced or split safely (data-dependent control flow, batch-mixing
ops on x, non-tensor values) silently keeps the plain step loop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn

from seq2seq_rnn.cells.fast import deferred_weight_grads, rewrite_linears
from seq2seq_rnn.cells.loop import masked_steps

log = logging.getLogger(__name__)


class HoistedCell(nn.Module):
    """``pre`` maps x (N, I) to the hoisted values (N, ·) ...; ``step`` maps
    (hoisted values at t ..., *state) to the cell's (h, state) output."""

    def __init__(self, pre: fx.GraphModule, step: fx.GraphModule, n_hoisted: int) -> None:
        super().__init__()
        self.pre, self.step, self.n_hoisted = pre, step, n_hoisted

    def precompute(self, x: Tensor) -> list[Tensor]:
        """x (B, T, I) → hoisted values, each (B, T, ·)."""
        b, t = x.shape[:2]
        flat = self.pre(x.reshape(b * t, *x.shape[2:]))
        return [v.reshape(b, t, *v.shape[1:]) for v in flat]


COMPUTE = ("call_function", "call_method", "call_module")


def _split(gm: fx.GraphModule) -> tuple[fx.Graph, fx.Graph, int] | None:
    """Split a traced step into (pre: x → hoisted values, step: hoisted, *state → output)."""
    nodes = list(gm.graph.nodes)
    x_node, *state_nodes = (n for n in nodes if n.op == "placeholder")
    x_only: set[fx.Node] = set()  # computed from x and parameters alone
    for node in nodes:
        inputs = node.all_input_nodes
        if (
            node.op in COMPUTE
            and any(a is x_node or a in x_only for a in inputs)
            and all(a is x_node or a in x_only or a.op == "get_attr" for a in inputs)
        ):
            x_only.add(node)
    if not x_only:
        return None
    # What the per-step part reads of the x-only world: hoisted values (x itself if used directly).
    hoisted = [n for n in [x_node, *x_only] if any(u not in x_only for u in n.users)]
    hoisted.sort(key=nodes.index)
    pre = fx.Graph()
    env: dict[fx.Node, fx.Node] = {x_node: pre.placeholder("x")}
    for node in nodes:
        if node.op == "get_attr" or node in x_only:
            env[node] = pre.node_copy(node, lambda n: env[n])
    pre.output(tuple(env[n] for n in hoisted))
    step = fx.Graph()
    senv = {n: step.placeholder(f"hoisted_{i}") for i, n in enumerate(hoisted)}
    senv.update({n: step.placeholder(f"state_{i}") for i, n in enumerate(state_nodes)})
    for node in nodes:
        if node.op != "placeholder" and node not in x_only:
            senv[node] = step.node_copy(node, lambda n: senv[n])
    return pre, step, len(hoisted)


def hoist(cell: nn.Module, n_state: int) -> HoistedCell | None:
    """Trace and split ``cell``; None when the cell must keep the plain loop."""
    try:
        traced = fx.symbolic_trace(cell, concrete_args={"state": tuple(fx.PH for _ in range(n_state))})
        rewrite_linears(traced)  # oneDNN products (fast.py); checked by agrees() like the split
        parts = _split(traced)
    except Exception as exc:  # untraceable code is normal for plugins: keep the plain loop
        log.debug("cell %s not hoisted: %s", type(cell).__name__, exc)
        return None
    if parts is None:
        return None
    pre, step, n = parts
    return HoistedCell(fx.GraphModule(cell, pre), fx.GraphModule(cell, step), n)


def agrees(cell: nn.Module, hoisted: HoistedCell, input_size: int) -> bool:
    """Does the split compute what ``cell.forward`` computes (B=3, T=4), values and gradients?

    Checked in the cell's own precision whatever the caller's mode (no_grad, autocast),
    so a first call under ``torch.no_grad`` or bf16 autocast decides the same way."""
    try:
        with exact_mode():
            with torch.no_grad():
                if not _values_agree(cell, hoisted, input_size):
                    return False
            return gradients_agree(cell, lambda x, s: hoisted_loop(hoisted, x, s, None), input_size)
    except Exception as exc:
        log.debug("cell %s not hoisted: gradient check failed: %s", type(cell).__name__, exc)
        return False


@contextlib.contextmanager
def exact_mode() -> Iterator[None]:
    """Gradients on, inference mode and autocast off (CPU and CUDA)."""
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast("cpu", enabled=False):
        if torch.cuda.is_available():
            with torch.autocast("cuda", enabled=False):
                yield
        else:
            yield


def gradients_agree(cell: nn.Module, fast: Any, input_size: int) -> bool:
    """Gradients (input, every parameter) of ``fast(x, state) -> (outputs, state)`` equal
    the plain step loop's over a short random sequence (B=3, T=4), to fp32 tolerance."""
    param = next(cell.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(3, 4, input_size, generator=gen).to(device=device, dtype=dtype)
    state = tuple(
        torch.randn(s.shape, generator=gen).to(device=device, dtype=dtype) for s in cell.initial_state(3, device, dtype)
    )
    params = [p for p in cell.parameters() if p.requires_grad]
    grads = []
    for run in (fast, lambda x, s: masked_steps(cell, [(x_t,) for x_t in x.unbind(1)], s, None)):
        xi = x.clone().requires_grad_(True)
        out, final = run(xi, state)
        loss = (out * out).sum() + sum((f * f).sum() for f in final)
        grads.append(torch.autograd.grad(loss, [xi, *params], allow_unused=True))
    for a, b in zip(*grads, strict=True):
        if (a is None) != (b is None):
            return False
        if a is not None and not torch.allclose(a, b, rtol=1e-3, atol=1e-4 * (1 + float(b.abs().max()))):
            return False
    return True


def _probe(cell: nn.Module, seed: int) -> tuple[torch.device, torch.dtype, torch.Generator]:
    """The device and dtype of ``cell``'s weights and a seeded CPU generator, for the numeric checks."""
    param = next(cell.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return device, dtype, torch.Generator(device="cpu").manual_seed(seed)


def _random_state(
    cell: nn.Module, gen: torch.Generator, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, ...]:
    """A random state of ``cell``'s shape for a batch of 3."""
    return tuple(
        torch.randn(s.shape, generator=gen).to(device=device, dtype=dtype) for s in cell.initial_state(3, device, dtype)
    )


def _values_agree(cell: nn.Module, hoisted: HoistedCell, input_size: int) -> bool:
    device, dtype, gen = _probe(cell, 0)
    x = torch.randn(3, 4, input_size, generator=gen).to(device=device, dtype=dtype)
    state = _random_state(cell, gen, device, dtype)
    try:
        pre = hoisted.precompute(x)
        if any(not isinstance(v, Tensor) or v.shape[:2] != (3, 4) for v in pre):
            return False
        ref_state, got_state = state, state
        for t in range(4):
            ref_h, ref_state = cell(x[:, t], ref_state)
            got_h, got_state = _unpack(hoisted.step(*[v[:, t] for v in pre], *got_state))
            if not torch.allclose(ref_h, got_h, rtol=1e-4, atol=1e-5):
                return False
        return all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(ref_state, got_state, strict=True))
    except Exception:
        return False


def _unpack(out: Any) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The step graph returns the cell's (h, state) flattened: [h, *state]."""
    return out[0], tuple(out[1:])


def hoisted_loop(
    plan: HoistedCell, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Like ``step_loop``, with the x-only work done once for all time steps."""
    if lengths is not None and x.size(1) and int(lengths.max()) > 0:
        return _packed_loop(plan, x, state, lengths)
    steps = list(zip(*(v.unbind(1) for v in plan.precompute(x)), strict=True))  # T × (B, ·) tuples
    with deferred_weight_grads():  # recurrent weight gradients: one product over all T steps
        return masked_steps(lambda *args: _unpack(plan.step(*args[:-1], *args[-1])), steps, state, lengths)


def _packed_loop(
    plan: HoistedCell, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """What a packed sequence does for the fused kernels: sentences sorted longest first,
    step t computes only the n_t rows still running (no work on padding), and a row's
    state leaves the loop after its last token. Equal to the masked loop, row by row."""
    b, t_max = x.shape[:2]
    order = torch.argsort(lengths.to(x.device), descending=True, stable=True)  # (B,)
    running = (lengths.cpu().unsqueeze(0) > torch.arange(t_max).unsqueeze(1)).sum(1).tolist()  # n_t per step
    pre = [v.index_select(0, order).unbind(1) for v in plan.precompute(x)]  # T × (B, ·) each, sorted
    # unbind, then slice rows: slicing (B, T, ·) per step would cost T full-size zero tensors in backward
    state = tuple(s.index_select(0, order) for s in state)
    done: list[tuple[Tensor, ...]] = []  # final states of rows that stopped, last rows first
    outputs: list[Tensor] = []
    rows = b
    with deferred_weight_grads():
        for t, n in enumerate(running):
            if n < rows:
                done.append(tuple(s[n:rows] for s in state))
                state, rows = tuple(s[:n] for s in state), n
            if n == 0:
                break
            h, state = _unpack(plan.step(*[v[t] if n == b else v[t][:n] for v in pre], *state))
            outputs.append(h if n == b else torch.cat([h, h.new_zeros(b - n, *h.shape[1:])]))
    done.append(state)
    final = tuple(torch.cat(parts) for parts in zip(*reversed(done), strict=True))
    inverse = torch.argsort(order)
    out = torch.stack(outputs, dim=1)  # (B, T', H), T' ≤ T (T' = the longest length)
    if out.size(1) < t_max:
        out = torch.cat([out, out.new_zeros(b, t_max - out.size(1), *out.shape[2:])], dim=1)
    return out.index_select(0, inverse), tuple(f.index_select(0, inverse) for f in final)


def step_plan(cell: nn.Module, n_state: int) -> fx.GraphModule | None:
    """``cell.forward`` traced with its linear products on oneDNN (``fast.py``), for
    callers that run one step at a time (the step-by-step decoder, beam search);
    None when nothing was rewritten, the cell cannot be traced, or the rewrite
    does not compute the same values and gradients."""
    try:
        traced = fx.symbolic_trace(cell, concrete_args={"state": tuple(fx.PH for _ in range(n_state))})
        if not rewrite_linears(traced):
            log.debug("cell %s: no linear product to run on oneDNN, step path unchanged", type(cell).__name__)
            return None
    except Exception as exc:
        log.debug("cell %s: step path not traced: %s", type(cell).__name__, exc)
        return None

    def step(x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        h, new_state = traced(x, state)
        return h, tuple(new_state)

    try:
        with exact_mode():
            with torch.no_grad():
                ok = _steps_agree(cell, step, cell.input_size)
            ok = ok and gradients_agree(
                cell, lambda x, s: masked_steps(step, [(x_t,) for x_t in x.unbind(1)], s, None), cell.input_size
            )
    except Exception as exc:
        log.debug("cell %s: traced step path failed its check: %s", type(cell).__name__, exc)
        return None
    if not ok:
        log.debug("cell %s: traced step path differs from forward(), step path unchanged", type(cell).__name__)
        return None
    return traced


def _steps_agree(cell: nn.Module, step: Any, input_size: int) -> bool:
    device, dtype, gen = _probe(cell, 2)
    state = _random_state(cell, gen, device, dtype)
    ref_state = got_state = state
    for _ in range(3):
        x = torch.randn(3, input_size, generator=gen).to(device=device, dtype=dtype)
        ref_h, ref_state = cell(x, ref_state)
        got_h, got_state = step(x, got_state)
        pairs = [(ref_h, got_h), *zip(ref_state, got_state, strict=True)]
        if not all(a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in pairs):
            return False
    return True
