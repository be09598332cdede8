"""Checkpoints are tied to their run (issue #10, class 5) and no finished work is thrown away
(class 6): streamed translations, scores printed before they are recorded, scores.json keyed
and kept, a failing plugin cell named after a checkpoint, SIGTERM during validation."""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import Tensor

from seq2seq_rnn import Translator
from seq2seq_rnn.cells.base import RecurrentCell, State
from seq2seq_rnn.cli import main
from seq2seq_rnn.components import CELLS
from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.data.tokenizer import SubwordTokenizer
from seq2seq_rnn.errors import CheckpointError, PluginError, TrainingInterrupted
from seq2seq_rnn.metrics import Scores
from seq2seq_rnn.run.checkpoint import load_checkpoint, save_checkpoint
from seq2seq_rnn.training import Callback, Trainer, Validator
from tests.helpers import ROOT, TINY, cli_env, small_overrides

SETTINGS = small_overrides(train__max_steps=4, train__validate_every=2, train__log_every=1)


def copy_run(tiny_run: Path, tmp_path: Path, name: str = "run") -> Path:
    run = tmp_path / name
    shutil.copytree(tiny_run, run)
    return run


# ------------------------------------------------------------ class 5: checkpoints tied to their run
def test_a_checkpoint_refuses_another_tokenizer_with_the_same_vocabulary_size(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    before = SubwordTokenizer.load(run / "tokenizer")
    recipe = load_recipe(run / "recipe.yaml")
    sentences = [f"wort{i} satz{i % 7} ende" for i in range(400)]  # other text: other pieces, same size
    cfg = recipe.tokenizer.model_copy(update={"vocab_size": before.target_vocab_size})
    other = SubwordTokenizer.train(cfg, sentences, sentences, run / "tokenizer", seed=7)
    assert other.target_vocab_size == before.target_vocab_size and not other.same_vocabulary(before)
    with pytest.raises(CheckpointError) as caught:
        Translator.load(run, device="cpu")
    message = str(caught.value)
    assert "another tokenizer" in message and str(run / "tokenizer") in message and "best.pt" in message
    with pytest.raises(CheckpointError, match="another tokenizer"):  # also named by path
        Translator.load(run, checkpoint=str(tiny_run / "checkpoints" / "last.pt"), device="cpu")


def test_a_checkpoint_refuses_another_model_section(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    text = (run / "recipe.yaml").read_text().replace("residual: true", "residual: false", 1)
    (run / "recipe.yaml").write_text(text)  # same shapes, other computation
    with pytest.raises(CheckpointError, match="another model section"):
        Translator.load(run, device="cpu")


def test_non_finite_weights_are_refused_on_load(tiny_run, tmp_path):
    path = tmp_path / "nan.pt"
    payload = load_checkpoint(tiny_run / "checkpoints" / "best.pt")
    name = next(iter(payload["model"]))
    payload["model"][name] = torch.full_like(payload["model"][name], float("nan"))
    save_checkpoint(path, {k: v for k, v in payload.items() if k != "format_version"})
    with pytest.raises(CheckpointError, match=f"non-finite weights .*{name}"):
        load_checkpoint(path)


def test_a_validation_with_non_finite_loss_is_never_recorded_as_best(tmp_path, monkeypatch):
    recipe = load_recipe(TINY, SETTINGS[1::2])
    nan_scores = Scores(bleu=50.0, chrf=50.0, bleu_signature="", chrf_signature="", n=1)
    monkeypatch.setattr(Validator, "scores", lambda self, beam_size=None: (float("nan"), nan_scores))
    Trainer(recipe, tmp_path / "run").fit()
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["best_bleu"] == -1.0


# ------------------------------------------------------------ class 6: nothing thrown away
def test_translate_streams_in_input_order_and_sigterm_keeps_what_was_written(tiny_run):
    lines = [f"Ein Hund läuft {i} Mal über die Wiese." for i in range(12)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq_rnn.cli", "translate", str(tiny_run), "--device", "cpu"]
        + ["--beam-size", "1", "--batch-size", "2"],
        cwd=ROOT,
        env=cli_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("".join(line + "\n" for line in lines[:5]).encode())  # stdin stays open
    proc.stdin.flush()
    received = b""
    deadline = time.monotonic() + 120
    while received.count(b"\n") < 4 and time.monotonic() < deadline:  # two full batches of two
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            received += os.read(proc.stdout.fileno(), 65536)
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=60)
    out = (received + rest).decode().splitlines()
    assert len(out) >= 4, f"nothing was written before the end of the input: {err.decode()[-1000:]}"
    assert proc.returncode == 130, err.decode()[-1000:]
    expected = Translator.load(tiny_run, device="cpu").translate(lines[: len(out)], beam_size=1, batch_size=2)
    assert out == expected


def test_evaluate_prints_scores_before_recording_them(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    (run / "scores.json").unlink(missing_ok=True)
    (run / "scores.json").mkdir()  # recording must fail
    assert main(["evaluate", str(run), "--split", "validation", "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["bleu"] >= 0.0
    assert "not recorded" in err and "Traceback" not in err


def test_scores_are_keyed_by_split_checkpoint_and_decoding_and_files_are_recorded(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    (run / "scores.json").unlink(missing_ok=True)
    assert main(["evaluate", str(run), "--split", "validation", "--checkpoint", "best"]) == 0
    assert main(["evaluate", str(run), "--split", "validation", "--checkpoint", "last"]) == 0
    assert main(["evaluate", str(run), "--split", "validation", "--checkpoint", "last", "--beam-size", "1"]) == 0
    src, ref = tmp_path / "src.de", tmp_path / "ref.en"
    src.write_text("Ein Hund läuft.\nZwei Männer.\n")
    ref.write_text("A dog runs.\nTwo men.\n")
    assert main(["evaluate", str(run), "--src", str(src), "--ref", str(ref)]) == 0
    table = json.loads((run / "scores.json").read_text())
    entries = list(table.values())
    assert len(table) == 4, list(table)
    assert sorted((e.get("split"), e["checkpoint"], e["beam_size"]) for e in entries if "split" in e) == [
        ("validation", "best", 2),
        ("validation", "last", 1),
        ("validation", "last", 2),
    ]
    files = [e for e in entries if "source" in e]
    assert files and files[0]["source"] == str(src.resolve()) and files[0]["reference"] == str(ref.resolve())
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_corrupt_scores_json_is_kept_aside_and_replaced(tiny_run, tmp_path, capsys, caplog):
    run = copy_run(tiny_run, tmp_path)
    (run / "scores.json").write_text('{"test": {"bleu": 1')
    assert main(["evaluate", str(run), "--split", "validation"]) == 0
    assert (run / "scores.json.corrupt").read_text() == '{"test": {"bleu": 1'
    assert len(json.loads((run / "scores.json").read_text())) == 1
    assert "scores.json.corrupt" in caplog.text


class FlakyCell(RecurrentCell):
    """A GRU-like cell that passes the contract check, then fails once ``FAIL`` is set."""

    FAIL = [False]

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.lin = torch.nn.Linear(input_size + hidden_size, hidden_size)

    def initial_state(self, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),)

    def forward(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        if FlakyCell.FAIL[0]:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (the cell's own bug)")
        h = torch.tanh(self.lin(torch.cat([x, state[0]], dim=-1)))
        return h, (h,)


def test_a_plugin_cell_failing_at_run_time_is_named_after_a_checkpoint_of_the_last_good_step(tmp_path, monkeypatch):
    CELLS.register("flaky_test_cell", FlakyCell)
    try:
        recipe = load_recipe(
            TINY, [*SETTINGS[1::2], "model.encoder.cell=flaky_test_cell", "train.max_steps=8", "train.validate_every=8"]
        )

        class FailAtStep3(Callback):
            def on_step_begin(self, trainer: Trainer) -> None:
                FlakyCell.FAIL[0] = trainer.progress.step == 2

        run = tmp_path / "run"
        with pytest.raises(PluginError) as caught:
            Trainer(recipe, run, callbacks=[FailAtStep3()]).fit()
    finally:
        FlakyCell.FAIL[0] = False
        CELLS.unregister("flaky_test_cell")
    message = str(caught.value)
    assert "'flaky_test_cell'" in message and "model.encoder.cell" in message and "register()" in message
    assert "step 3" in message and "shapes in the failing call: " in message and "x (" in message
    assert "batch: src (B, S) = (" in message and "--resume" in message
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] == 2


def test_sigterm_during_validation_stops_it_and_resume_validates_first(tmp_path, monkeypatch):
    recipe = load_recipe(TINY, SETTINGS[1::2])
    validate = Validator.scores
    calls: list[int] = []
    finished: list[bool] = []
    at_step = [0]

    class StepTracker(Callback):  # the step each validation happens at
        def on_train_begin(self, trainer: Trainer) -> None:
            at_step[0] = trainer.progress.step

        def on_step_end(self, trainer: Trainer, loss: float, tokens: int) -> None:
            at_step[0] = trainer.progress.step

    def slow_validation(self, beam_size=None):  # type: ignore[no-untyped-def]
        calls.append(at_step[0])
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1500):  # a long validation: 15 s unless stopped
                time.sleep(0.01)
            finished.append(True)
        return validate(self, beam_size)

    monkeypatch.setattr(Validator, "scores", slow_validation)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        Trainer(recipe, run, callbacks=[StepTracker()]).fit()
    assert not finished, "the validation ran to its end after SIGTERM"
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["progress"]["step"] == 2 and state["progress"]["validation_due"]
    Trainer(recipe, run, resume=True, callbacks=[StepTracker()]).fit()
    assert calls == [2, 2, 4]  # the stopped validation is done on resume, then training goes on
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_bleu" in r] == [2, 4]


def test_a_plugin_cell_failing_while_translating_or_evaluating_is_named(tmp_path, monkeypatch, capsys):
    """The same cell that trains fine fails later, at decoding: a PluginError naming it, no traceback."""
    CELLS.register("flaky_test_cell", FlakyCell)
    try:
        recipe = load_recipe(TINY, [*SETTINGS[1::2], "model.decoder.cell=flaky_test_cell", "train.max_steps=4"])
        run = tmp_path / "run"
        Trainer(recipe, run).fit()
        FlakyCell.FAIL[0] = True
        source = tmp_path / "in.txt"
        source.write_text("Ein Hund läuft.\n", encoding="utf-8")
        with source.open("rb") as handle:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(handle, encoding="utf-8"))
            assert main(["translate", str(run), "--device", "cpu"]) == 2
        translate_err = capsys.readouterr().err
        assert main(["evaluate", str(run), "--split", "validation"]) == 2
        evaluate_err = capsys.readouterr().err
    finally:
        FlakyCell.FAIL[0] = False
        CELLS.unregister("flaky_test_cell")
    for err, when in ((translate_err, "while translating"), (evaluate_err, "while evaluating")):
        assert "cell 'flaky_test_cell' (model.decoder.cell, from" in err and when in err, err
        assert "shapes in the failing call: x (" in err and "Traceback" not in err
