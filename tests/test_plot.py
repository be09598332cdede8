"""Training curves, attention heat maps and the attention weights search returns."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pytest
import torch

from seq2seq_rnn.cli import main
from seq2seq_rnn.data.batching import collate
from seq2seq_rnn.data.tokenizer import BOS_ID, EOS_ID
from seq2seq_rnn.errors import ConfigError
from seq2seq_rnn.inference.search import beam_search, greedy_search, max_lengths
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.run.outputs import MANIFEST

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SENTENCES = ["Ein Mann fährt Fahrrad.", "", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch."]


def assert_png(path: Path, min_bytes: int = 5000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > min_bytes, (path, len(data))


def test_plot_overlays_runs(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tiny_run / "metrics.jsonl", other / "metrics.jsonl")
    out = tmp_path / "plots"
    assert main(["plot", str(tiny_run), str(other), "--output", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    for name in ("loss.png", "bleu.png", "lr.png"):
        assert_png(out / name)
        assert str(out / name) in printed


def test_plot_needs_a_run_with_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(tmp_path), "--output", str(tmp_path / "p")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_translate_attention_plot(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    with source.open("rb") as handle:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(handle, encoding="utf-8"))
        assert main(["translate", str(tiny_run), "--attention-plot", str(tmp_path / "att")]) == 0
    lines = capsys.readouterr().out.split("\n")[: len(SENTENCES)]
    assert lines == Translator.load(tiny_run).translate(SENTENCES)  # plots do not change the output
    assert sorted(p.name for p in (tmp_path / "att").iterdir() if p.name != MANIFEST) == [
        "attention-0001.png",
        "attention-0003.png",
        "attention-0004.png",
    ]
    for path in (tmp_path / "att").glob("*.png"):
        assert_png(path)


def test_attention_none_says_so(tiny_run: Path) -> None:
    translator = Translator.load(tiny_run)
    recipe = translator.recipe
    no_attention = recipe.model.attention.model_copy(update={"type": "none"})
    model_cfg = recipe.model.model_copy(update={"attention": no_attention})
    from seq2seq_rnn.model import Seq2Seq

    tok = translator.tokenizer
    model = Seq2Seq.from_config(model_cfg, tok.source_vocab_size, tok.target_vocab_size).eval()
    plain = Translator(recipe.model_copy(update={"model": model_cfg}), tok, model, torch.device("cpu"))
    with pytest.raises(ConfigError, match="'none' has no attention weights"):
        plain.translate_with_attention(SENTENCES)


# -- the weights search returns ---------------------------------------------
def _batch(translator: Translator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = translator.tokenizer.encode_source([s for s in SENTENCES if s])
    batch = collate(ids)
    return batch.src, batch.src_lengths, max_lengths(batch.src_lengths, 1.5, 3)


def test_greedy_attention_rows_are_distributions_over_the_real_source(tiny_run: Path) -> None:
    translator = Translator.load(tiny_run)
    src, lengths, caps = _batch(translator)
    with_att = greedy_search(translator.model, src, lengths, caps=caps, bos=BOS_ID, eos=EOS_ID, attention=True)
    without = greedy_search(translator.model, src, lengths, caps=caps, bos=BOS_ID, eos=EOS_ID)
    assert [h.tokens for h in with_att] == [h.tokens for h in without]
    assert all(h.attention is None for h in without)
    for hyp, n in zip(with_att, lengths.tolist(), strict=True):
        assert hyp.attention is not None
        assert hyp.attention.size(1) == n
        assert len(hyp.tokens) <= hyp.attention.size(0) <= len(hyp.tokens) + 1
        torch.testing.assert_close(hyp.attention.sum(dim=1), torch.ones(hyp.attention.size(0)))


def test_beam_attention_follows_its_hypothesis(tiny_run: Path) -> None:
    translator = Translator.load(tiny_run)
    src, lengths, caps = _batch(translator)
    model = translator.model
    greedy = greedy_search(model, src, lengths, caps=caps, bos=BOS_ID, eos=EOS_ID, attention=True)
    beam1 = beam_search(model, src, lengths, caps=caps, bos=BOS_ID, eos=EOS_ID, beam_size=1, alpha=0.0, attention=True)
    for g, b in zip(greedy, beam1, strict=True):  # beam 1 = greedy, weights included
        assert g.tokens == b[0].tokens
        torch.testing.assert_close(g.attention, b[0].attention)
    beam3 = beam_search(
        model, src, lengths, caps=caps, bos=BOS_ID, eos=EOS_ID, beam_size=3, alpha=1.0, nbest=3, attention=True
    )
    plain3 = beam_search(model, src, lengths, caps=caps, bos=BOS_ID, eos=EOS_ID, beam_size=3, alpha=1.0, nbest=3)
    assert [[h.tokens for h in hs] for hs in beam3] == [[h.tokens for h in hs] for hs in plain3]
    # each hypothesis's weights are those of teacher-forcing its own tokens, one sentence at a time
    for b, hyps in enumerate(beam3):
        n = int(lengths[b])
        memory, state = model.encode(src[b : b + 1, :n], lengths[b : b + 1])
        prev = BOS_ID
        hyp = hyps[0]
        for t in range(hyp.attention.size(0)):
            _, state, attn = model.decode_step(torch.tensor([prev]), state, memory)
            torch.testing.assert_close(attn[0], hyp.attention[t], atol=1e-5, rtol=1e-4)
            prev = hyp.tokens[t] if t < len(hyp.tokens) else EOS_ID


def test_tensorboard_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import TINY, small_overrides

    run = tmp_path / "run"
    args = ["train", str(TINY), "--output-dir", str(run), "--no-test"]
    args += small_overrides(train__max_steps=10, train__tensorboard="true")
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert main(args) == 2
        assert "pip install 'seq2seq_rnn[tensorboard]'" in capsys.readouterr().err
        return
    assert main(args) == 0
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"loss", "lr", "val_bleu", "val_loss"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val_bleu")] == [10]
