"""``seq2seq-rnn serve`` as a user runs it: a subprocess with its own local cluster, real HTTP,
one replica batching 4 sentences; SIGTERM drains the requests in flight and exits 0."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.helpers import ROOT, cli_env
from tests.serve_helpers import free_port, sources

requests = pytest.importorskip("requests")
pytestmark = [pytest.mark.ray, pytest.mark.slow]


class Served(NamedTuple):
    url: str
    proc: subprocess.Popen[str]
    stdout: list[str]
    stderr: Path


@pytest.fixture(scope="module")
def served(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pytest.importorskip("ray.serve")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    stderr = tmp_path_factory.mktemp("serve-cli") / "stderr.txt"
    command = [sys.executable, "-m", "seq2seq_rnn.cli", "serve", f"tiny={tiny_run}", "--port", str(port)]
    command += ["--max-batch-size", "4", "--timeout-s", "120"]
    env = cli_env(RAY_AUTH_MODE="disabled", RAY_TMPDIR=temp)
    with stderr.open("w") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving"):
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(300):
            pytest.fail(f"no 'serving' line in 300 s; stderr:\n{stderr.read_text()[-3000:]}")
        yield Served(f"http://127.0.0.1:{port}", proc, lines, stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def _post(url: str, body: Any) -> Any:
    return requests.post(url + "/v1/translate", data=json.dumps(body).encode(), timeout=300)


def test_prints_the_url_and_a_large_request_does_not_starve_a_small_one(served: Served) -> None:
    assert served.stdout[0].strip() == f"serving tiny at {served.url}/v1/translate (docs: /docs)"
    assert requests.get(served.url + "/healthz", timeout=30).json() == {"status": "ok", "models": ["tiny"]}
    done: dict[str, float] = {}

    def big() -> None:
        answer = _post(served.url, {"text": sources(64), "beam_size": 5})
        assert answer.status_code == 200 and len(answer.json()["translations"]) == 64
        done["big"] = time.monotonic()

    thread = threading.Thread(target=big)
    start = time.monotonic()
    thread.start()
    time.sleep(0.2)  # the big request's first batch is being decoded
    sent = time.monotonic()
    small = _post(served.url, {"text": "Ein Hund.", "beam_size": 5})
    done["small"] = time.monotonic()
    thread.join()
    assert small.status_code == 200
    # 64 sentences at 4 per batch are 16 batches: the small one waits for about one, not for all of them.
    # Its wait is counted from when it was sent (the 0.2 s head start is the big request's, not its own).
    timings = {"small_wait": round(done["small"] - sent, 2), "big": round(done["big"] - start, 2)}
    assert done["small"] < done["big"], timings
    assert done["small"] - sent < (done["big"] - start) / 2, timings


def test_sigterm_drains_the_requests_in_flight_and_exits_0(served: Served) -> None:
    lines = sources(16, skip=50)
    answers: list[Any] = []
    finished: list[float] = []

    def client() -> None:
        answers.append(_post(served.url, {"text": lines, "beam_size": 5}))
        finished.append(time.monotonic())

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    signalled = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    assert served.proc.wait(120) == 0, served.stderr.read_text()[-3000:]
    assert [a.status_code for a in answers] == [200] * 6, [a.text[:300] for a in answers]
    assert all(len(a.json()["translations"]) == 16 for a in answers)
    assert max(finished) > signalled  # some were still in flight when the signal came: drained, not dropped
    err = served.stderr.read_text()
    assert "stopping: finishing the requests in flight" in err and "stopped" in err
    with pytest.raises(requests.ConnectionError):
        requests.get(served.url + "/healthz", timeout=10)
