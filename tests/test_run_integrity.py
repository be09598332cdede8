"""A run's trained work survives later starts, writes stay inside the run directory, and
scores belong to a checkpoint (issue #21, classes 1, 3 and 6)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from seq2seq_rnn.cli import main
from seq2seq_rnn.run.checkpoint import load_checkpoint, save_checkpoint
from seq2seq_rnn.run.directory import RunDir
from seq2seq_rnn.run.modelcard import model_card
from tests.helpers import TINY, small_overrides

SETTINGS = small_overrides(train__max_steps=4, train__validate_every=2, train__log_every=1, train__keep_checkpoints=3)
MORE = small_overrides(train__max_steps=6, train__validate_every=2, train__log_every=1, train__keep_checkpoints=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: last.pt, best.pt, step-2 and step-4, validated metrics; read-only."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", str(TINY), "--output-dir", str(run), "--no-test", *SETTINGS]) == 0
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> RunDir:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy, symlinks=True)
    return RunDir(copy)


def contents(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (links not followed) with its bytes (None for folders)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        out[str(path.relative_to(folder))] = path.read_bytes() if path.is_file() else None
    return out


def train(run: RunDir, *extra: str, settings: list[str] = SETTINGS) -> int:
    return main(["train", str(TINY), "--output-dir", str(run.path), "--no-test", *settings, *extra])


# ------------------------------------------------------------ class 1: a later start never destroys trained work
LOSSES = {
    "last.pt only": ["checkpoints/last.pt"],
    "last.pt and best.pt": ["checkpoints/last.pt", "checkpoints/best.pt"],
    "every checkpoint": ["checkpoints"],
}


@pytest.mark.parametrize("lost", list(LOSSES), ids=list(LOSSES))
@pytest.mark.parametrize("resume", [False, True], ids=["train", "train --resume"])
def test_a_run_that_lost_last_pt_keeps_everything_and_says_how_to_continue(run, lost, resume, capsys):
    for name in LOSSES[lost]:
        target = run.path / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    before = contents(run.path)
    before.pop("seq2seq_rnn.lock", None)
    code = train(run, *(["--resume"] if resume else []))
    err = capsys.readouterr().err
    after = contents(run.path)
    after.pop("seq2seq_rnn.lock", None)
    assert after == before  # best.pt, step files, metrics, tokenizer: not one byte changed
    assert code == 2
    assert "last.pt" in err and "--resume" in err
    for what in ("best.pt", "step-00000002.pt") if lost == "last.pt only" else ():
        assert what in err  # says what is there
    assert "validation" in err  # metrics.jsonl holds validations: the message names them


def test_an_unfinished_start_is_cleaned_of_its_own_files_and_never_of_a_checkpoint(tmp_path):
    """A start killed before its first last.pt: a restart removes what that start created (its
    metrics rows would be repeated), keeps a user's file, and never deletes a checkpoint."""
    run = RunDir(tmp_path / "run")
    run.claim()
    (run.path / "notes.txt").write_text("the user's notes")
    run.begin_start()  # what prepare_run does first: the start records what it creates
    run.metrics.write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in (1, 2, 3)))
    (run.path / "tokenizer").mkdir()
    (run.path / "tokenizer" / "spm.model").write_bytes(b"half-written")
    run.checkpoints.mkdir()
    run.best.write_bytes(b"from the killed start")
    assert train(run) == 0
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4] and all(r.get("loss") != 9.0 for r in rows)
    assert (run.path / "notes.txt").read_text() == "the user's notes"
    kept = [p for p in run.path.rglob("best.pt") if p.read_bytes() == b"from the killed start"]
    assert len(kept) == 1 and kept[0] != run.best  # moved aside, not deleted and not mixed in
    aside = kept[0].parent.parent
    assert (aside / "tokenizer" / "spm.model").read_bytes() == b"half-written"
    assert "9.0" in (aside / "metrics.jsonl").read_text()
    assert run.has_training_state()


# ------------------------------------------------------------ class 3: writes stay inside the run directory
FILE_LINKS = [
    "metrics.jsonl",
    "train.log",
    "seq2seq_rnn.lock",
    "data.json",
    "recipe.yaml",
    "README.md",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    "checkpoints/step-00000004.pt",
    "tokenizer/spm.model",
]


def _link_outside(run: RunDir, name: str, outside: Path, dangling: bool) -> Path:
    """Replace ``name`` in the run by a symlink to a file outside holding a copy (or to nothing)."""
    inside = run.path / name
    target = outside / name.replace("/", "_")
    if not dangling:
        shutil.copyfile(inside, target)
    inside.unlink()
    inside.symlink_to(target)
    return target


def _assert_refused_or_untouched(code: int, err: str, target: Path, before: bytes | None, name: str) -> None:
    now = target.read_bytes() if target.exists() else None
    assert now == before, f"{target} (linked as {name}) was written through the link"
    assert code in (0, 2), err
    if code == 2:
        assert name.split("/")[-1] in err and "link" in err


@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "dangling"])
@pytest.mark.parametrize("name", FILE_LINKS)
def test_a_symlinked_file_in_a_run_is_never_written_through(run, tmp_path, name, dangling, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = _link_outside(run, name, outside, dangling)
    before = target.read_bytes() if target.exists() else None
    code = train(run, "--resume", settings=MORE)
    _assert_refused_or_untouched(code, capsys.readouterr().err, target, before, name)


@pytest.mark.parametrize("folder", ["checkpoints", "tokenizer", "tensorboard"])
def test_a_symlinked_folder_in_a_run_is_never_written_through(run, tmp_path, folder, capsys):
    outside = tmp_path / "outside"
    inside = run.path / folder
    if inside.is_dir():
        shutil.copytree(inside, outside)
        shutil.rmtree(inside)
    else:
        outside.mkdir()
    inside.symlink_to(outside, target_is_directory=True)
    before = contents(outside)
    code = train(run, "--resume", "--set", "train.tensorboard=true", settings=MORE)
    err = capsys.readouterr().err
    assert contents(outside) == before, f"{outside} (linked as {folder}/) was written through the link"
    assert code == 2 and folder in err and "link" in err


def test_a_symlinked_tokenizer_folder_of_a_new_run_is_never_written_through(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    run.claim()
    outside = tmp_path / "outside"
    outside.mkdir()
    run.tokenizer.symlink_to(outside, target_is_directory=True)
    code = train(run)
    err = capsys.readouterr().err
    assert list(outside.iterdir()) == []
    assert code == 2 and "tokenizer" in err and "link" in err


@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "dangling"])
def test_a_symlinked_scores_file_is_never_written_through(run, tmp_path, dangling, capsys):
    target = tmp_path / "scores-elsewhere.json"
    if not dangling:
        target.write_text('{"theirs": {"bleu": 1.0, "chrf": 2.0}}\n')
    run.scores.symlink_to(target)
    before = target.read_bytes() if target.exists() else None
    code = main(["evaluate", str(run.path), "--split", "validation"])
    _assert_refused_or_untouched(code, capsys.readouterr().err, target, before, "scores.json")


def test_a_symlinked_plots_folder_is_never_written_through(run, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (run.path / "plots").symlink_to(outside, target_is_directory=True)
    code = main(["plot", str(run.path)])
    err = capsys.readouterr().err
    assert list(outside.iterdir()) == []
    assert code == 2 and "plots" in err and "link" in err


def test_a_symlinked_default_export_folder_is_never_written_through(run, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (run.path / "export-torchscript").symlink_to(outside, target_is_directory=True)
    code = main(["export", str(run.path)])
    err = capsys.readouterr().err
    assert list(outside.iterdir()) == []
    assert code == 2 and "export-torchscript" in err and "link" in err


# ------------------------------------------------------------ class 6: scores belong to a checkpoint
def _scores(run: RunDir) -> dict:
    return json.loads(run.scores.read_text(encoding="utf-8"))


def test_a_score_records_the_step_and_fingerprint_of_its_checkpoint(run):
    assert main(["evaluate", str(run.path), "--split", "validation"]) == 0
    (entry,) = _scores(run).values()
    assert entry["step"] == load_checkpoint(run.best)["progress"]["step"]
    assert isinstance(entry["fingerprint"], str) and entry["fingerprint"].startswith("sha256:")
    assert main(["evaluate", str(run.path), "--split", "validation", "--checkpoint", "last"]) == 0
    fingerprints = {e["checkpoint"]: e["fingerprint"] for e in _scores(run).values()}
    assert fingerprints["last"] != fingerprints["best"]


def test_the_card_never_shows_a_score_of_a_checkpoint_that_is_no_longer_best(run):
    assert main(["evaluate", str(run.path), "--split", "validation"]) == 0
    assert "best checkpoint" in model_card(run.path)
    state = load_checkpoint(run.best)  # training continued and a later validation wrote a new best.pt
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    state["progress"]["step"] = state["progress"]["best_step"] = 6
    save_checkpoint(run.best, {k: v for k, v in state.items() if k != "format_version"})
    card = model_card(run.path)
    assert "best checkpoint" not in card
    assert "no longer" in card  # a note says an older checkpoint's scores are left out


def test_old_scores_without_a_checkpoint_fingerprint_still_load(run):
    old = {"bleu": 12.5, "chrf": 30.0, "n": 20, "split": "validation", "checkpoint": "best", "beam_size": 2}
    run.scores.write_text(json.dumps({"validation | best | beam 2": old}) + "\n")
    card = model_card(run.path)
    assert "12.50" not in card or "unknown checkpoint" in card
    assert "unknown checkpoint" in card  # shown as such, or named in the note
    assert main(["evaluate", str(run.path), "--split", "validation"]) == 0  # and a new score is added to it
    assert len(_scores(run)) == 2


def test_evaluating_best_when_best_pt_is_gone_after_validations_says_so(run, capsys):
    run.best.unlink()
    code = main(["evaluate", str(run.path), "--split", "validation"])
    err = capsys.readouterr().err
    assert code == 2 and "best.pt" in err and "validation" in err
    assert not run.scores.exists()  # last.pt was not scored under the name best
    assert main(["evaluate", str(run.path), "--split", "validation", "--checkpoint", "last"]) == 0


def test_best_falls_back_to_last_only_before_the_first_validation(run):
    run.best.unlink()
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    run.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows if "val_bleu" not in r))
    assert run.checkpoint("best") == run.last


def test_appends_never_follow_a_link_made_after_the_run_was_checked(tmp_path):
    """A link put in place while training runs: the metrics line and the log line are refused, not
    appended to the file outside."""
    import logging

    from seq2seq_rnn.training.callbacks import MetricsFile
    from seq2seq_rnn.training.setup import close_log_file, log_to_file

    outside = tmp_path / "outside.txt"
    outside.write_text("theirs\n")
    for name in ("metrics.jsonl", "train.log"):
        (tmp_path / name).symlink_to(outside)
    with pytest.raises(OSError):
        MetricsFile(tmp_path / "metrics.jsonl").on_log(None, {"step": 1, "loss": 2.0})  # type: ignore[arg-type]
    try:
        log_to_file(tmp_path / "train.log")
        logging.getLogger("seq2seq_rnn.test").warning("a line for the log")
    except OSError:
        pass
    finally:
        close_log_file(tmp_path / "train.log")
    assert outside.read_text() == "theirs\n"
