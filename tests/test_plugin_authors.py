"""Plugin authors are told what is wrong (issue 21, class 8).

A cell whose ``__init__`` calls ``super().__init__()`` without the sizes (what most
PyTorch users write) works, because the factory knows the sizes; a cell that cannot
work is told which call to change; a plugin that raises ``SystemExit`` (on import,
while constructing or while running) is reported with the plugin and its origin,
never a silent exit 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from seq2seq_rnn import RecurrentCell
from seq2seq_rnn.cells import CellFactory
from seq2seq_rnn.components import CELLS
from seq2seq_rnn.errors import PluginError
from tests.helpers import TINY, cli_env, run_cli, small_overrides


@pytest.fixture
def registered():
    names = []

    def register(name: str, cls: type) -> type:
        CELLS.register(name, cls)
        names.append(name)
        return cls

    yield register
    for name in names:
        CELLS.unregister(name)


class _Tanh(RecurrentCell):
    def initial_state(self, batch_size, device, dtype):
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def forward(self, x, state):
        h = torch.tanh(self.ih(x) + self.hh(state[0]))
        return h, (h,)


class NoSizes(_Tanh):
    """What most PyTorch users write."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.ih = nn.Linear(input_size, hidden_size)
        self.hh = nn.Linear(hidden_size, hidden_size, bias=False)


class NoSizesReadsThem(_Tanh):
    """``super().__init__()`` first, then the sizes read back from ``self``."""

    def __init__(self, input_size, hidden_size, scale: float = 1.0):
        super().__init__()
        self.ih = nn.Linear(self.input_size, self.hidden_size)
        self.hh = nn.Linear(self.hidden_size, self.hidden_size, bias=False)
        self.scale = scale


class ModuleInitOnly(_Tanh):
    """Skips RecurrentCell.__init__ altogether."""

    def __init__(self, input_size, hidden_size):
        nn.Module.__init__(self)
        self.ih = nn.Linear(input_size, hidden_size)
        self.hh = nn.Linear(hidden_size, hidden_size, bias=False)


class OtherNames(_Tanh):
    def __init__(self, d_in, d_hidden):
        super().__init__()
        self.ih = nn.Linear(d_in, d_hidden)
        self.hh = nn.Linear(d_hidden, d_hidden, bias=False)


@pytest.mark.parametrize("cls", [NoSizes, NoSizesReadsThem, ModuleInitOnly, OtherNames], ids=lambda c: c.__name__)
def test_a_cell_that_leaves_out_the_sizes_is_built_with_them(registered, cls):
    name = f"test_sizes_{cls.__name__.lower()}"
    registered(name, cls)
    cell = CellFactory.resolve(name, {}, "model.encoder")(5, 7)
    assert (cell.input_size, cell.hidden_size) == (5, 7)
    h, state = cell(torch.zeros(3, 5), cell.initial_state(3, "cpu", torch.float32))
    assert h.shape == (3, 7)
    out, _ = cell.forward_sequence(torch.zeros(3, 4, 5), cell.initial_state(3, "cpu", torch.float32))
    assert out.shape == (3, 4, 7)


def test_direct_construction_without_the_factory_works_too():
    cell = NoSizes(4, 6)
    assert (cell.input_size, cell.hidden_size) == (4, 6)
    cell = NoSizes(input_size=3, hidden_size=2)
    assert (cell.input_size, cell.hidden_size) == (3, 2)


class NoSuper(_Tanh):
    def __init__(self, input_size, hidden_size):
        self.ih = nn.Linear(input_size, hidden_size)  # before any Module.__init__: PyTorch refuses


class KeywordOnly(_Tanh):
    def __init__(self, *, width=4):
        super().__init__()


@pytest.mark.parametrize(
    ("cls", "advice"),
    [
        (NoSuper, "super().__init__(input_size, hidden_size)"),
        (KeywordOnly, "__init__(self, input_size, hidden_size"),
    ],
    ids=["no-super", "keyword-only"],
)
def test_a_cell_that_cannot_be_built_is_told_which_call_to_change(registered, cls, advice):
    name = f"test_bad_{cls.__name__.lower()}"
    registered(name, cls)
    with pytest.raises(PluginError) as info:
        CellFactory.resolve(name, {}, "model.encoder")(5, 7)
    message = str(info.value)
    assert advice in message and cls.__name__ in message and "register() in" in message, message
    assert "rejected {}" not in message


# ------------------------------------------------------------- SystemExit
EXITING = """
import sys
import torch
from torch import nn
from seq2seq_rnn import RecurrentCell, register_cell

{at_import}

@register_cell("{name}")
class ExitingCell(RecurrentCell):
    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        {at_init}
        self.ih = nn.Linear(input_size, hidden_size)

    def initial_state(self, batch_size, device, dtype):
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def forward(self, x, state):
        if x.size(0) > 2:  # passes the one-step contract check (batch 2), exits on a real batch
            {at_run}
        h = torch.tanh(self.ih(x) + state[0])
        return h, (h,)
"""


def _exiting_module(tmp_path: Path, name: str, where: str, code: str = "sys.exit()") -> Path:
    slots = {"at_import": "pass", "at_init": "pass", "at_run": "pass"}
    slots[where] = code
    path = tmp_path / f"{name}.py"
    path.write_text(EXITING.format(name=name, **slots), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("where", "code"),
    [("at_import", "sys.exit()"), ("at_init", "sys.exit(0)"), ("at_run", "raise SystemExit"), ("at_run", "exit(3)")],
    ids=["import", "construction", "run", "run-code-3"],
)
def test_a_plugin_raising_systemexit_is_reported_not_a_silent_exit(tmp_path, where, code):
    name = f"exit_cell_{where}"
    module = _exiting_module(tmp_path, name, where, code)
    run = tmp_path / "run"
    settings = small_overrides(
        train__max_steps=2, train__validate_every=2, model__encoder__cell=name, data__train__limit=40
    )
    proc = run_cli("train", TINY, "--import", module, "--output-dir", run, "--no-test", *settings)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert "SystemExit" in proc.stderr, proc.stderr[-2000:]
    assert str(module) in proc.stderr or name in proc.stderr, proc.stderr[-2000:]
    if where != "at_import":  # the registered name and where it came from
        assert f"cell {name!r}" in proc.stderr and f"register() in seq2seq_rnn_user_{name}" in proc.stderr


def test_an_entry_point_plugin_raising_systemexit_on_import_names_its_distribution(tmp_path):
    site = tmp_path / "site"
    (site / "exitplug-1.2.dist-info").mkdir(parents=True)
    (site / "exitplug-1.2.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: exitplug\nVersion: 1.2\n")
    (site / "exitplug-1.2.dist-info" / "entry_points.txt").write_text(
        "[seq2seq_rnn.cells]\nexitplug_cell = exitplug:Cell\n"
    )
    (site / "exitplug.py").write_text("import sys\nsys.exit(0)\n")
    env = cli_env(PYTHONPATH=str(site))
    settings = small_overrides(train__max_steps=2, model__encoder__cell="exitplug_cell", data__train__limit=40)
    proc = run_cli("train", TINY, "--output-dir", tmp_path / "run", "--no-test", *settings, env=env)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert "exitplug 1.2" in proc.stderr and "SystemExit" in proc.stderr, proc.stderr[-2000:]
