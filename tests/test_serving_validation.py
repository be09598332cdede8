"""The serving API's validation layer, without Ray: every refusal names its field and rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq_rnn.errors import UsageError
from seq2seq_rnn.integrations.serving import (
    Limits,
    RequestError,
    Translation,
    authorized,
    check_decoding,
    host_warning,
    key_digest,
    opennmt_response,
    parse_autoscale,
    parse_model_specs,
    parse_opennmt,
    parse_translate,
    read_api_key,
)

LIMITS = Limits(max_body_bytes=2_000, max_sentences=4, max_chars=50, max_beam=8, max_length=100, timeout_s=30)
NAMES = ["de-en", "v2"]


def _refused(body: bytes | str, **kwargs: object) -> RequestError:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    with pytest.raises(RequestError) as caught:
        parse_translate(raw, kwargs.get("limits", LIMITS), NAMES)  # type: ignore[arg-type]
    json.dumps(caught.value.body())  # always serialisable
    return caught.value


BAD = [  # (body, status, field, words in the rule or message)
    (b"{", 400, "body", "malformed JSON"),
    (b"\xff\xfe{}", 400, "body", "UTF-8"),
    (b"", 400, "body", "empty"),
    (b"[1, 2]", 422, "body", "JSON object"),
    (b'"text"', 422, "body", "JSON object"),
    (b'{"text": 3}', 422, "text", "a string or a list of strings"),
    (b'{"text": null}', 422, "text", "a string or a list of strings"),
    (b'{"text": ["a", 3]}', 422, "text[1]", "string"),
    (b'{"text": []}', 422, "text", "at least one sentence"),
    (b'{"text": "   "}', 422, "text", "whitespace"),
    (b'{"text": ["ok", "\\t\\n"]}', 422, "text[1]", "whitespace"),
    (b'{"text": ["a", "b", "c", "d", "e"]}', 422, "text", "at most 4 sentences"),
    (json.dumps({"text": "x" * 51}).encode(), 422, "text", "at most 50 characters"),
    (b'{"text": "a\\u0000b"}', 422, "text", "NUL"),
    (b'{"text": "a", "beam_size": 9}', 422, "beam_size", "at most 8"),
    (b'{"text": "a", "beam_size": 0}', 422, "beam_size", "greater than or equal to 1"),
    (b'{"text": "a", "beam_size": "5"}', 422, "beam_size", "integer"),
    (b'{"text": "a", "beam_size": true}', 422, "beam_size", "integer"),
    (b'{"text": "a", "beam_size": 2, "n_best": 3}', 422, "n_best", "at most beam_size"),
    (b'{"text": "a", "max_length": 101}', 422, "max_length", "at most 100"),
    (b'{"text": "a", "model": "fr-en"}', 404, "model", "de-en, v2"),
    (b'{"text": "a", "model": 1}', 422, "model", "string"),
    (b'{"text": "a", "beam": 5}', 422, "beam", "unknown field"),
    (b'{"text": "a", "timeout_s": -1}', 422, "timeout_s", "greater than 0"),
    (json.dumps({"text": "a" * 3000}).encode(), 413, "body", "at most 2000 bytes"),
]


@pytest.mark.parametrize(("body", "status", "field", "words"), BAD)
def test_a_bad_request_is_refused_naming_field_and_rule(body: bytes, status: int, field: str, words: str) -> None:
    error = _refused(body)
    assert (error.status, error.field) == (status, field), error.body()
    text = json.dumps(error.body())
    assert words.lower() in text.lower()
    assert set(error.body()["error"]) >= {"status", "field", "rule", "message"}


def test_unknown_model_lists_the_served_names() -> None:
    assert _refused(b'{"text": "a", "model": "x"}').body()["error"]["models"] == NAMES


def test_good_requests_are_parsed() -> None:
    one = parse_translate(b'{"text": " Ein Hund. "}', LIMITS, NAMES)
    assert (one.sentences, one.model, one.beam_size, one.n_best) == ([" Ein Hund. "], "de-en", None, None)
    assert one.timeout_s == 30
    many = parse_translate(
        json.dumps({"text": ["a", "b"], "model": "v2", "beam_size": 5, "n_best": 5, "timeout_s": 99}).encode(),
        LIMITS,
        NAMES,
    )
    assert (many.sentences, many.model, many.beam_size, many.n_best) == (["a", "b"], "v2", 5, 5)
    assert many.timeout_s == 30  # a client may shorten the server's deadline, never lengthen it
    assert parse_translate('{"text": "Grüße 日本"}'.encode(), LIMITS, NAMES).sentences == ["Grüße 日本"]


def test_decoding_defaults_and_the_vocabulary_cap() -> None:
    parsed = parse_translate(b'{"text": "a"}', LIMITS, NAMES)
    assert check_decoding(parsed, default_beam=5, vocab_size=200, limits=LIMITS) == (5, 1)
    assert check_decoding(parsed, default_beam=50, vocab_size=200, limits=LIMITS) == (8, 1)  # the server's maximum
    wide = parse_translate(b'{"text": "a", "beam_size": 8}', LIMITS, NAMES)
    with pytest.raises(RequestError, match="could never be filled") as caught:
        check_decoding(wide, default_beam=5, vocab_size=6, limits=LIMITS)
    assert caught.value.field == "beam_size"
    nbest = parse_translate(b'{"text": "a", "n_best": 3}', LIMITS, NAMES)
    with pytest.raises(RequestError, match="larger than the beam"):
        check_decoding(nbest, default_beam=1, vocab_size=200, limits=LIMITS)


def test_opennmt_format() -> None:
    sources, model = parse_opennmt(b'[{"src": "Ein Hund.", "id": 100}, {"src": "Zwei.", "id": 100}]', LIMITS, ["x"])
    assert (sources, model) == (["Ein Hund.", "Zwei."], "x")  # one model: any id, as clients use 100
    assert parse_opennmt(b'[{"src": "a", "id": 1}]', LIMITS, NAMES) == (["a"], "v2")
    for body, field in [
        (b'{"src": "a"}', "body"),
        (b"[3]", "[0]"),
        (b'[{"id": 1}]', "[0].src"),
        (b'[{"src": "a", "id": "1"}]', "[0].id"),
        (b'[{"src": "a", "id": 0}, {"src": "b", "id": 1}]', "[].id"),
        (b'[{"src": "a", "id": 7}]', "[].id"),
        (b'[{"src": " ", "id": 0}]', "src[0]"),
        (b"[]", "src"),
    ]:
        with pytest.raises(RequestError) as caught:
            parse_opennmt(body, LIMITS, NAMES)
        assert caught.value.field == field, (body, caught.value.body())
    out = opennmt_response(["a", "b"], [[Translation("x", -1.0), Translation("y", -2.0)], [Translation("z", -0.5)]])
    assert out == [
        [
            {"src": "a", "tgt": "x", "n_best": 2, "pred_score": -1.0},
            {"src": "a", "tgt": "y", "n_best": 2, "pred_score": -2.0},
            {"src": "b", "tgt": "z", "n_best": 1, "pred_score": -0.5},
        ]
    ]


def test_model_names(tmp_path: Path) -> None:
    specs = parse_model_specs([tmp_path / "runs" / "lstm", f"de-en={tmp_path}/gru", "x=runs/a=b"])
    assert [s.name for s in specs] == ["lstm", "de-en", "x"]
    assert specs[2].run_dir == Path("runs/a=b").resolve()  # split at the first '='
    assert specs[1].run_dir == (tmp_path / "gru").resolve() and specs[0].run_dir.is_absolute()
    with pytest.raises(UsageError, match="two models named 'x'"):
        parse_model_specs([f"x={tmp_path}/a", f"x={tmp_path}/b"])
    with pytest.raises(UsageError, match="model name"):
        parse_model_specs([tmp_path / "bad name!"])


def test_autoscale_and_host() -> None:
    assert parse_autoscale("0:4") == (0, 4)
    for bad in ["4", "3:2", "a:b", "0:0", "-1:2"]:
        with pytest.raises(UsageError, match="MIN:MAX"):
            parse_autoscale(bad)
    assert host_warning("127.0.0.1") is None and host_warning("::1") is None and host_warning("localhost") is None
    assert "open" in (host_warning("0.0.0.0") or "") and host_warning("192.168.1.5")


def test_api_key(tmp_path: Path) -> None:
    key = "s3cr3t-key-0123456789"
    digest = key_digest(key)
    assert key not in digest
    assert authorized(f"Bearer {key}", digest) and authorized(f"bearer {key}", digest)
    for header in [None, "", key, f"Bearer {key}x", f"Basic {key}", "Bearer ", f"Bearer {key[:-1]}"]:
        assert not authorized(header, digest), header
    assert authorized(None, None)  # no key set: open
    path = tmp_path / "key"
    path.write_text(f"  {key}\n", encoding="utf-8")
    assert read_api_key(path) == key
    path.write_text("short", encoding="utf-8")
    with pytest.raises(UsageError, match="at least 16"):
        read_api_key(path)
    with pytest.raises(UsageError, match="cannot read"):
        read_api_key(tmp_path / "missing")


def test_the_validation_layer_imports_neither_ray_nor_torch() -> None:
    code = "import sys, seq2seq_rnn.integrations.serving; print(sorted({'ray', 'torch', 'fastapi'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_without_ray_serve_the_command_says_what_to_install(monkeypatch: pytest.MonkeyPatch, cli) -> None:
    import importlib.util

    from seq2seq_rnn.errors import ConfigError
    from seq2seq_rnn.integrations import serving

    real = importlib.util.find_spec
    monkeypatch.setattr(serving.importlib.util, "find_spec", lambda name: None if name == "fastapi" else real(name))
    with pytest.raises(ConfigError, match=r"pip install 'seq2seq_rnn\[serve\]'"):
        serving.require_serve()
    proc = cli("serve", "--help")
    assert proc.returncode == 0 and "--max-batch-size" in proc.stdout and "--api-key-file" in proc.stdout
