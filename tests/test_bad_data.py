"""Bad training data, end to end through ``seq2seq-rnn train`` and the Trainer.

Each case either stops with a clear error (exit status 2, the file and line at
fault, no traceback) or is filtered with a count in the log, and the pairs that
remain are still aligned: pair i of the corpus says "satz i" on the source side
and "sentence i" on the target side, and we check that after filtering.
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import pytest
import torch

from seq2seq_rnn.cli import main
from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.run.checkpoint import load_checkpoint
from seq2seq_rnn.training import Callback, Hooks, Trainer
from tests.helpers import TINY, small_overrides

N = 60


def pairs(n: int = N) -> tuple[list[str], list[str]]:
    return [f"satz {i} ein hund läuft" for i in range(n)], [f"sentence {i} a dog runs" for i in range(n)]


def write(path: Path, lines: list[str] | bytes, newline: str = "\n") -> Path:
    raw = lines if isinstance(lines, bytes) else "".join(line + newline for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def data_overrides(train: tuple[Path, Path], validation: tuple[Path, Path]) -> list[str]:
    sets = {
        "data.train": f"{{source: '{train[0]}', target: '{train[1]}'}}",
        "data.validation": f"{{source: '{validation[0]}', target: '{validation[1]}'}}",
        "data.test": "null",
        "tokenizer.vocab_size": "60",
        "train.max_steps": "2",
    }
    return [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]


def corpus(folder: Path, src: list[str] | bytes, tgt: list[str] | bytes, newline: str = "\n") -> list[str]:
    """--set arguments training on (src, tgt) and validating on a clean copy of pairs()."""
    folder.mkdir(parents=True, exist_ok=True)
    vsrc, vtgt = pairs(10)
    train = (write(folder / "train.de", src, newline), write(folder / "train.en", tgt, newline))
    validation = (write(folder / "val.de", vsrc), write(folder / "val.en", vtgt))
    return [*small_overrides(), *data_overrides(train, validation)]


def prepare(folder: Path, overrides: list[str]) -> Trainer:
    trainer = Trainer(load_recipe(TINY, overrides[1::2]), folder / "run")
    trainer.prepare()
    return trainer


def numbers(trainer: Trainer) -> list[tuple[int, int]]:
    """(i of 'satz i', i of 'sentence i') of every training pair, decoded from the subword ids."""
    tok = trainer.data.tokenizer  # joint: one model decodes both sides
    src_ids, tgt_ids = trainer.data.train.ids(trainer.data.train_rows)
    out = []
    for src, tgt in zip(tok.decode_target(src_ids), tok.decode_target(tgt_ids), strict=True):
        s, t = re.search(r"satz (\d+)", src), re.search(r"sentence (\d+)", tgt)
        assert s and t, (src, tgt)
        out.append((int(s.group(1)), int(t.group(1))))
    return out


def refused(capsys: pytest.CaptureFixture[str], overrides: list[str], run: Path) -> str:
    assert main(["train", str(TINY), "--output-dir", str(run), "--no-test", *overrides]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and err.startswith("error: "), err
    return err


# ------------------------------------------------------------- clear errors
def test_mismatched_line_counts_are_refused(tmp_path, capsys):
    src, tgt = pairs()
    err = refused(capsys, corpus(tmp_path, src, tgt[:-1]), tmp_path / "run")
    assert f"different numbers of lines: {N} in" in err and f"{N - 1} in" in err and "train.en" in err


def test_a_missing_file_is_refused(tmp_path, capsys):
    overrides = corpus(tmp_path, *pairs())
    (tmp_path / "train.en").unlink()
    err = refused(capsys, overrides, tmp_path / "run")
    assert "train.en: no such file" in err


def test_invalid_utf8_names_file_line_and_byte(tmp_path, capsys):
    src, tgt = pairs()
    raw = (
        "".join(s + "\n" for s in src[:4]).encode()
        + b"satz 4 \xff\xfe kaputt\n"
        + "".join(s + "\n" for s in src[5:]).encode()
    )
    err = refused(capsys, corpus(tmp_path, raw, tgt), tmp_path / "run")
    assert "train.de, line 5: invalid UTF-8 (byte 0xff at column 8)" in err


def test_a_corrupt_gzip_file_is_refused(tmp_path, capsys):
    overrides = corpus(tmp_path, *pairs())
    (tmp_path / "bad.de.gz").write_bytes(gzip.compress(b"satz 0\n")[:-12])  # truncated stream
    overrides = [o.replace(str(tmp_path / "train.de"), str(tmp_path / "bad.de.gz")) for o in overrides]
    err = refused(capsys, overrides, tmp_path / "run")
    assert "bad.de.gz: cannot read" in err


@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["empty-file", "only-blank-lines"])
def test_an_empty_split_is_refused(tmp_path, capsys, content):
    overrides = corpus(tmp_path, *pairs())
    (tmp_path / "val.de").write_text(content)
    (tmp_path / "val.en").write_text(content)
    err = refused(capsys, overrides, tmp_path / "run")
    assert "the validation split is empty" in err and "val.de" in err


# --------------------------------------------------- filtered and counted
def test_empty_lines_are_dropped_with_a_count_and_pairs_stay_aligned(tmp_path, caplog):
    src, tgt = pairs()
    src[3], tgt[10], src[20], tgt[20], tgt[33] = "", "   ", "", "", "\t"
    with caplog.at_level(logging.INFO, logger="seq2seq_rnn"):
        trainer = prepare(tmp_path, corpus(tmp_path, src, tgt))
    assert f"train: dropped 4 of {N} pairs with an empty side" in caplog.text
    kept = numbers(trainer)
    assert len(kept) == N - 4
    assert all(s == t for s, t in kept), "pairs were misaligned"
    assert {s for s, _ in kept} == set(range(N)) - {3, 10, 20, 33}


def test_100k_character_lines_are_dropped_by_length_with_a_count(tmp_path, caplog):
    src, tgt = pairs()
    src[7] = "satz 7 " + "ein hund läuft " * 6_700  # 100k characters of known subwords
    tgt[8] = "sentence 8 " + " ".join(["wort"] * 20_000)
    with caplog.at_level(logging.INFO, logger="seq2seq_rnn"):
        trainer = prepare(tmp_path, corpus(tmp_path, src, tgt))
    assert "dropped 2 training pairs longer than 50 subwords" in caplog.text
    kept = numbers(trainer)
    assert len(kept) == N - 2 and all(s == t for s, t in kept)
    assert {7, 8}.isdisjoint(s for s, _ in kept)


def test_windows_line_endings_and_a_bom_read_like_unix_ones(tmp_path):
    src, tgt = pairs()
    src[0] = "\ufeff" + src[0]
    src[5] = "satz 5 mit \r mitten im satz"  # a lone CR inside a line must not split it
    trainer = prepare(tmp_path, corpus(tmp_path, src, tgt, newline="\r\n"))
    kept = numbers(trainer)
    assert len(kept) == N and all(s == t for s, t in kept)
    src_ids, tgt_ids = trainer.data.train.ids(trainer.data.train_rows)
    decoded = trainer.data.tokenizer.decode_target(src_ids + tgt_ids)
    assert not any("\ufeff" in line or line.endswith("\r") for line in decoded)
    assert trainer.data.validation.sources[0] == "satz 0 ein hund läuft"


# ------------------------------------------------------- non-finite losses
class PoisonCalls(torch.nn.Module):
    """Wraps the model for training (Hooks.wrap_model) and returns NaN logits on chosen calls."""

    def __init__(self, model: torch.nn.Module, poisoned: set[int] | None) -> None:
        super().__init__()
        self.model, self.poisoned, self.calls = model, poisoned, 0

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        logits = self.model(*args)
        return logits * float("nan") if self.poisoned is None or self.calls in self.poisoned else logits


def nan_trainer(
    tmp_path: Path, poisoned: set[int] | None, callbacks: tuple[Callback, ...] = (), **changes: object
) -> Trainer:
    recipe = load_recipe(
        TINY, small_overrides(train__max_steps=8, train__validate_every=4, train__log_every=4, **changes)[1::2]
    )
    hooks = Hooks(wrap_model=lambda m: PoisonCalls(m, poisoned))
    return Trainer(recipe, tmp_path / "run", hooks=hooks, callbacks=callbacks)


class WeightsUnchanged(Callback):
    """Records, per step, whether the update left every weight as it was."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.unchanged: list[bool] = []

    def on_step_begin(self, trainer: Trainer) -> None:
        self.before = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    def on_step_end(self, trainer: Trainer, loss: float, tokens: int) -> None:
        after = trainer.model.state_dict()
        self.unchanged.append(all(torch.equal(self.before[k], after[k]) for k in self.before))


def test_a_nonfinite_step_is_skipped_and_counted_without_touching_the_weights(tmp_path, caplog):
    checked = WeightsUnchanged()
    trainer = nan_trainer(tmp_path, {3, 6}, callbacks=(checked,))
    unchanged = checked.unchanged
    with caplog.at_level(logging.WARNING, logger="seq2seq_rnn"):
        trainer.fit()
    assert trainer.progress.step == 8 and trainer.progress.nonfinite_steps == 2
    assert [i + 1 for i, same in enumerate(unchanged) if same] == [3, 6], (
        "only the NaN steps leave weights as they were"
    )
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert adam_steps == {6}, "the optimizer must not count skipped steps"
    assert "step 3: non-finite loss or gradient, update skipped (1 so far)" in caplog.text
    assert "step 6: non-finite loss or gradient, update skipped (2 so far)" in caplog.text
    assert '"step": 8, ' in (tmp_path / "run" / "metrics.jsonl").read_text()
    assert '"nonfinite_steps": 2' in (tmp_path / "run" / "metrics.jsonl").read_text()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["progress"]["nonfinite_steps"] == 2


def test_too_many_nonfinite_steps_stop_training_with_a_clear_message(tmp_path, capsys, monkeypatch):
    from seq2seq_rnn.model import Seq2Seq

    forward = Seq2Seq.forward

    def nan_when_training(self, *args):
        logits = forward(self, *args)
        return logits * float("nan") if self.training else logits

    monkeypatch.setattr(Seq2Seq, "forward", nan_when_training)
    run = tmp_path / "run"
    args = ["train", str(TINY), "--output-dir", str(run), "--no-test", *small_overrides()]
    assert main([*args, "--set", "train.max_nonfinite_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "4 steps had non-finite loss or gradients (limit train.max_nonfinite_steps=3)" in err
    assert "lower train.optimizer.lr or check the data" in err and "No checkpoint was written" in err
    assert "Traceback" not in err
