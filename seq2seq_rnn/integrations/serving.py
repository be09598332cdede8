"""The serving API without Ray: request validation, limits, error bodies, model names, API keys.

``seq2seq-rnn serve`` runs a Ray Serve application (:mod:`seq2seq_rnn.integrations.ray.serve`);
everything here decides what a request means, or why it is refused, before any decoding, and
imports neither Ray nor torch, so it is unit-tested in milliseconds. A refusal is a
:class:`RequestError`: an HTTP status and a JSON body naming the field and the rule broken, e.g.
``{"error": {"status": 422, "field": "text[2]", "rule": "not empty or whitespace only", ...}}``.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import ipaddress
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from seq2seq_rnn.errors import ConfigError, UsageError

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Limits(BaseModel):
    """Server-side maxima on what one request may ask for (``seq2seq-rnn serve --max-…``).

    They bound what a client can make a replica hold or compute: body bytes, sentences,
    characters per sentence, beam width, n-best size, output length and time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(default=1_000_000, ge=64, le=1_000_000_000)
    max_sentences: int = Field(default=64, ge=1, le=100_000)
    max_chars: int = Field(default=1_000, ge=1, le=1_000_000)
    max_beam: int = Field(default=16, ge=1, le=256)
    max_length: int = Field(default=256, ge=1, le=10_000)
    timeout_s: float = Field(default=60.0, gt=0.0, le=3_600.0)
    # A body that does not arrive in time (a slow client, or a request the proxy re-routed from a
    # replica that died while it was being read) is answered 408 instead of holding the handler.
    body_timeout_s: float = Field(default=5.0, gt=0.0, le=600.0)


class RequestError(Exception):
    """A request refused before decoding: ``status`` and a JSON body naming ``field`` and ``rule``."""

    def __init__(self, status: int, field: str, rule: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.field, self.rule, self.message, self.extra = status, field, rule, message, extra

    def body(self) -> dict[str, Any]:
        error = {"status": self.status, "field": self.field, "rule": self.rule, "message": self.message}
        return {"error": {**error, **self.extra}}


class TranslateRequest(BaseModel):
    """``POST /v1/translate``. ``n_best`` given (even 1) answers lists of ``{text, score}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | list[str] = Field(description="one sentence, or a list translated in order")
    model: str | None = Field(default=None, description="a name from GET /v1/models (default: the first)")
    beam_size: int | None = Field(default=None, ge=1, description="default: the server's or the recipe's")
    n_best: int | None = Field(default=None, ge=1, description="hypotheses per sentence, at most beam_size")
    max_length: int | None = Field(default=None, ge=1, description="longest translation, in subwords")
    timeout_s: float | None = Field(default=None, gt=0.0, description="a deadline shorter than the server's")


class Translation(NamedTuple):
    text: str
    score: float


class Parsed(NamedTuple):
    """A validated translation request; ``beam_size`` None = the model's default."""

    sentences: list[str]
    model: str
    beam_size: int | None
    n_best: int | None
    max_length: int | None
    timeout_s: float


# ------------------------------------------------------------------ requests
def parse_body(body: bytes, limits: Limits) -> Any:
    """Bytes → JSON value; invalid UTF-8 and malformed JSON are 400s that say where."""
    if len(body) > limits.max_body_bytes:
        raise too_large(len(body), limits)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "body", "UTF-8", f"the body is not valid UTF-8 at byte {exc.start}") from None
    if not text.strip():
        raise RequestError(400, "body", "JSON", 'the body is empty; send a JSON object such as {"text": "..."}')
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise RequestError(400, "body", "JSON", f"malformed JSON at {where}: {exc.msg}") from None
    except RecursionError:
        raise RequestError(400, "body", "JSON", "JSON nested too deeply") from None


def too_large(size: int | str, limits: Limits) -> RequestError:
    return RequestError(
        413, "body", f"at most {limits.max_body_bytes} bytes", f"the body ({size} bytes) is larger than the limit"
    )


def parse_translate(body: bytes, limits: Limits, names: Sequence[str]) -> Parsed:
    """A ``/v1/translate`` body checked against the limits and the served model names."""
    value = parse_body(body, limits)
    if not isinstance(value, dict):
        raise RequestError(422, "body", "a JSON object", f"expected a JSON object, got {_json_type(value)}")
    try:
        request = TranslateRequest.model_validate(value)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None
    single = isinstance(request.text, str)
    sentences = [request.text] if single else list(request.text)  # type: ignore[list-item]
    check_sentences(sentences, limits, "text", single)
    model = check_model(request.model, names)
    if request.beam_size is not None and request.beam_size > limits.max_beam:
        raise RequestError(
            422, "beam_size", f"at most {limits.max_beam}", f"beam_size {request.beam_size} is above the maximum"
        )
    if request.n_best is not None and request.n_best > (request.beam_size or limits.max_beam):
        what = f"beam_size ({request.beam_size})" if request.beam_size else f"the maximum beam ({limits.max_beam})"
        raise RequestError(422, "n_best", "at most beam_size", f"n_best {request.n_best} is larger than {what}")
    if request.max_length is not None and request.max_length > limits.max_length:
        rule = f"at most {limits.max_length}"
        raise RequestError(422, "max_length", rule, f"max_length {request.max_length} is above the maximum")
    timeout = min(request.timeout_s or limits.timeout_s, limits.timeout_s)
    return Parsed(sentences, model, request.beam_size, request.n_best, request.max_length, timeout)


def check_sentences(sentences: list[str], limits: Limits, field: str, single: bool = False) -> None:
    if not sentences:
        raise RequestError(422, field, "at least one sentence", "the list of sentences is empty")
    if len(sentences) > limits.max_sentences:
        rule = f"at most {limits.max_sentences} sentences"
        raise RequestError(422, field, rule, f"{len(sentences)} sentences in one request; split it")
    for i, sentence in enumerate(sentences):
        where = field if single else f"{field}[{i}]"
        if not sentence.strip():
            raise RequestError(422, where, "not empty or whitespace only", "nothing to translate")
        if len(sentence) > limits.max_chars:
            rule = f"at most {limits.max_chars} characters"
            raise RequestError(422, where, rule, f"{len(sentence)} characters in one sentence")
        if "\x00" in sentence:
            raise RequestError(422, where, "no NUL characters", "the sentence contains a NUL character")


def check_model(name: str | None, names: Sequence[str], field: str = "model") -> str:
    """The served model called ``name`` (None = the first); another name is a 404 listing them."""
    if name is None:
        return names[0]
    if name not in names:
        raise RequestError(
            404,
            field,
            "a served model",
            f"no model named {name[:80]!r}; served: {', '.join(names)}",
            models=list(names),
        )
    return name


def check_decoding(parsed: Parsed, default_beam: int, vocab_size: int, limits: Limits) -> tuple[int, int]:
    """(beam, n_best) for one model: its default beam fills in, and a beam wider than its
    target vocabulary (which ``translate`` refuses too) is a 422 rather than a decoding error."""
    beam = parsed.beam_size or min(default_beam, limits.max_beam)
    n_best = parsed.n_best or 1
    if beam > vocab_size:
        raise RequestError(
            422, "beam_size", f"at most the target vocabulary ({vocab_size})", f"beam_size {beam} could never be filled"
        )
    if n_best > beam:
        raise RequestError(422, "n_best", "at most beam_size", f"n_best {n_best} is larger than the beam ({beam})")
    return beam, n_best


def validation_error(exc: pydantic.ValidationError) -> RequestError:
    """pydantic's deepest complaint as a 422 naming the field (``text[2]``) and the rule."""
    errors = exc.errors(include_url=False)
    first = max(errors, key=lambda e: len(e["loc"]))  # inside a list beats "not a string" of the union
    parts = [p for p in first["loc"] if p not in _UNION_TAGS]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "body"
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(TranslateRequest.model_fields)
        return RequestError(422, field, "a known field", f"unknown field {field!r}; known fields: {allowed}")
    if field == "text":  # neither branch of the union
        return RequestError(422, field, "a string or a list of strings", _got(first))
    return RequestError(422, field, first["msg"], f"{field}: {first['msg']} ({_got(first)})")


_UNION_TAGS = {"str", "list[str]"}  # pydantic names the branch of ``str | list[str]`` in an error's location


def _got(error: Any) -> str:
    value = error.get("input")
    return f"got {_json_type(value)}" if not isinstance(value, dict) else "got an object"


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# ------------------------------------------------ OpenNMT-py's request format
def parse_opennmt(body: bytes, limits: Limits, names: Sequence[str]) -> tuple[list[str], str]:
    """``POST /translator/translate`` as OpenNMT-py's server takes it: ``[{"src": "...", "id": N}, ...]``.

    ``id`` chooses the model as in OpenNMT-py (the same for every item): with one model served any id
    is accepted; with several, id N is the Nth ``RUN_DIR`` given (from 0)."""
    value = parse_body(body, limits)
    if not isinstance(value, list):
        raise RequestError(
            422, "body", "a JSON list", f"expected a list of {{src, id}} objects, got {_json_type(value)}"
        )
    sources: list[str] = []
    ids: set[int] = set()
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise RequestError(422, f"[{i}]", "an object", f'expected {{"src": ..., "id": N}}, got {_json_type(item)}')
        src, model_id = item.get("src"), item.get("id", 0)
        if not isinstance(src, str):
            raise RequestError(422, f"[{i}].src", "a string", f"got {_json_type(src)}")
        if isinstance(model_id, bool) or not isinstance(model_id, int):
            raise RequestError(422, f"[{i}].id", "an integer model id", f"got {_json_type(model_id)}")
        sources.append(src)
        ids.add(model_id)
    check_sentences(sources, limits, "src")
    if len(ids) > 1:
        raise RequestError(422, "[].id", "one model per request", f"several model ids in one request: {sorted(ids)}")
    model_id = ids.pop()
    if len(names) == 1:
        return sources, names[0]
    if not 0 <= model_id < len(names):
        served = ", ".join(f"{i}={n}" for i, n in enumerate(names))
        raise RequestError(404, "[].id", "a served model id", f"no model with id {model_id}; served: {served}")
    return sources, names[model_id]


def opennmt_response(sources: Sequence[str], found: Sequence[Sequence[Translation]]) -> list[list[dict[str, Any]]]:
    """OpenNMT-py's answer: one list holding, per source and hypothesis, src, tgt, n_best and pred_score."""
    return [
        [
            {"src": src, "tgt": hyp.text, "n_best": len(hyps), "pred_score": hyp.score}
            for src, hyps in zip(sources, found, strict=True)
            for hyp in hyps
        ]
    ]


# ----------------------------------------------------------- the command line
class ModelSpec(NamedTuple):
    name: str
    run_dir: Path


def parse_model_specs(values: Sequence[str | Path]) -> list[ModelSpec]:
    """``RUN_DIR`` or ``NAME=RUN_DIR`` → (name, absolute run directory); names default to the folder's name."""
    specs: list[ModelSpec] = []
    for value in values:
        text = str(value)
        name, sep, path = text.partition("=")
        if not sep or "/" in name or not MODEL_NAME.fullmatch(name):
            name, path = Path(text).resolve().name, text
        if not MODEL_NAME.fullmatch(name):
            raise UsageError(
                f"model name {name!r} (from {text!r}): use letters, digits, '.', '_' or '-' (at most 64), "
                "e.g. de-en=runs/multi30k_de_en_lstm"
            )
        specs.append(ModelSpec(name, Path(path).expanduser().resolve()))
    seen = [s.name for s in specs]
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise UsageError(f"two models named {duplicates[0]!r}; name them apart with NAME=RUN_DIR")
    return specs


def parse_autoscale(text: str) -> tuple[int, int]:
    """``MIN:MAX`` replicas, 0 <= MIN <= MAX, MAX >= 1."""
    low, sep, high = text.partition(":")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        lo = hi = -1
    if not sep or lo < 0 or hi < 1 or lo > hi:
        raise UsageError(f"--autoscale {text!r}: expected MIN:MAX replicas with 0 <= MIN <= MAX and MAX >= 1, e.g. 1:4")
    return lo, hi


def host_warning(host: str) -> str | None:
    """A warning when ``host`` is not a loopback address: the API is then reachable from the network."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (
        f"warning: --host {host} opens the translation API to the network; anyone who reaches this port can use "
        "it (set --api-key-file, and put TLS in front of it)"
    )


def read_api_key(path: Path) -> str:
    """The key in ``path`` (surrounding whitespace removed); an empty or short key is refused."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--api-key-file {path}: cannot read it ({exc})") from None
    if len(key) < 16:
        raise UsageError(f"--api-key-file {path}: the key has {len(key)} characters; use at least 16 (random)")
    return key


def key_digest(key: str) -> str:
    """What the server keeps of the key: its SHA-256, so the key itself never enters Serve's config."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def authorized(header: str | None, digest: str | None) -> bool:
    """Whether an ``Authorization`` header carries the key; compared in constant time (digest to digest)."""
    if digest is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    return hmac.compare_digest(key_digest(given.strip()), digest)


def require_serve() -> None:
    """A clear error when Ray Serve or FastAPI is absent."""
    missing = [m for m in ("ray", "fastapi") if importlib.util.find_spec(m) is None]
    if not missing and importlib.util.find_spec("ray.serve") is None:
        missing = ["ray.serve"]
    if missing:
        raise ConfigError(
            f"seq2seq-rnn serve needs Ray Serve ({', '.join(missing)} not installed). "
            "Install it with: pip install 'seq2seq_rnn[serve]'"
        )


def check_runs(specs: Sequence[ModelSpec], checkpoint: str) -> None:
    """Refuse a missing run or checkpoint with our message, before Ray starts (not after Serve's retries)."""
    from seq2seq_rnn.errors import CheckpointError
    from seq2seq_rnn.run.directory import RunDir

    for spec in specs:
        run = RunDir(spec.run_dir)
        run.load_recipe()
        path = run.checkpoint(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"model {spec.name!r}: no checkpoint {path} (train the run, or pass --checkpoint)")


def run_serve(args: Any) -> int:
    """``seq2seq-rnn serve``: the arguments and runs checked, then what to install if Serve is absent,
    then the server (importing Ray takes seconds; a typo should not wait for it)."""
    if args.autoscale:
        parse_autoscale(args.autoscale)
    if args.api_key_file:
        read_api_key(args.api_key_file)
    check_runs(parse_model_specs(args.run_dirs), args.checkpoint)
    require_serve()
    from seq2seq_rnn.integrations.ray.serve import serve_command

    return serve_command(args)
