"""Checkpoint averaging is the mean; an ensemble of one is the model itself."""

from __future__ import annotations

import pytest
import torch

from seq2seq_rnn.config import ModelConfig
from seq2seq_rnn.errors import CheckpointError
from seq2seq_rnn.inference.ensemble import Ensemble, average_state_dicts
from seq2seq_rnn.inference.search import beam_search, greedy_search, max_lengths
from seq2seq_rnn.inference.translator import Translator
from seq2seq_rnn.model import Seq2Seq
from tests.helpers import run_cli

CFG = ModelConfig.model_validate(
    {
        "encoder": {"embedding_size": 8, "hidden_size": 12, "layers": 2},
        "decoder": {"embedding_size": 12, "hidden_size": 12, "layers": 2},
    }
)


def model(seed: int) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq.from_config(CFG, 20, 18).eval()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = torch.tensor([[5, 6, 7, 8, 9], [4, 11, 12, 0, 0]])
    lengths = torch.tensor([5, 3])
    return src, lengths, max_lengths(lengths, 2.0, 3)


def test_average_is_the_elementwise_mean() -> None:
    states = [model(s).state_dict() for s in (1, 2, 3)]
    avg = average_state_dicts(states)
    for key, value in avg.items():
        expected = (states[0][key] + states[1][key] + states[2][key]) / 3
        torch.testing.assert_close(value, expected)
    single = average_state_dicts(states[:1])
    assert all(torch.equal(single[k], states[0][k]) for k in single)


def test_average_refuses_different_models() -> None:
    other = Seq2Seq.from_config(ModelConfig.model_validate({"encoder": {"hidden_size": 10}}), 20, 18)
    with pytest.raises(CheckpointError, match="same parameters"):
        average_state_dicts([model(1).state_dict(), other.state_dict()])


def test_ensemble_of_one_equals_the_model() -> None:
    m = model(4)
    src, lengths, caps = batch()
    single = beam_search(m, src, lengths, caps=caps, bos=2, eos=3, beam_size=3, nbest=3)
    ens = beam_search(Ensemble([m]), src, lengths, caps=caps, bos=2, eos=3, beam_size=3, nbest=3)
    for a, b in zip(single, ens, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
    assert [h.tokens for h in greedy_search(m, src, lengths, caps=caps, bos=2, eos=3)] == [
        h.tokens for h in greedy_search(Ensemble([m]), src, lengths, caps=caps, bos=2, eos=3)
    ]


def test_ensemble_averages_probabilities() -> None:
    a, b = model(5), model(6)
    src, lengths, _ = batch()
    ens = Ensemble([a, b])
    mem, state = ens.encode(src, lengths)
    prev = torch.full((2,), 2)
    mixed, _, _ = ens.decode_step(prev, state, mem)
    pa = torch.softmax(a.decode_step(prev, *reversed(a.encode(src, lengths)))[0], -1)
    pb = torch.softmax(b.decode_step(prev, *reversed(b.encode(src, lengths)))[0], -1)
    torch.testing.assert_close(mixed.exp(), (pa + pb) / 2)


@pytest.mark.slow  # trains its own run with kept checkpoints (~20 s on 2 cores)
def test_cli_keeps_averages_and_ensembles_checkpoints(tmp_path, capsys) -> None:
    from seq2seq_rnn.cli import main
    from seq2seq_rnn.run.checkpoint import load_checkpoint

    run = tmp_path / "run"
    small = [
        "--set",
        "train.max_steps=12",
        "--set",
        "train.max_epochs=100",
        "--set",
        "train.validate_every=4",
        "--set",
        "train.keep_checkpoints=2",
        "--set",
        "train.threads=1",
        "--set",
        "data.train.limit=200",
        "--set",
        "data.validation.limit=8",
        "--set",
        'model.encoder={"hidden_size": 16, "embedding_size": 16, "layers": 1}',
        "--set",
        'model.decoder={"hidden_size": 16, "embedding_size": 16, "layers": 1}',
        "--set",
        "tokenizer.vocab_size=200",
        "--set",
        "decode.beam_size=2",
    ]
    assert main(["train", "recipes/tiny.yaml", "--output-dir", str(run), "--no-test", *small]) == 0
    kept = sorted((run / "checkpoints").glob("step-*.pt"))
    assert [p.name for p in kept] == ["step-00000008.pt", "step-00000012.pt"]
    assert main(["average", str(run), "--last", "2"]) == 0
    averaged = load_checkpoint(run / "checkpoints" / "averaged.pt")["model"]
    a, b = (load_checkpoint(p)["model"] for p in kept)
    for key in averaged:
        torch.testing.assert_close(averaged[key], (a[key] + b[key]) / 2)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "validation", "--json", "--checkpoint", "best"]) == 0
    single = capsys.readouterr().out.strip().splitlines()[-1]
    args = ["evaluate", str(run), str(run), "--split", "validation", "--json", "--checkpoint", "best"]
    assert main(args) == 0  # the same model twice: an ensemble that must score exactly as the single model
    twice = capsys.readouterr().out.strip().splitlines()[-1]
    import json

    assert json.loads(single)["bleu"] == pytest.approx(json.loads(twice)["bleu"])
    # two different checkpoints of one run: the CLI decodes with both (an Ensemble of 2 members),
    # exactly as the API does
    members = [str(kept[0]), str(run / "checkpoints" / "averaged.pt")]
    sources = ["Ein Hund läuft.", "Zwei Männer spielen Fußball.", "Eine Frau."]
    api = Translator.load_ensemble([(run, c) for c in members], device="cpu")
    assert isinstance(api.model, Ensemble) and len(api.model.members) == 2
    args = ["translate", run, "--checkpoint", members[0], "--checkpoint", members[1], "--beam-size", "2"]
    proc = run_cli(*args, "--device", "cpu", stdin="\n".join(sources).encode() + b"\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == api.translate(sources, beam_size=2)
