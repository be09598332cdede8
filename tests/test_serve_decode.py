"""The serving replica's batch step without a cluster: a batch mixing requests' settings and
models decodes each sentence as the public inference API does, and a plugin cell failing while
serving is named as in ``translate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seq2seq_rnn.components import CELLS
from seq2seq_rnn.config import load_recipe
from seq2seq_rnn.errors import PluginError
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.training import Trainer
from tests.helpers import TINY
from tests.serve_helpers import sources
from tests.test_no_work_lost import SETTINGS, FlakyCell

serve_module = pytest.importorskip("seq2seq_rnn.integrations.ray.serve", exc_type=ImportError)


def _server(models: dict[str, Translator]) -> object:
    """The deployment's class with its models, as a replica holds them (no Serve around it)."""
    server = serve_module.Server.__new__(serve_module.Server)
    server.models = {name: serve_module._Model(t, {}) for name, t in models.items()}
    server.decoded = {"batches": 0, "sentences": 0, "decode_s": 0.0}
    return server


def test_a_mixed_batch_decodes_each_sentence_with_its_own_settings(tiny_run: Path) -> None:
    import torch

    torch.set_num_threads(1)
    translator = Translator.load(tiny_run)
    server = _server({"a": translator, "b": translator})
    lines = sources(9)
    settings = [("a", 1, 1, None), ("b", 5, 3, None), ("a", 5, 1, None), ("b", 2, 2, None), ("a", 1, 1, 3)]
    items = [
        serve_module._Item(*settings[i % len(settings)][:1], s, *settings[i % len(settings)][1:])
        for i, s in enumerate(lines)
    ]
    out = server._decode_now(items)
    assert server.decoded["batches"] == 1 and server.decoded["sentences"] == len(items)
    for item, got in zip(items, out, strict=True):
        if item.max_length is not None:
            assert len(got) == 1 and len(got[0].text.split()) <= item.max_length
            continue
        want = translator.translate_nbest([item.sentence], beam_size=item.beam_size, nbest=item.n_best)[0]
        texts = [translator.tokenizer.decode_target([h.tokens])[0] for h in want]
        assert [g.text for g in got] == texts
        assert [g.score for g in got] == pytest.approx([h.score for h in want], abs=1e-4)
        if item.n_best == 1:
            assert got[0].text == translator.translate([item.sentence], beam_size=item.beam_size)[0]


def test_a_plugin_cell_failing_while_serving_is_named(tmp_path: Path) -> None:
    CELLS.register("flaky_serve_cell", FlakyCell)
    try:
        recipe = load_recipe(TINY, [*SETTINGS[1::2], "model.decoder.cell=flaky_serve_cell", "train.max_steps=4"])
        Trainer(recipe, tmp_path / "run").fit()
        server = _server({"m": Translator.load(tmp_path / "run", device="cpu")})
        FlakyCell.FAIL[0] = True
        with pytest.raises(PluginError) as caught:
            server._decode_now([serve_module._Item("m", "Ein Hund läuft.", 2, 1, None)])
    finally:
        FlakyCell.FAIL[0] = False
        CELLS.unregister("flaky_serve_cell")
    message = str(caught.value)
    assert "cell 'flaky_serve_cell' (model.decoder.cell, from" in message and "while serving" in message
    assert "shapes in the failing call: x (" in message


def test_odd_but_valid_sentences_are_answered(tiny_run: Path) -> None:
    """What passes validation never fails decoding: invisible-only text, emoji, a 1,000-letter word."""
    from seq2seq_rnn.integrations.serving import Limits, parse_translate

    odd = ["\u200b\u200b", "🙂🙂🙂", "a" * 1000, "Ein\tHund\r\nläuft.", "日本語のテキスト", "\u0301\u0301"]
    body = json.dumps({"text": odd}, ensure_ascii=False)
    parsed = parse_translate(body.encode("utf-8"), Limits(), ["m"])
    assert parsed.sentences == odd
    server = _server({"m": Translator.load(tiny_run)})
    for beam, n_best in [(1, 1), (5, 3)]:
        out = server._decode_now([serve_module._Item("m", s, beam, n_best, None) for s in odd])
        assert len(out) == len(odd) and all(isinstance(h.text, str) for hyps in out for h in hyps)
