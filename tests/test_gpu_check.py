"""tools/gpu_check.sh: says so and exits 0 without CUDA; the whole check where a GPU exists (-m gpu)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, cli_env


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only path")
def test_cpu_only_machine_says_so_and_exits_0(tmp_path: Path) -> None:
    before = (ROOT / "docs" / "bench-gpu.json").read_bytes() if (ROOT / "docs" / "bench-gpu.json").exists() else None
    env = {**cli_env(), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "CPU-only" in proc.stdout
    after = (ROOT / "docs" / "bench-gpu.json").read_bytes() if (ROOT / "docs" / "bench-gpu.json").exists() else None
    assert after == before  # nothing written
    direct = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--json", str(tmp_path / "g.json")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert direct.returncode == 0 and "no CUDA device" in direct.stdout
    assert not (tmp_path / "g.json").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_check_runs_and_passes(tmp_path: Path) -> None:
    out = tmp_path / "bench-gpu.json"
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_check.sh"), "--steps", "60", "--ray-steps", "20", "--json", str(out)],
        capture_output=True,
        text=True,
        env={**cli_env(), "PYTHON": sys.executable},
        timeout=600,
    )
    result = json.loads(out.read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["ok"] and result["training_bf16"]["loss_finite"]
    assert result["decoding"]["sentences"] == 1000
