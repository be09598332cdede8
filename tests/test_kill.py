"""Real training processes killed and resumed: nothing is lost, the result is the same.

The slow tests start ``seq2seq-rnn train`` as a subprocess, SIGKILL it at random
moments (start-up, data preparation, training steps, validation) and at the
moment a checkpoint is being written, resume with ``--resume`` each time, and
require the final weights to equal those of an uninterrupted run bitwise.
SIGINT/SIGTERM must checkpoint, say how to resume and exit with status 130.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq_rnn.cli import main
from seq2seq_rnn.run.checkpoint import load_checkpoint
from seq2seq_rnn.run.directory import RunDir
from tests.helpers import ROOT, TINY, cli_env, run_cli, small_overrides

# Many small checkpoints (every 2 steps) so that kills often land in or near a checkpoint write.
SETTINGS = small_overrides(train__max_steps=30, train__validate_every=2, train__log_every=1)
STARTUP_KILLS = 2
STEP_KILLS = int(os.environ.get("SEQ2SEQ_STEP_KILLS", "5"))
MID_WRITE_KILLS = 3


def start(run: Path, *extra: str) -> subprocess.Popen[bytes]:
    if "--resume" in extra and not (run / "checkpoints" / "last.pt").is_file():  # --resume needs a run to resume
        extra = tuple(e for e in extra if e != "--resume")
    args = [sys.executable, "-m", "seq2seq_rnn.cli", "train", str(TINY), "--output-dir", str(run), "--no-test"]
    return subprocess.Popen(
        [*args, *SETTINGS, *extra], cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode("utf-8", "replace")


def weights(run: Path) -> dict[str, Any]:
    return load_checkpoint(run / "checkpoints" / "last.pt")


def assert_same_weights(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["progress"]["step"] == b["progress"]["step"]
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), f"weights differ: {key}"
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = tmp_path_factory.mktemp("reference") / "run"
    started = time.monotonic()
    proc = start(run)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode("utf-8", "replace")
    return {**weights(run), "seconds": time.monotonic() - started}


def wait_for(predicate: Any, timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


def kill_mid_write(run: Path, timeout: float = 60) -> bool:
    """Start a resume, SIGKILL it the moment a last.pt temp file appears; True if it was caught mid-write."""
    proc = start(run, "--resume")
    folder = run / "checkpoints"
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            names = []
        if any(is_last_tmp(n) for n in names):
            proc.kill()
            break
        time.sleep(0.0005)
    kill(proc)
    return any(is_last_tmp(n) for n in os.listdir(folder))


def is_last_tmp(name: str) -> bool:
    return name.startswith(".last.pt.") and name.endswith(".tmp")


def checkpoint_step(run: Path) -> int | None:
    return weights(run)["progress"]["step"] if (run / "checkpoints" / "last.pt").is_file() else None


def logged_step(run: Path) -> int:
    """The last training step written to metrics.jsonl (0 before the first)."""
    try:
        lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return 0
    steps = [int(m.group(1)) for m in map(STEP.search, lines) if m]
    return max(steps, default=0)


STEP = re.compile(r'"step": (\d+)')


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_the_same_weights(tmp_path, reference):
    """SIGKILL during start-up, after random training steps (mid-step, mid-validation) and mid-checkpoint-write."""
    run = tmp_path / "run"
    rng = random.Random(int(os.environ.get("SEQ2SEQ_KILL_SEED", "6")))
    total = reference["progress"]["step"]
    report: list[tuple[str, int | None]] = []

    def record(kind: str, proc: subprocess.Popen[bytes]) -> None:
        code, err = kill(proc)
        assert code == -signal.SIGKILL, f"{kind}: the run ended before the kill ({code}): {err}"
        report.append((kind, checkpoint_step(run)))

    for _ in range(STARTUP_KILLS):  # imports, data loading, tokenizer training, first steps
        proc = start(run, "--resume")
        time.sleep(rng.uniform(0.3, 4.0))
        record("start-up", proc)
    for target in sorted(rng.sample(range(2, total - 2), STEP_KILLS)):
        proc = start(run, "--resume")
        assert wait_for(lambda t=target, p=proc: logged_step(run) >= t or p.poll() is not None, 300, poll=0.01)
        time.sleep(rng.uniform(0.0, 0.4))  # somewhere in the next step(s), validation or checkpoint
        record(f"after step {logged_step(run)}", proc)
        if len([k for k, _ in report if "write" in k]) < MID_WRITE_KILLS:
            report.append(("mid-write" if kill_mid_write(run) else "near-write", checkpoint_step(run)))
    final = run_cli("train", TINY, "--output-dir", run, "--no-test", "--resume", *SETTINGS, timeout=600)
    print("kill points (where, checkpoint step after the kill):", report)
    assert final.returncode == 0, final.stderr
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert_same_weights(weights(run), reference)
    assert any(kind == "mid-write" for kind, _ in report), "no kill landed inside a checkpoint write"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_sigterm_checkpoint_explain_and_exit_130(tmp_path, reference, sig):
    run = tmp_path / "run"
    proc = start(run)
    training = wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size, 120)
    assert training, "training never started"
    code, err = kill(proc, sig)
    assert code == 130, err
    assert "Traceback" not in err
    assert "Resume with: seq2seq-rnn train RECIPE --resume" in err and str(run) in err
    interrupted = weights(run)
    assert 0 < interrupted["progress"]["step"] < reference["progress"]["step"]
    final = run_cli("train", TINY, "--output-dir", run, "--no-test", "--resume", *SETTINGS, timeout=600)
    assert final.returncode == 0, final.stderr
    assert_same_weights(weights(run), reference)


# ----------------------------------------------------------------- fast checks
def test_unwritable_output_directory_fails_before_any_data_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["train", str(TINY), "--output-dir", str(blocker / "run"), *SETTINGS]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the output directory" in err and "Traceback" not in err

    run = tmp_path / "run"  # a run of ours, but its checkpoints/ cannot be created
    RunDir(run).claim()
    (run / "checkpoints").write_text("in the way")
    assert main(["train", str(TINY), "--output-dir", str(run), *SETTINGS]) == 2
    assert "cannot write to the output directory" in capsys.readouterr().err
    assert not (run / "tokenizer").exists()  # refused before the tokenizer was trained


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_directory_fails_before_any_data_work(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o500)
    try:
        assert main(["train", str(TINY), "--output-dir", str(run), *SETTINGS]) == 2
    finally:
        run.chmod(0o700)
    assert "cannot write to the output directory" in capsys.readouterr().err
