"""The recurrent-cell contract every built-in and plugin cell follows.

A cell computes one time step: ``forward(x, state) -> (h, state)`` with
x (B, I), h (B, H) and ``state`` a tuple of (B, ·) tensors. Because every cell
has this one state format, stacking, bidirectional encoding and beam search
handle any cell with the same code and never ask which class they hold.

``forward_sequence`` runs a whole padded sequence; the default loops over time
steps (and freezes the state of a sentence once its length is reached), and
built-in cells override it with PyTorch's fused kernels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from seq2seq_rnn.cells.hoist import HoistedCell, agrees, hoist, hoisted_loop, step_plan
from seq2seq_rnn.cells.loop import masked_steps
from seq2seq_rnn.config import CellOptions, accepted_options, validate_cell_options
from seq2seq_rnn.errors import ConfigError, PluginError, PluginExit, describe_exit

__all__ = ["CellOptions", "RecurrentCell", "State", "accepted_options", "validate_cell_options"]

State = tuple[Tensor, ...]


class RecurrentCell(nn.Module):
    """Base class of recurrent cells. Subclasses implement :meth:`initial_state`
    and :meth:`forward`; options come from the recipe's ``cell_options``.

    A cell that sets ``options_model`` to a :class:`~seq2seq_rnn.config.CellOptions`
    subclass has ``model.*.cell_options`` validated against it when the recipe
    is loaded (errors name the dotted path); without one the options are passed
    through to ``__init__`` unchecked, as keyword arguments.
    """

    options_model: ClassVar[type[CellOptions] | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> RecurrentCell:
        # The sizes a cell is constructed with, kept so that a subclass whose __init__ calls
        # ``super().__init__()`` without them (what most PyTorch code does) still gets them.
        # The factory always calls ``cls(input_size, hidden_size, **options)``.
        self = super().__new__(cls)
        given = [kwargs.get(key, args[i] if len(args) > i else None) for i, key in enumerate(_SIZES)]
        object.__setattr__(self, "_given_sizes", tuple(given))
        return self

    def __init__(self, input_size: int | None = None, hidden_size: int | None = None, **options: Any) -> None:
        super().__init__()
        if options:
            raise ConfigError(
                f"{type(self).__name__} accepts no option {sorted(options)}; "
                f"accepted options: {', '.join(accepted_options(type(self))) or 'none'}"
            )
        given = self.__dict__.get("_given_sizes", (None, None))
        input_size = given[0] if input_size is None else input_size
        hidden_size = given[1] if hidden_size is None else hidden_size
        if input_size is None or hidden_size is None:
            raise PluginError(
                f"{type(self).__name__}: the sizes are unknown; in {type(self).__name__}.__init__, "
                "change super().__init__() to super().__init__(input_size, hidden_size), "
                "and construct the cell as cls(input_size, hidden_size, **options)"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("seq2seq_rnn."):
            return
        for method in _PLUGIN_METHODS:  # plugin code: a sys.exit() inside becomes an error that names the cell
            fn = cls.__dict__.get(method)
            if callable(fn) and not getattr(fn, "_reports_exit", False):
                setattr(cls, method, _reporting_exit(fn, method))

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        """The state before the first step: a tuple of (B, ·) tensors."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: x (B, I), state → h (B, H), new state."""
        raise NotImplementedError

    def forward_sequence(self, x: Tensor, state: State, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """Run left to right over x (B, T, I) → outputs (B, T, H), final state.

        With ``lengths`` (B,), outputs past a sentence's length are zero and its
        final state is the state after its last real token.
        """
        plan = self.__dict__.get("_hoisted_plan", False)
        if plan is False and _tracing():
            plan = None  # decided on a later, untraced call
        elif plan is False:  # first call: try once to hoist the input-only work out of the loop
            plan = _plan_for(self, len(state))
            object.__setattr__(self, "_hoisted_plan", plan)  # not a submodule: no duplicate parameters
        if plan is None or not _HOISTING[0]:
            return step_loop(self, x, state, lengths)
        return hoisted_loop(plan, x, state, lengths)

    def forward_outputs(self, x: Tensor, state: State, lengths: Tensor | None = None) -> Tensor:
        """Only the outputs (B, T, H) of :meth:`forward_sequence` (zero past each length), for callers
        that drop the final state (the encoder): a cell may compute them faster than the full result."""
        return self.forward_sequence(x, state, lengths)[0]

    def forward_step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One step as the step-by-step decoder and beam search run it: :meth:`forward`,
        through a traced copy with its linear products on oneDNN where that was
        checked to compute the same (``hoist.step_plan``); cells may override."""
        if not _HOISTING[0] or _tracing():  # exports record the cell's own forward
            return self(x, state)
        plan = self.__dict__.get("_step_plan", False)
        if plan is False:
            plan = step_plan(self, len(state))
            object.__setattr__(self, "_step_plan", plan)
        if plan is None:
            return self(x, state)
        h, new_state = plan(x, state)
        return h, tuple(new_state)

    def reset_parameters_for(self, recurrent: str, forget_bias: float) -> None:
        """Recurrent initialisation hook; the model first sets every weight to
        U(-a, a). The default makes every square block of a ``weight_hh``
        parameter orthogonal; cells may override."""
        if recurrent != "orthogonal":
            return
        for name, param in self.named_parameters():
            if name.endswith("weight_hh") and param.dim() == 2:
                orthogonal_blocks_(param)


_SIZES = ("input_size", "hidden_size")
_PLUGIN_METHODS = ("initial_state", "forward", "forward_sequence", "reset_parameters_for")


def _reporting_exit(fn: Callable[..., Any], method: str) -> Callable[..., Any]:
    """``fn`` with ``SystemExit`` turned into :class:`PluginExit` (``functools.wraps``: torch.fx and
    ``inspect`` still see the plugin's own signature, so hoisting traces it as before)."""

    @functools.wraps(fn)
    def reporting_exit(self: RecurrentCell, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except SystemExit as exc:
            raise PluginExit(
                f"{type(self).__name__}.{method}() raised {describe_exit(exc)}; "
                "a plugin must raise an exception, not exit the process"
            ) from None

    reporting_exit._reports_exit = True  # type: ignore[attr-defined]
    return reporting_exit


_HOISTING = [True]  # a switch for tests and benchmarks


def _tracing() -> bool:
    """Inside TorchScript/ONNX tracing or torch.compile: no plan is built (its checks run autograd)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def set_hoisting(enabled: bool) -> None:
    """Turn loop-invariant hoisting of plugin cells on or off (default on)."""
    _HOISTING[0] = enabled


def _plan_for(cell: RecurrentCell, n_state: int) -> HoistedCell | None:
    plan = hoist(cell, n_state)
    if plan is not None and not agrees(cell, plan, cell.input_size):
        return None
    return plan


def step_loop(cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None) -> tuple[Tensor, State]:
    """The reference sequence path: one :meth:`RecurrentCell.forward` per step."""
    # unbind, not x[:, t]: its backward is one stack instead of T full-size zero tensors
    return masked_steps(cell, [(x_t,) for x_t in x.unbind(1)], state, lengths)


@torch.no_grad()
def orthogonal_blocks_(weight: Tensor) -> None:
    """Orthogonal init of each (H, H) block of a (k·H, H) matrix."""
    rows, cols = weight.shape
    if rows % cols:
        nn.init.orthogonal_(weight)
        return
    for block in weight.split(cols, dim=0):
        nn.init.orthogonal_(block)


def validate_cell_class(name: str, cls: Any, origin: str) -> None:
    """Refuse a registered object that cannot be a cell, naming its origin."""
    if not (isinstance(cls, type) and issubclass(cls, RecurrentCell)):
        raise PluginError(f"cell {name!r} from {origin} is {cls!r}, not a subclass of seq2seq_rnn.RecurrentCell")
    for method in ("initial_state", "forward"):
        if getattr(cls, method) is getattr(RecurrentCell, method):
            raise PluginError(f"cell {name!r} from {origin} does not implement {method}()")


def check_cell_instance(name: str, origin: str, cell: RecurrentCell) -> None:
    """Run one tiny step and check the shapes the contract promises."""
    batch = 2
    try:
        with torch.no_grad():
            param = next(cell.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
            state = cell.initial_state(batch, device, dtype)
            _check_state(state, batch, "initial_state()")
            h, new_state = cell(torch.zeros(batch, cell.input_size, device=device, dtype=dtype), state)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"cell {name!r} from {origin} failed a one-step check: {type(exc).__name__}: {exc}") from exc
    try:
        if not isinstance(h, Tensor) or tuple(h.shape) != (batch, cell.hidden_size):
            got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
            raise ValueError(
                f"forward() must return h of shape (batch, hidden_size)=({batch}, {cell.hidden_size}), got {got}"
            )
        _check_state(new_state, batch, "forward()")
        if [s.shape for s in new_state] != [s.shape for s in state]:
            raise ValueError("forward() returned a state whose shapes differ from initial_state()'s")
    except ValueError as exc:
        raise PluginError(f"cell {name!r} from {origin} breaks the cell contract: {exc}") from None


def _check_state(state: Any, batch: int, where: str) -> None:
    if not isinstance(state, tuple) or not state or not all(isinstance(s, Tensor) for s in state):
        raise ValueError(f"{where} must return a non-empty tuple of tensors, got {type(state).__name__}")
    for s in state:
        if s.dim() < 1 or s.size(0) != batch:
            raise ValueError(
                f"{where} returned a state tensor of shape {tuple(s.shape)}; the first dim must be batch={batch}"
            )
