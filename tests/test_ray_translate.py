"""The Ray Data translation stage on a real local cluster: 2 actors, output equal to ``translate``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from seq2seq_rnn.data.corpus import load_split
from seq2seq_rnn.inference.translator import Translator
from tests.helpers import run_cli


@pytest.fixture
def ray_cluster():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    ray.init(num_cpus=2, _temp_dir=temp, logging_level="ERROR", include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _inputs(run: Path, folder: Path) -> list[Path]:
    sources = load_split(Translator.load(run).recipe.data, "validation").sources
    first, second = folder / "a.de", folder / "b.de"
    assert len(sources) >= 20
    first.write_text("\n".join([*sources[:8], "", *sources[8:14]]) + "\n", encoding="utf-8")
    second.write_text("\n".join(sources[14:20]), encoding="utf-8")  # no final newline
    return [first, second]


@pytest.mark.ray
@pytest.mark.slow
def test_ray_stage_with_two_actors_equals_translate(ray_cluster, tiny_run: Path, tmp_path: Path) -> None:
    from seq2seq_rnn.integrations.ray import translate_files

    inputs = _inputs(tiny_run, tmp_path)
    outs = translate_files(tiny_run, inputs, tmp_path / "out", actors=2, rows_per_call=8, beam_size=2, threads=1)
    assert [o.name for o in outs] == ["a.de", "b.de"]
    for source, out in zip(inputs, outs, strict=True):
        proc = run_cli("translate", tiny_run, "--beam-size", "2", stdin=source.read_bytes())
        assert proc.returncode == 0, proc.stderr
        want = proc.stdout.splitlines()
        got = out.read_text(encoding="utf-8").splitlines()
        assert got == want  # line for line, the empty line included
    assert len(outs[0].read_text(encoding="utf-8").splitlines()) == 15
    assert outs[0].read_text(encoding="utf-8").splitlines()[8] == ""


@pytest.mark.ray
@pytest.mark.slow
def test_translate_batch_in_map_batches_keeps_other_columns(ray_cluster, tiny_run: Path) -> None:
    import ray.data

    from seq2seq_rnn.integrations.ray import TranslateBatch

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    sources = load_split(Translator.load(tiny_run).recipe.data, "validation").sources[:12]
    ds = ray.data.from_items([{"id": i, "text": s} for i, s in enumerate(sources)])
    ds = ds.map_batches(TranslateBatch, fn_constructor_kwargs={"run_dir": str(tiny_run)}, concurrency=2, batch_size=4)
    rows = ds.take_all()
    assert [r["id"] for r in rows] == list(range(12))
    assert [r["translation"] for r in rows] == Translator.load(tiny_run).translate(sources)


def test_ray_flags_need_input_and_output(tiny_run: Path) -> None:
    proc = run_cli("translate", tiny_run, "--ray")
    assert proc.returncode == 2 and "--input FILE" in proc.stderr
    proc = run_cli("translate", tiny_run, "--input", "x.de")
    assert proc.returncode == 2 and "--ray" in proc.stderr
