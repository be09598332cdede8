"""oneDNN linear products for plugin cells, and weight gradients summed once per sequence.

Why: on the CPUs this project runs on, a plugin cell's ``nn.Linear`` / ``F.linear``
goes through ``aten::mm`` (MKL), while the fused built-in LSTM runs its products
through oneDNN, about 2× faster at the recurrent step's shape (B×H · H×4H,
measured: ~90 against ~185 GFLOP/s on one thread). Most of a plugin LSTM's
gap to the built-in was that, not Python. So the traced graphs of a plugin cell
(see ``hoist.py``) have their linear products rewritten to :func:`linear`, which
calls oneDNN directly with a backward of its own:

* forward ``x W^T + b`` and backward ``g W`` through oneDNN, with ``W^T`` made
  contiguous once per sequence (per call outside one);
* inside :func:`deferred_weight_grads` (a whole sequence), the weight gradient
  of the recurrent product is not formed per step: every step's ``(g, x)`` is
  kept and ``Σ_t g_t^T x_t`` is one large product when the backward pass
  reaches the start of the sequence.

Only fp32 CPU tensors outside autocast take this path; anything else (bf16
autocast, float64, CUDA, a machine without oneDNN, TorchScript/ONNX tracing,
``torch.compile``) calls ``F.linear`` unchanged,
so a result never depends on the path beyond fp32 rounding.
"""

from __future__ import annotations

import contextlib
import operator
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

_PW = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
_ENABLED = [_PW is not None and torch.backends.mkldnn.is_available()]
_local = threading.local()
_DEFER_ROWS = 4096  # larger inputs (a hoisted B·T projection) are one product already


def set_onednn(enabled: bool) -> None:
    """Turn the oneDNN rewrite of plugin cells' linear products on or off (tests, benchmarks)."""
    _ENABLED[0] = enabled and _PW is not None and torch.backends.mkldnn.is_available()


def onednn_enabled() -> bool:
    return _ENABLED[0]


_DEFER = [True]


def set_deferred(enabled: bool) -> None:
    """Turn the once-per-sequence weight gradient on or off (benchmarks: what each part gives)."""
    _DEFER[0] = enabled


def _usable(x: Tensor, w: Tensor, b: Tensor | None) -> bool:
    return (
        _ENABLED[0]
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and w.dtype == torch.float32
        and w.dim() == 2
        and (b is None or b.dtype == torch.float32)
        and not torch.is_autocast_enabled("cpu")
        and x.layout == torch.strided
        and not torch.jit.is_tracing()  # exports (TorchScript, ONNX) record portable ops
        and not torch.compiler.is_compiling()
    )


def _mm(a: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """a (N, K) · w (M, K)^T (+ b) → (N, M) through oneDNN."""
    return _PW(a, w, b, "none", [], "")  # type: ignore[misc]


def _t(w: Tensor, cache: dict[int, Tensor] | None) -> Tensor:
    """``w.t().contiguous()`` (detached), made once per sequence's backward pass when
    ``cache`` is its scope's (weights do not change within one backward pass)."""
    if cache is None:
        return w.detach().t().contiguous()
    wt = cache.get(id(w))
    if wt is None:
        wt = cache[id(w)] = w.detach().t().contiguous()
    return wt


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: Tensor, w: Tensor, b: Tensor | None, sink: _Sink | None, source: Tensor, cache: Any
    ) -> Tensor:
        ctx.save_for_backward(x, w)  # w: the parameter or its gathered view (same version counter)
        ctx.has_bias, ctx.sink, ctx.source, ctx.cache = b is not None, sink, source, cache
        return _mm(x, w, b)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        x, _ = ctx.saved_tensors
        g = g.contiguous()
        gx = _mm(g, _t(ctx.source, ctx.cache)) if ctx.needs_input_grad[0] else None
        gw = gb = None
        if ctx.needs_input_grad[1]:
            if ctx.sink is not None:
                ctx.sink.add(g, x)  # summed over the sequence by _Gather.backward
            else:
                gw = _mm(g.t().contiguous(), x.t().contiguous())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb, None, None, None


class _Sink:
    """Per-step (grad_output, input) pairs of one weight within one sequence, by backward pass:
    a pass that does not reach the weight (``autograd.grad`` of the input only) leaves pairs
    that a later pass must not count."""

    def __init__(self) -> None:
        self.pairs: list[tuple[int, Tensor, Tensor]] = []

    def add(self, g: Tensor, x: Tensor) -> None:
        self.pairs.append((_graph_task(), g, x))

    def take(self) -> tuple[list[Tensor], list[Tensor]]:
        task = _graph_task()
        mine = [(g, x) for t, g, x in self.pairs if t == task]
        self.pairs.clear()
        return [g for g, _ in mine], [x for _, x in mine]


def _graph_task() -> int:
    current = getattr(torch._C, "_current_graph_task_id", None)
    return current() if current is not None else -1


class _Gather(torch.autograd.Function):
    """Identity on a weight, applied before a sequence's first step: autograd runs
    its backward after every step's, which is when the summed product is formed."""

    @staticmethod
    def forward(ctx: Any, w: Tensor, sink: _Sink) -> Tensor:
        ctx.sink = sink
        ctx.set_materialize_grads(False)  # the steps send None, not (M, K) zeros
        return w.view_as(w)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: Tensor | None) -> tuple[Tensor | None, None]:
        total = g
        grads, inputs = ctx.sink.take()
        if grads:
            gs, xs = torch.cat(grads), torch.cat(inputs)  # (T·B, M), (T·B, K)
            summed = _mm(gs.t().contiguous(), xs.t().contiguous())
            total = summed if total is None else total + summed
        return total, None


class _Scope:
    """Weights gathered for one sequence: weight id → (gathered weight, sink)."""

    def __init__(self) -> None:
        self.weights: dict[int, tuple[Tensor, Tensor, _Sink]] = {}
        self.transposed: dict[int, Tensor] = {}

    def get(self, w: Tensor) -> tuple[Tensor, _Sink]:
        hit = self.weights.get(id(w))
        if hit is None or hit[0] is not w:
            sink = _Sink()
            hit = (w, _Gather.apply(w, sink), sink)
            self.weights[id(w)] = hit
        return hit[1], hit[2]


@contextlib.contextmanager
def deferred_weight_grads() -> Iterator[None]:
    """Within this block (one sequence's time loop), the weight gradient of every
    :func:`linear` on a 2-D input is summed once over all its calls instead of per call."""
    previous = getattr(_local, "scope", None)
    _local.scope = _Scope() if torch.is_grad_enabled() and _DEFER[0] else None
    try:
        yield
    finally:
        _local.scope = previous


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` through oneDNN where that is safe (fp32 CPU, no autocast), else ``F.linear``."""
    if not _usable(x, weight, bias):
        return F.linear(x, weight, bias)
    shape = x.shape
    flat = x.reshape(-1, shape[-1]) if x.dim() != 2 else x
    if not flat.is_contiguous():
        flat = flat.contiguous()
    needs_grad = flat.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    if not (torch.is_grad_enabled() and needs_grad):
        out = _mm(flat, weight.detach(), None if bias is None else bias.detach())
    else:
        scope = getattr(_local, "scope", None)
        source, sink = weight, None
        if scope is not None and weight.requires_grad and flat.size(0) < _DEFER_ROWS:
            weight, sink = scope.get(weight)
        cache = scope.transposed if scope is not None else None
        out = _Linear.apply(flat, weight, bias, sink, source, cache)
    return out if x.dim() == 2 else out.reshape(*shape[:-1], out.size(-1))


_LINEAR_FUNCTIONS = (F.linear, torch._C._nn.linear)
_MATMULS = (operator.matmul, torch.matmul, torch.mm)


def _transposed_parameter(node: Any) -> fx.Node | None:
    """The get_attr node W when ``node`` is ``W.T`` or ``W.t()``."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_function" and node.target is getattr and node.args[1:] == ("T",):
        source = node.args[0]
    elif node.op == "call_method" and node.target == "t" and len(node.args) == 1:
        source = node.args[0]
    else:
        return None
    return source if isinstance(source, fx.Node) and source.op == "get_attr" else None


def _attr(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def rewrite_linears(gm: fx.GraphModule) -> int:
    """Point every ``nn.Linear`` call, ``F.linear(x, <parameter>, …)`` and
    ``x @ <parameter>.T`` (or ``.t()``, ``torch.matmul``, ``torch.mm``) of a traced
    cell at :func:`linear`; returns how many were rewritten. Other products
    (``x @ W`` with W stored (I, O), ``einsum``, ``bmm``) keep ``aten::mm``."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and type(gm.get_submodule(node.target)) is nn.Linear and not node.kwargs:
            if len(node.args) != 1:
                continue
            with gm.graph.inserting_before(node):
                weight = gm.graph.get_attr(f"{node.target}.weight")
                has_bias = gm.get_submodule(node.target).bias is not None
                bias = gm.graph.get_attr(f"{node.target}.bias") if has_bias else None
                fast = gm.graph.call_function(linear, (node.args[0], weight, bias))
        elif node.op == "call_function" and node.target in _MATMULS and len(node.args) == 2 and not node.kwargs:
            weight = _transposed_parameter(node.args[1])
            if weight is None or getattr(_attr(gm, weight.target), "ndim", 0) != 2:
                continue
            with gm.graph.inserting_before(node):
                fast = gm.graph.call_function(linear, (node.args[0], weight, None))
        elif node.op == "call_function" and node.target in _LINEAR_FUNCTIONS:
            args = list(node.args) + [node.kwargs.get(k) for k in ("weight", "bias")[len(node.args) - 1 :]]
            if len(args) < 2 or not isinstance(args[1], fx.Node) or args[1].op != "get_attr":
                continue
            with gm.graph.inserting_before(node):
                fast = gm.graph.call_function(linear, (args[0], args[1], args[2] if len(args) > 2 else None))
        else:
            continue
        node.replace_all_uses_with(fast)
        gm.graph.erase_node(node)
        count += 1
    if count:
        gm.graph.eliminate_dead_code()  # the W.T nodes left without users
        gm.graph.lint()
        gm.recompile()
    return count
