"""Losing a node of a Ray cluster (issue 21, class 9), on Ray's own multi-node harness.

``ray.cluster_utils.Cluster`` starts a head and a second node on this machine, one CPU
each, so the two workers (one CPU each) land one per node. With ``scaling.storage_path``
set (a folder both nodes see), the second node is removed after the first checkpoint;
the worker group restarts from that checkpoint once a node is back (``FailureConfig``
counts it as one failure) and the run finishes with the planned number of steps. Then
the driver itself is killed (SIGKILL) mid-run, and ``train --resume`` finishes the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from seq2seq_rnn.run.checkpoint import load_checkpoint
from tests.helpers import ROOT, TINY

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SMALL = [
    "model.encoder.embedding_size=16", "model.encoder.hidden_size=16", "model.encoder.layers=1",
    "model.decoder.embedding_size=16", "model.decoder.hidden_size=16", "model.decoder.layers=1",
    "data.train.limit=300", "data.validation.limit=20", "tokenizer.vocab_size=200", "train.threads=1",
    "train.log_every=5", "train.max_epochs=200", "train.batch_tokens=600", "train.validation_beam_size=1",
]  # fmt: skip


@pytest.fixture
def two_nodes():
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray._private.utils

    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    # the harness records the head's address in Ray's default temp folder, which it does not create
    Path(ray._private.utils.get_ray_address_file(None)).parent.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "temp_dir": temp, "include_dashboard": False},
    )
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster, second
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _steps(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
    return [json.loads(x)["step"] for x in lines if x.strip()]


def _checkpoints(storage: Path) -> list[Path]:
    return sorted(storage.glob("*/checkpoint*")) if storage.is_dir() else []


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_a_lost_node_restarts_the_workers_from_the_last_checkpoint(two_nodes, tmp_path):
    import ray

    from seq2seq_rnn.config import load_recipe
    from seq2seq_rnn.integrations.ray import train_distributed

    cluster, second = two_nodes
    storage = tmp_path / "storage"
    recipe = load_recipe(
        TINY,
        [*SMALL, "train.max_steps=60", "train.validate_every=10", "scaling.workers=2", "scaling.max_failures=3",
         f"scaling.storage_path={storage}"],
    )  # fmt: skip
    ray.init(address=cluster.address, logging_level="ERROR")
    run = tmp_path / "run"
    outcome: dict = {}

    def drive() -> None:
        try:
            outcome["metrics"] = train_distributed(recipe, run)
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    _wait_for(lambda: _checkpoints(storage) or "error" in outcome, 400, "a first checkpoint")
    assert "error" not in outcome, outcome
    assert not outcome and not (run / "checkpoints" / "last.pt").is_file()  # still training
    cluster.remove_node(second)  # its worker dies with it
    time.sleep(5)
    cluster.add_node(num_cpus=1)  # a node returns: the group restarts from the checkpoint
    driver.join(600)
    assert not driver.is_alive(), "training did not finish"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["metrics"]["step"] == 60
    log = (run / "train.log").read_text()
    assert "resumed from" in log, log[-3000:]  # the group restarted from a checkpoint, not from step 0
    steps = _steps(run)
    assert steps == sorted(steps) and steps[-1] == 60, steps
    assert (run / "checkpoints" / "last.pt").is_file()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] == 60


def test_resume_after_the_driver_is_killed_finishes(two_nodes, tmp_path):
    cluster, _ = two_nodes
    storage, run = tmp_path / "storage", tmp_path / "run"
    args = [sys.executable, "-m", "seq2seq_rnn.cli", "train", str(TINY), "--output-dir", str(run), "--no-test",
            "--address", cluster.address, "--workers", "2"]  # fmt: skip
    for item in [*SMALL, "train.max_steps=60", "train.validate_every=10", f"scaling.storage_path={storage}"]:
        args += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _checkpoints(storage) or driver.poll() is not None, 400, "a first checkpoint")
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and anything it started in its session
        driver.wait()
    time.sleep(3)  # Ray notices the driver is gone and ends its job's workers
    resumed = subprocess.run([*args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in (run / "train.log").read_text()
    steps = _steps(run)
    assert steps[-1] == 60 and steps == sorted(steps), steps
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"] == 60
