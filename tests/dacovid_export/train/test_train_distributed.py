"""The torchrun path (DistributedDataParallel) on the CPU with gloo: the same code a multi-GPU run takes, minus NCCL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dacovid_export.data.synthetic import make_synthetic_dataset
from dacovid_export.model import read_checkpoint


def test_two_processes_train_and_only_rank_zero_reports(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", per_class=4, size=64, seed=0)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "dacovid_export", "train", str(data), "--out", str(run), "--device", "cpu", "--epochs", "1",
        "--batch-size", "4", "--image-size", "64", "--reduction-channels", "16", "--reduction-kernel", "1",
        "--dropout", "0", "--workers", "0", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    # the train logger's lines (stderr), said by rank 0 only
    assert done.stderr.count("epoch 1/1") == 1, done.stderr
    assert "2 processes (global batch 4)" in done.stderr
    assert done.stdout.count("best checkpoint:") == 1, done.stdout
    payload = read_checkpoint(run / "best.pt")
    assert payload["training"]["world_size"] == 2
    assert not any(k.startswith("module.") for k in payload["state_dict"])
    # the held-out images of all processes are counted once: 1 of 4 per class
    assert sum(payload["metrics"]["val"]["per_class"][c]["support"] for c in payload["class_names"]) == 3
