"""Trained runs as a Ray Serve application: ``seq2seq-rnn serve`` and :func:`build_app`.

One deployment, :class:`TranslationServer`, with a FastAPI ingress (``/docs`` shows the schema).
Each replica loads every model it serves (one per run directory, chosen by name) through
:class:`~seq2seq_rnn.inference.translator.Translator`, and decodes with the same corpus path as
``seq2seq-rnn translate`` (``seq2seq_rnn.inference.decoding``): same cut, length sort, batch × beam cap
and search, so a sentence served gets the line ``translate`` writes for it.

Batching across requests: every sentence of every request is one item of Serve's
``@serve.batch`` queue. A batch groups its items by model and settings and decodes each group
longest first (``decode_ids`` sorts by length); each caller gets its own sentences back in its
order. A request of many sentences enters the queue one batch-worth at a time, so sentences of
other requests queued meanwhile go into the next batch: nobody waits behind a large request for
more than one batch. Decoding runs in the replica's event loop (beam search is mostly Python, so
a decoding thread would hold the GIL against the loop that takes in the next requests); after a
batch of several sentences the next waits up to ``batch_wait_ms`` to fill, after a lone one 1 ms.

Requests are validated by :mod:`seq2seq_rnn.integrations.serving` (no Ray there) before any
decoding; what a client sends gets a 4xx with a JSON body, never a 500.

    from seq2seq_rnn.integrations.ray.serve import build_app
    app = build_app(["de-en=runs/multi30k_de_en_lstm"], max_batch_size=32)
    serve.run(app)  # or in a Serve config file: import_path: my_module:app
"""

import argparse
import asyncio
import logging
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from seq2seq_rnn.errors import PluginError, Seq2SeqError, UsageError
from seq2seq_rnn.integrations.serving import (
    Limits,
    ModelSpec,
    Parsed,
    RequestError,
    TranslateRequest,
    Translation,
    authorized,
    check_decoding,
    check_model,
    check_runs,
    host_warning,
    key_digest,
    opennmt_response,
    parse_autoscale,
    parse_model_specs,
    parse_opennmt,
    parse_translate,
    read_api_key,
    too_large,
)

log = logging.getLogger("seq2seq_rnn.integrations.ray.serve")
APP_NAME = "seq2seq-rnn"
OPEN_ROUTES = ("/healthz",)  # everything else needs the API key when one is set

_AUTH: dict[str, str | None] = {"digest": None}  # this replica's key digest, set by TranslationServer


class _KeyCheck:
    """ASGI middleware: every route but ``/healthz`` (``/docs`` and ``/openapi.json`` included) needs
    the key, if one is set. Plain ASGI rather than ``@app.middleware``: no extra task per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_ROUTES:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not authorized(header, _AUTH["digest"]):
                error = RequestError(401, "authorization", "Bearer <key>", "missing or wrong API key")
                response = JSONResponse(error.body(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _request_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return JSONResponse(exc.body(), status_code=exc.status)


def _server_error(_request: Request, exc: Exception) -> JSONResponse:
    """Ours, not the client's (a plugin cell that fails, say): a 500 whose body says what failed."""
    body = {"error": {"status": 500, "field": None, "rule": None, "message": f"{type(exc).__name__}: {exc}"}}
    return JSONResponse(body, status_code=500)


app = FastAPI(
    title="seq2seq-rnn",
    summary="Neural machine translation with recurrent encoder-decoder models",
    version="1",
    exception_handlers={RequestError: _request_error, Seq2SeqError: _server_error},
)
app.add_middleware(_KeyCheck)
_TRANSLATE_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": TranslateRequest.model_json_schema()}}}
}
_OPENNMT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
    }
}


class _Item(NamedTuple):
    """One sentence of one request: what a ``@serve.batch`` call carries."""

    model: str
    sentence: str
    beam_size: int
    n_best: int
    max_length: int | None


class _Model(NamedTuple):
    translator: Any  # seq2seq_rnn.inference.translator.Translator
    info: dict[str, Any]


class _naming_plugin_cells:  # noqa: N801  (a context manager, named as cli.py's)
    """A plugin cell failing while serving is a PluginError naming the cell, as in ``translate``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, _tb: Any) -> bool:
        if exc is None or isinstance(exc, Seq2SeqError) or not isinstance(exc, Exception):
            return False
        from seq2seq_rnn.cells.failure import failed_cell

        found = failed_cell(exc, self.model)
        if found is None or not found.is_plugin:
            return False
        raise PluginError(f"{found.describe('while serving', exc)}\n  fix or replace the cell") from exc


def _describe(name: str, run_dir: str, checkpoint: str, translator: Any, quantize: str) -> dict[str, Any]:
    from seq2seq_rnn.run.directory import RunDir

    recipe = translator.recipe
    return {
        "name": name,
        "source_lang": recipe.data.source_lang,
        "target_lang": recipe.data.target_lang,
        "checkpoint": RunDir(Path(run_dir)).checkpoint(checkpoint).name,
        "cells": {"encoder": recipe.model.encoder.cell, "decoder": recipe.model.decoder.cell},
        "attention": recipe.model.attention.type,
        "beam_size": recipe.decode.beam_size,
        "quantize": quantize,
    }


class Server:
    """Serves the models of ``models`` (name → run directory) behind one FastAPI app.

    Wrapped into the Serve deployment :data:`TranslationServer` below, not decorated: Serve copies
    a decorated class by value (with a snapshot of this module's globals), while this one stays
    importable, so replicas run this module as it is (and share ``_AUTH`` with the middleware)."""

    def __init__(
        self,
        models: Sequence[tuple[str, str]],
        checkpoint: str = "best",
        device: str = "auto",
        quantize: str = "none",
        beam_size: int | None = None,
        max_batch_size: int = 16,
        batch_wait_ms: float = 20.0,
        threads: int = 1,
        limits: dict[str, Any] | None = None,
        api_key_digest: str | None = None,
    ) -> None:
        import torch

        from seq2seq_rnn.inference.translator import Translator

        torch.set_num_threads(threads)
        self.limits = Limits.model_validate(limits or {})
        self.beam_size = beam_size
        self.max_batch_size = max_batch_size
        self.models: dict[str, _Model] = {}
        for name, run_dir in models:
            translator = Translator.load(run_dir, checkpoint, device, quantize)
            self.models[name] = _Model(translator, _describe(name, run_dir, checkpoint, translator, quantize))
        self.names = list(self.models)
        self.batch_wait_s = batch_wait_ms / 1000
        self._decode.set_max_batch_size(max_batch_size)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.decoded = {"batches": 0, "sentences": 0, "decode_s": 0.0}
        _AUTH["digest"] = api_key_digest

    # ------------------------------------------------------------- routes
    @app.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        """200 once every model is loaded (the replica is not ready before)."""
        return {"status": "ok", "models": self.names}

    @app.get("/v1/stats")
    async def stats(self) -> dict[str, Any]:
        """What this replica decoded so far: batches, sentences, seconds spent decoding."""
        return {"replica": self.replica, **self.decoded, "max_batch_size": self.max_batch_size}

    @app.get("/v1/models")
    async def list_models(self) -> dict[str, Any]:
        return {"models": [m.info for m in self.models.values()]}

    @app.post("/v1/translate", openapi_extra=_TRANSLATE_BODY)
    async def translate(self, request: Request) -> JSONResponse:
        """``{"text": "..." | ["...", ...], "model"?, "beam_size"?, "n_best"?, "max_length"?, "timeout_s"?}``"""
        parsed = parse_translate(await self._body(request), self.limits, self.names)
        found = await self._translate(parsed)
        model = self.models[parsed.model].info
        if parsed.n_best is None:
            translations: list[Any] = [hyps[0].text if hyps else "" for hyps in found]
        else:
            translations = [[{"text": h.text, "score": h.score} for h in hyps] for hyps in found]
        body = {"model": parsed.model, "checkpoint": model["checkpoint"], "translations": translations}
        return JSONResponse(body, headers={"X-Replica": self.replica})

    @app.post("/translator/translate", openapi_extra=_OPENNMT_BODY)
    async def opennmt_translate(self, request: Request) -> JSONResponse:
        """OpenNMT-py's server route and format (see docs/serving.md for what is compatible)."""
        sources, name = parse_opennmt(await self._body(request), self.limits, self.names)
        parsed = Parsed(sources, name, None, None, None, self.limits.timeout_s)
        return JSONResponse(opennmt_response(sources, await self._translate(parsed)))

    @app.get("/translator/health")
    async def opennmt_health(self) -> dict[str, str]:
        return {"status": "ok"}

    # ----------------------------------------------------------- decoding
    async def _body(self, request: Request) -> bytes:
        """The body, refused (413) as soon as it passes the limit rather than after reading it all,
        and (408) when it has not arrived within ``body_timeout_s``."""
        try:
            return await asyncio.wait_for(self._read_body(request), self.limits.body_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(
                408,
                "body",
                f"sent within {self.limits.body_timeout_s:g} s",
                "the request body did not arrive in time; send it again",
            ) from None

    async def _read_body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large(declared, self.limits)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(f"more than {limit}", self.limits)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _translate(self, parsed: Parsed) -> list[list[Translation]]:
        """The request's sentences through the batch queue, a batch-worth at a time; 504 past the deadline."""
        model = self.models[check_model(parsed.model, self.names)]
        default_beam = self.beam_size or model.translator.recipe.decode.beam_size
        beam, n_best = check_decoding(parsed, default_beam, model.translator.tokenizer.target_vocab_size, self.limits)
        items = [_Item(parsed.model, s, beam, n_best, parsed.max_length) for s in parsed.sentences]

        async def windows() -> list[list[Translation]]:
            out: list[list[Translation]] = []
            for start in range(0, len(items), self.max_batch_size):
                out += await asyncio.gather(
                    *(self._decode(item) for item in items[start : start + self.max_batch_size])
                )
            return out

        try:
            return await asyncio.wait_for(windows(), parsed.timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(
                504, "timeout_s", f"done within {parsed.timeout_s:g} s", "the translation did not finish in time"
            ) from None

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.001)
    async def _decode(self, items: list[_Item]) -> list[list[Translation]]:
        out = self._decode_now(items)  # in the event loop: a decoding thread would hold the GIL against it
        # Clients send their next request when an answer comes: under load, give the answers time to go
        # out and the next requests time to arrive before the next batch starts; alone, do not wait.
        self._decode.set_batch_wait_timeout_s(self.batch_wait_s if len(items) > 1 else min(0.001, self.batch_wait_s))
        return out

    def _decode_now(self, items: list[_Item]) -> list[list[Translation]]:
        """Decode one batch: a group per (model, beam, n-best, length cap), each through ``decode_ids``."""
        from seq2seq_rnn.inference.decoding import decode_ids, encode_sources, with_overrides

        groups: dict[tuple[str, int, int, int | None], list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            groups[(item.model, item.beam_size, item.n_best, item.max_length)].append(i)
        out: list[list[Translation]] = [[] for _ in items]
        start = time.monotonic()
        for (name, beam, n_best, max_length), index in groups.items():
            translator = self.models[name].translator
            decode = with_overrides(translator.recipe.decode, beam, len(index))
            if max_length is not None:  # an absolute cap, EOS included: ratio 0 × source + offset
                decode = decode.model_copy(update={"max_length_ratio": 0.0, "max_length_offset": max_length + 1})
            sentences = [items[i].sentence for i in index]
            with _naming_plugin_cells(translator.recipe.model):
                ids = encode_sources(translator.tokenizer, sentences, translator.max_source_length)
                found = decode_ids(translator.model, ids, decode, translator.device, nbest=n_best)
            for i, hyps in zip(index, found, strict=True):
                texts = translator.tokenizer.decode_target([h.tokens for h in hyps]) if hyps else []
                out[i] = [Translation(t, round(h.score, 6)) for t, h in zip(texts, hyps, strict=True)]
        self.decoded["batches"] += 1
        self.decoded["sentences"] += len(items)
        self.decoded["decode_s"] += time.monotonic() - start
        return out


TranslationServer = serve.deployment(name="TranslationServer", ray_actor_options={"num_cpus": 1})(
    serve.ingress(app)(Server)
)


def build_app(
    models: Sequence[str | Path | tuple[str, str | Path]],
    *,
    checkpoint: str = "best",
    device: str = "auto",
    quantize: str = "none",
    beam_size: int | None = None,
    replicas: int = 1,
    autoscale: tuple[int, int] | None = None,
    max_batch_size: int = 16,
    batch_wait_ms: float = 20.0,
    cpus_per_replica: float = 1.0,
    gpus_per_replica: float = 0.0,
    threads: int | None = None,
    limits: Limits | dict[str, Any] | None = None,
    api_key: str | None = None,
    max_ongoing_requests: int | None = None,
) -> serve.Application:
    """The Serve application translating with ``models``: ``RUN_DIR``, ``NAME=RUN_DIR`` or (name, run_dir).

    Run directories are resolved here; on a cluster they must be at the same path on every node
    (a shared file system). ``api_key`` is kept only as its SHA-256. ``threads``: torch threads per
    replica (default: its CPUs, at least 1).
    """
    specs = [ModelSpec(m[0], Path(m[1]).resolve()) if isinstance(m, tuple) else None for m in models]
    parsed = iter(parse_model_specs([m for m in models if not isinstance(m, tuple)]))
    specs = [s if s is not None else next(parsed) for s in specs]
    check_runs(specs, checkpoint)
    check = Limits.model_validate(limits.model_dump() if isinstance(limits, Limits) else (limits or {}))
    if max_batch_size < 1 or batch_wait_ms < 0:
        raise UsageError(
            f"max_batch_size must be >= 1 and batch_wait_ms >= 0 (got {max_batch_size}, {batch_wait_ms})"
        )
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica},
        # Enough requests per replica to fill a batch several times over; more wait in the proxy.
        "max_ongoing_requests": max_ongoing_requests or max(64, 4 * max_batch_size),
        "graceful_shutdown_timeout_s": check.timeout_s + 5,
        "max_constructor_retry_count": 3,
    }
    if autoscale is not None:
        low, high = autoscale
        options["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": high,
            "target_ongoing_requests": max(2, max_batch_size),
        }
    else:
        options["num_replicas"] = replicas
    return TranslationServer.options(**options).bind(
        [(s.name, str(s.run_dir)) for s in specs],
        checkpoint=checkpoint,
        device=device,
        quantize=quantize,
        beam_size=beam_size,
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms,
        threads=threads or max(1, int(cpus_per_replica)),
        limits=check.model_dump(),
        api_key_digest=key_digest(api_key) if api_key is not None else None,
    )


# ---------------------------------------------------------- seq2seq-rnn serve
def serve_command(args: argparse.Namespace) -> int:
    """``seq2seq-rnn serve``: start (or join) a cluster, run the app, serve until SIGINT/SIGTERM, drain, exit 0."""
    warning = host_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    limits = Limits(
        max_body_bytes=args.max_body_bytes,
        max_sentences=args.max_sentences,
        max_chars=args.max_chars,
        max_beam=args.max_beam,
        max_length=args.max_length,
        timeout_s=args.timeout_s,
        body_timeout_s=args.body_timeout_s,
    )
    application = build_app(
        args.run_dirs,
        checkpoint=args.checkpoint,
        device=args.device,
        quantize=args.quantize,
        beam_size=args.beam_size,
        replicas=args.replicas,
        autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        cpus_per_replica=args.cpus_per_replica,
        gpus_per_replica=args.gpus_per_replica,
        limits=limits,
        api_key=read_api_key(args.api_key_file) if args.api_key_file else None,
    )
    stop = threading.Event()
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address, include_dashboard=args.dashboard, logging_level=logging.WARNING)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(application, name=APP_NAME, route_prefix="/")
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        names = ", ".join(spec.name for spec in parse_model_specs(args.run_dirs))
        print(f"serving {names} at http://{args.host}:{args.port}/v1/translate (docs: /docs)", flush=True)
        stop.wait()
        print("stopping: finishing the requests in flight", file=sys.stderr, flush=True)
        serve.delete(APP_NAME)  # replicas finish what they hold (graceful_shutdown_timeout_s), then stop
        serve.shutdown()
    finally:
        if started:
            ray.shutdown()
    print("stopped", file=sys.stderr, flush=True)
    return 0
