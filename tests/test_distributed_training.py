"""``stockllm train`` as 2 CPU processes on the gloo backend (DDP, ``torchrun``) with the tiny Llama.

(``accelerate launch`` runs the same DDP on GPUs; with ``--cpu`` it starts a single process, so the CPU test
uses torchrun, which ``accelerate launch`` itself wraps on GPUs.) Both ranks train (each says so) and log the
same loss and gradient norm at every step (gradients are averaged through DDP's own forward, and the loss is
scaled as ``Trainer.compute_loss`` scales it), the adapter is saved once by rank 0, and the model dir has the
same files and adapter tensors (names and shapes) as a single-process run of the same command.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tiny_llm import build_tiny_llm

STOCKLLM = str(Path(sys.executable).with_name("stockllm"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny") / "model")


def train(launcher: list[str], data_dir: Path, model: Path, out: Path) -> subprocess.CompletedProcess:
    args = ["train", "--data-dir", str(data_dir), "--codes", "9921", "--windows", "1:1", "--model-name", str(model),
            "--max-steps", "2", "--batch-size", "2", "--gradient-accumulation-steps", "1", "--eval-examples", "2",
            "--report-to", "none", "--model-dir", str(out / "model"), "--output-dir", str(out / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([*launcher, STOCKLLM, *args], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_gloo_processes_both_train_and_save_one_adapter_like_a_single_process_run(tiny_model, snapshot_data_dir, tmp_path):
    ddp = train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"], snapshot_data_dir, tiny_model, tmp_path / "ddp")
    assert ddp.stderr.count("training 2 steps") == 2  # rank 0 and rank 1
    assert ddp.stderr.count("saved adapter") == 1
    # both ranks log the same averaged loss and grad norm (searched, not split into lines: two processes share stderr)
    steps = sorted(re.findall(r"step (\d+)/2: loss ([\d.]+), grad_norm ([\d.]+)", ddp.stderr))
    assert {step for step, _, _ in steps} == {"1", "2"}, ddp.stderr[-2000:]
    assert all(len({s for s in steps if s[0] == step}) == 1 for step in ("1", "2")), steps  # what each rank logs agrees

    single = train([sys.executable], snapshot_data_dir, tiny_model, tmp_path / "single")
    assert single.stderr.count("training 2 steps") == 1
    first_loss = {run: float(next(l for l in done.stderr.splitlines() if l.startswith("  step 1/2: loss")).split()[3].rstrip(","))
                  for run, done in (("ddp", ddp), ("single", single))}
    assert abs(first_loss["ddp"] - first_loss["single"]) < 0.2  # same scale: the answer tokens' mean loss (different examples)

    ddp_dir, single_dir = tmp_path / "ddp" / "model", tmp_path / "single" / "model"
    assert sorted(p.name for p in ddp_dir.iterdir()) == sorted(p.name for p in single_dir.iterdir())
    ddp_weights, single_weights = load_file(ddp_dir / "adapter_model.safetensors"), load_file(single_dir / "adapter_model.safetensors")
    assert {k: v.shape for k, v in ddp_weights.items()} == {k: v.shape for k, v in single_weights.items()}
    configs = [json.loads((folder / "adapter_config.json").read_text()) for folder in (ddp_dir, single_dir)]
    for config in configs:  # peft writes its target-module set in the process's hash order
        config["target_modules"] = sorted(config["target_modules"])
    assert configs[0] == configs[1]
    assert json.loads((ddp_dir / "training_info.json").read_text())["steps"] == 2
