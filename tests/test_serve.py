"""The Serve application over real HTTP on 127.0.0.1: one application (2 replicas, 2 models,
an API key) started once for the module on a local Ray cluster."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.helpers import run_cli
from tests.serve_helpers import AUTH, KEY, expected, free_port, same, sources

requests = pytest.importorskip("requests")
pytestmark = pytest.mark.ray


class Server(NamedTuple):
    url: str
    run: Path

    def post(self, body: Any, path: str = "/v1/translate", **kwargs: Any) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(self.url + path, data=data, headers=kwargs.pop("headers", AUTH), timeout=120, **kwargs)


@pytest.fixture(scope="module")
def server(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    ray = pytest.importorskip("ray")
    serve = pytest.importorskip("ray.serve")
    from seq2seq_rnn.integrations.ray.serve import build_app

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    second = tmp_path_factory.mktemp("second") / "v2"
    shutil.copytree(tiny_run, second)
    ray.init(num_cpus=2, _temp_dir=temp, logging_level="ERROR", include_dashboard=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        limits = {"max_sentences": 64, "max_chars": 300, "max_beam": 8, "max_body_bytes": 50_000, "max_length": 100}
        app = build_app([f"tiny={tiny_run}", f"v2={second}"], replicas=2, max_batch_size=8, limits=limits, api_key=KEY)
        serve.run(app, name="test", route_prefix="/")
        yield Server(f"http://127.0.0.1:{port}", tiny_run)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_health_models_and_the_api_key(server: Server) -> None:
    health = requests.get(server.url + "/healthz", timeout=30)  # open: load balancers probe it
    assert health.status_code == 200 and health.json()["models"] == ["tiny", "v2"]
    for headers in [{}, {"Authorization": "Bearer wrong-key-0123456789"}, {"Authorization": KEY}]:
        for method, path in [
            ("get", "/v1/models"),
            ("post", "/v1/translate"),
            ("get", "/docs"),
            ("get", "/openapi.json"),
        ]:
            answer = getattr(requests, method)(server.url + path, headers=headers, json={"text": "Hallo"}, timeout=30)
            assert answer.status_code == 401, (path, headers)
            assert answer.json()["error"]["field"] == "authorization"
    models = requests.get(server.url + "/v1/models", headers=AUTH, timeout=30).json()["models"]
    assert [m["name"] for m in models] == ["tiny", "v2"]
    assert models[0]["source_lang"] == "de" and models[0]["target_lang"] == "en"
    assert models[0]["checkpoint"] == "best.pt" and models[0]["cells"] == {"encoder": "lstm", "decoder": "lstm"}
    schema = requests.get(server.url + "/openapi.json", headers=AUTH, timeout=30).json()
    assert "/v1/translate" in schema["paths"] and "/translator/translate" in schema["paths"]
    body = schema["paths"]["/v1/translate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"text", "model", "beam_size", "n_best", "max_length"} <= set(body["properties"])


@pytest.mark.parametrize("beam", [1, 5])
def test_served_translations_equal_translate_line_for_line(server: Server, beam: int) -> None:
    lines = sources(24)
    proc = run_cli("translate", server.run, "--beam-size", str(beam), stdin="\n".join(lines).encode() + b"\n")
    assert proc.returncode == 0, proc.stderr
    want = proc.stdout.splitlines()
    assert len(want) == len(lines)
    parts = [lines[:10], lines[10:11], lines[11:]]  # three concurrent requests, batched together
    answers: list[Any] = [None] * 3

    def ask(i: int) -> None:
        answers[i] = server.post({"text": parts[i], "beam_size": beam})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    got = [line for a in answers for line in a.json()["translations"]]
    assert got == want
    one = server.post({"text": lines[3], "beam_size": beam}).json()  # a single string: a list of one
    assert one["translations"] == [want[3]] and one["model"] == "tiny" and one["checkpoint"] == "best.pt"


def test_nbest_lists_in_order_with_scores(server: Server) -> None:
    lines = sources(6, skip=30)
    want = expected(server.run, lines, beam=5, nbest=3)
    answer = server.post({"text": lines, "beam_size": 5, "n_best": 3})
    assert answer.status_code == 200, answer.text
    served = answer.json()["translations"]
    for hyps, best in zip(served, want, strict=True):
        assert len(hyps) == 3 and same(hyps, best)
        scores = [h["score"] for h in hyps]
        assert scores == sorted(scores, reverse=True)
    plain = server.post({"text": lines, "beam_size": 5}).json()["translations"]
    assert plain == [hyps[0]["text"] for hyps in served]


def test_32_concurrent_clients_each_get_their_own_sentences_in_order(server: Server) -> None:
    pool = sources(96, skip=40)
    want = expected(server.run, pool, beam=2)  # the recipe's beam
    assert len({round(w[0][1], 3) for w in want}) > 48  # scores tell the sentences apart
    errors: list[str] = []

    def client(i: int) -> None:
        with requests.Session() as session:
            for r in range(3):
                picks = [(i * 7 + r * 13 + k * 29) % len(pool) for k in range(1 + (i + r) % 4)]
                body = json.dumps({"text": [pool[p] for p in picks], "n_best": 1}).encode()
                answer = session.post(server.url + "/v1/translate", data=body, headers=AUTH, timeout=300)
                if answer.status_code != 200:
                    errors.append(f"client {i}: {answer.status_code} {answer.text}")
                    continue
                served = answer.json()["translations"]
                if len(served) != len(picks) or not all(same(s, want[p]) for s, p in zip(served, picks, strict=True)):
                    errors.append(f"client {i} request {r}: {served} != {[want[p] for p in picks]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


BATTERY: list[tuple[str, Any, int, str]] = [  # (path, body, status, the field named)
    ("/v1/translate", b"\xc3\x28", 400, "body"),  # invalid UTF-8
    ("/v1/translate", b'{"text": "Hallo"', 400, "body"),  # malformed JSON
    ("/v1/translate", b"", 400, "body"),
    ("/v1/translate", b"[]", 422, "body"),
    ("/v1/translate", {"text": 42}, 422, "text"),
    ("/v1/translate", {"text": ["gut", None]}, 422, "text[1]"),
    ("/v1/translate", {"text": ""}, 422, "text"),
    ("/v1/translate", {"text": ["gut", " \t "]}, 422, "text[1]"),
    ("/v1/translate", {"text": []}, 422, "text"),
    ("/v1/translate", {"text": ["x"] * 65}, 422, "text"),
    ("/v1/translate", {"text": "x" * 301}, 422, "text"),
    ("/v1/translate", {"text": "Hallo", "beam_size": 9}, 422, "beam_size"),
    ("/v1/translate", {"text": "Hallo", "beam_size": -1}, 422, "beam_size"),
    ("/v1/translate", {"text": "Hallo", "beam_size": 2.5}, 422, "beam_size"),
    ("/v1/translate", {"text": "Hallo", "beam_size": 2, "n_best": 3}, 422, "n_best"),
    ("/v1/translate", {"text": "Hallo", "max_length": 10_000}, 422, "max_length"),
    ("/v1/translate", {"text": "Hallo", "model": "fr-en"}, 404, "model"),
    ("/v1/translate", {"text": "Hallo", "temperature": 0.7}, 422, "temperature"),
    ("/v1/translate", json.dumps({"text": "x" * 60_000}).encode(), 413, "body"),
    ("/v1/translate", b"[" * 100_000 + b"]" * 100_000, 413, "body"),
    ("/v1/translate", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, 400, "body"),  # nested past the JSON parser
    ("/translator/translate", {"src": "Hallo"}, 422, "body"),
    ("/translator/translate", [{"src": "Hallo", "id": 9}], 404, "[].id"),
    ("/translator/translate", [{"src": 1, "id": 0}], 422, "[0].src"),
]


def test_bad_requests_get_a_4xx_naming_the_field_and_the_server_goes_on(server: Server) -> None:
    good = {"text": ["Ein Hund läuft."]}
    want = server.post(good).json()["translations"]
    seen = []
    for path, body, status, field in BATTERY:
        answer = server.post(body, path)
        seen.append((path, answer.status_code, answer.text[:200]))
        assert answer.status_code == status, seen[-1]
        error = answer.json()["error"]
        assert error["field"] == field and error["rule"] and error["message"], seen[-1]
        assert server.post(good).json()["translations"] == want  # the next good request is answered
    # the rest of the HTTP surface answers JSON 4xx too
    assert requests.get(server.url + "/v1/translate", headers=AUTH, timeout=30).status_code == 405
    missing = requests.get(server.url + "/v2/nothing", headers=AUTH, timeout=30)
    assert missing.status_code == 404 and missing.json()
    unknown = server.post({"text": "Hallo", "model": "nope"}).json()["error"]
    assert unknown["models"] == ["tiny", "v2"] and "tiny, v2" in unknown["message"]


def test_a_request_past_its_deadline_gets_a_504(server: Server) -> None:
    answer = server.post({"text": sources(64), "beam_size": 8, "timeout_s": 0.001})
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["field"] == "timeout_s"
    assert server.post({"text": "Ein Hund."}).status_code == 200


def test_two_models_answer_by_name_and_in_opennmt_format(server: Server) -> None:
    lines = sources(3, skip=10)
    first = server.post({"text": lines}).json()
    second = server.post({"text": lines, "model": "v2"}).json()
    assert (first["model"], second["model"]) == ("tiny", "v2")
    assert first["translations"] == second["translations"]  # v2 is a copy of the same run
    onmt = server.post([{"src": s, "id": 1} for s in lines], "/translator/translate")
    assert onmt.status_code == 200, onmt.text
    (items,) = onmt.json()
    assert [i["src"] for i in items] == lines and [i["tgt"] for i in items] == first["translations"]
    assert all(i["n_best"] == 1 and isinstance(i["pred_score"], float) for i in items)
    assert requests.get(server.url + "/translator/health", headers=AUTH, timeout=30).json() == {"status": "ok"}


def _replica_actors(ray: Any) -> list[str]:
    found = ray.util.list_named_actors(all_namespaces=True)
    return sorted(a["name"] for a in found if "TranslationServer" in a["name"] and a["namespace"] == "serve")


@pytest.mark.slow
def test_a_killed_replica_is_replaced_while_the_other_keeps_answering(server: Server) -> None:
    import ray

    before = _replica_actors(ray)
    assert len(before) == 2, before
    lines = sources(16, skip=100)
    stop = threading.Event()
    log: list[tuple[float, int, str]] = []  # (time, status, replica)

    def client(i: int) -> None:
        with requests.Session() as session:
            n = 0
            while not stop.is_set():
                body = json.dumps({"text": [lines[(i + n) % len(lines)]]}).encode()
                n += 1
                try:
                    answer = session.post(server.url + "/v1/translate", data=body, headers=AUTH, timeout=60)
                    log.append((time.monotonic(), answer.status_code, answer.headers.get("X-Replica", "")))
                except requests.RequestException as exc:
                    log.append((time.monotonic(), -1, type(exc).__name__))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(3)
    replicas_before = {r for _, s, r in log if s == 200}
    victim = before[0]
    killed_at = time.monotonic()
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    deadline = killed_at + 240

    def new_replicas() -> set[str]:
        return {r for t, s, r in list(log) if s == 200 and t > killed_at} - replicas_before

    while time.monotonic() < deadline and not new_replicas():  # Serve starts a replacement, which loads the models
        time.sleep(1)
    replaced_at = time.monotonic()
    time.sleep(3)  # both answer
    stop.set()
    for t in threads:
        t.join()
    after = _replica_actors(ray)
    assert len(after) == 2 and victim not in after, after
    failed = [(round(t - killed_at, 2), s, r) for t, s, r in log if s != 200]
    # Only requests the dead replica held (at most one per client) may fail, and only at the kill.
    assert len(failed) <= len(threads), failed
    assert all(0 <= t < 10 for t, _, _ in failed), failed
    late = [s for t, s, _ in log if t > killed_at + 10]
    assert late and all(s == 200 for s in late)
    assert len(replicas_before) == 2  # both answered before the kill
    assert new_replicas(), "the replacement replica answered no request"
    victim_id = victim.rsplit("#", 1)[-1]  # SERVE_REPLICA::<app>#<deployment>#<replica id>
    assert victim_id in replicas_before
    survivor = replicas_before - {victim_id}
    assert {r for t, s, r in log if s == 200 and t > replaced_at} == survivor | new_replicas()
