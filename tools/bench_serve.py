"""Benchmark ``seq2seq-rnn serve``: closed-loop HTTP clients against one replica, batching on and off.

Not a test. Starts a private local Ray cluster and Serve on 127.0.0.1 only, serves RUN_DIR with
``--max-batch-size`` (default 16) and then with 1 (one request at a time, as OpenNMT-py's server
decodes), and for each runs 1, 4, 16 and 64 concurrent clients, each sending one sentence per
request (drawn in turn from test_2016) and the next when the answer comes. Every level is bounded
by ``--requests`` and ``--seconds``. Prints sentences/s and p50/p95/p99 latency per level, and a
single client's latency against translating the same sentences in this process (same beam, one
torch thread, like the replica). Ratios inside one run are what to read on a shared machine:

    OMP_NUM_THREADS=1 python tools/bench_serve.py runs/multi30k_de_en_rnn --json bench-serve.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TEST_2016 = ROOT / "data" / "multi30k" / "test_2016_flickr.de.gz"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def closed_loop(url: str, sentences: list[str], clients: int, beam: int, requests_cap: int, seconds: float) -> dict:
    """``clients`` threads, each one request in flight; stops at ``requests_cap`` answers or ``seconds``."""
    import requests

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    issued = [0]
    deadline = time.monotonic() + seconds

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with lock:
                    if issued[0] >= requests_cap:
                        return
                    n = issued[0]
                    issued[0] += 1
                body = json.dumps({"text": sentences[n % len(sentences)], "beam_size": beam}).encode()
                start = time.monotonic()
                answer = session.post(url, data=body, timeout=300)
                took = time.monotonic() - start
                with lock:
                    (latencies.append(took) if answer.status_code == 200 else failures.append(answer.text[:200]))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    return {
        "clients": clients,
        "requests": len(latencies),
        "failures": len(failures),
        "seconds": round(wall, 2),
        "sentences_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(1000 * _percentile(latencies, 50), 1),
        "p95_ms": round(1000 * _percentile(latencies, 95), 1),
        "p99_ms": round(1000 * _percentile(latencies, 99), 1),
    }


def _stats(url: str) -> dict[str, Any]:
    import requests

    return requests.get(url.replace("/v1/translate", "/v1/stats"), timeout=60).json()


def in_process_latency(run_dir: Path, sentences: list[str], beam: int, checkpoint: str) -> float:
    """Median seconds to translate one sentence with Translator in this process (one thread)."""
    import torch

    from seq2seq_rnn.inference.translator import Translator

    torch.set_num_threads(1)
    translator = Translator.load(run_dir, checkpoint, "cpu")
    translator.translate(sentences[:2], beam_size=beam)  # warm up
    took = []
    for sentence in sentences:
        start = time.monotonic()
        translator.translate([sentence], beam_size=beam)
        took.append(time.monotonic() - start)
    return statistics.median(took)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", default="best")
    parser.add_argument("--levels", default="1,4,16,64", help="concurrent clients, comma-separated")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--max-batch-size", type=int, default=16, help="the batching configuration")
    parser.add_argument("--batch-wait-ms", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=300, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=30.0, help="at most this long per level")
    parser.add_argument("--single", type=int, default=40, help="sentences for the single-client comparison")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray
    from ray import serve

    from seq2seq_rnn.integrations.ray.serve import build_app

    with gzip.open(TEST_2016, "rt", encoding="utf-8") as handle:
        sentences = [line.strip() for line in handle if line.strip()]
    levels = [int(x) for x in args.levels.split(",")]
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, logging_level=logging.ERROR)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}/v1/translate"
    results: dict[str, Any] = {"run_dir": str(args.run_dir), "beam_size": args.beam_size, "levels": {}}
    try:
        for label, size in [("batching", args.max_batch_size), ("batch size 1", 1)]:
            app = build_app(
                [args.run_dir],
                checkpoint=args.checkpoint,
                max_batch_size=size,
                threads=1,
                batch_wait_ms=args.batch_wait_ms,
                limits={"timeout_s": 600},
            )
            serve.run(app, name="bench", route_prefix="/")
            closed_loop(url, sentences, 2, args.beam_size, 8, 60)  # warm up
            rows = []
            for clients in levels:
                before = _stats(url)
                row = closed_loop(url, sentences, clients, args.beam_size, args.requests, args.seconds)
                after = _stats(url)
                batches = after["batches"] - before["batches"]
                row["mean_batch"] = round((after["sentences"] - before["sentences"]) / max(1, batches), 2)
                row["decode_share"] = round((after["decode_s"] - before["decode_s"]) / row["seconds"], 2)
                rows.append(row)
                print(f"{label:>13} {json.dumps(row)}", flush=True)
            results["levels"][label] = rows
            if size != 1:  # the single client of the batching server, one sentence at a time, same sentences
                single = closed_loop(url, sentences[: args.single], 1, args.beam_size, args.single, 600)
                results["single_client_p50_ms"] = single["p50_ms"]
                local = in_process_latency(args.run_dir, sentences[: args.single], args.beam_size, args.checkpoint)
                results["in_process_p50_ms"] = round(1000 * local, 1)  # measured next to the idle server
        serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    print(_table(results, levels))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _table(results: dict[str, Any], levels: list[int]) -> str:
    on, off = results["levels"]["batching"], results["levels"]["batch size 1"]
    lines = [
        "| clients | batching: sent/s | p50 / p95 / p99 ms | mean batch | batch size 1: sent/s | p50 / p95 / p99 ms "
        "| speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for clients, a, b in zip(levels, on, off, strict=True):
        ratio = a["sentences_per_s"] / b["sentences_per_s"] if b["sentences_per_s"] else float("nan")
        lines.append(
            f"| {clients} | {a['sentences_per_s']} | {a['p50_ms']} / {a['p95_ms']} / {a['p99_ms']} | {a['mean_batch']} "
            f"| {b['sentences_per_s']} | {b['p50_ms']} / {b['p95_ms']} / {b['p99_ms']} | {ratio:.2f}× |"
        )
    single, local = results["single_client_p50_ms"], results["in_process_p50_ms"]
    lines.append(f"\nsingle client p50 {single} ms vs in-process {local} ms: {single / local:.2f}×")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
