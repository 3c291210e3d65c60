"""bench/gpu_scale.py refuses a machine without a CUDA GPU in one line, exit status 2 (it needs a GPU to measure)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_scale.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_the_gpu_throughput_script_refuses_a_cpu_machine_in_one_line():
    done = subprocess.run([sys.executable, str(SCRIPT), "--model-name", "unsloth/Llama-3.2-1B-Instruct"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "error: no CUDA GPU here; bench/gpu_scale.py measures GPU training and serving throughput and was not run"
