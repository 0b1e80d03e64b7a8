"""Joint training under torchrun: two gloo processes train what one process trains."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from vfm3d.jointgen.model import JointGenerator
from vfm3d.jointgen.train import JointTrainConfig, load_captioned_clips, train_jog3r
from vfm3d.world import generate_dataset

WORKER = """
import os, sys, torch
from vfm3d.jointgen.model import JointGenerator
from vfm3d.jointgen.train import JointTrainConfig, load_captioned_clips, train_jog3r
data, captions = load_captioned_clips(sys.argv[1])
g = JointGenerator.tiny(seed=0, corpus=captions)
cfg = JointTrainConfig(lambda_rec=float(sys.argv[3]), batch=4, lr=2e-3, warmup=1, log_every=1)
train_jog3r(sys.argv[2], data, captions, 3, seed=0, generator=g, config=cfg, progress=False)
if os.environ.get("RANK", "0") == "0":
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in g.transformer.state_dict().items()}
    save_file(state, os.path.join(sys.argv[2], "transformer.safetensors"))
"""


@pytest.mark.distributed
@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path) -> None:
    """lambda 0 (equal-size shares, so the rank-mean of the MSE is the global mean): two gloo
    processes train the weights one process does. (L_rec averages over each rank's valid
    pixels, so at lambda > 0 the two agree only up to that weighting.)"""
    import os
    import subprocess
    import sys

    folder = tmp_path / "clips"
    generate_dataset(folder, "mixed", 4, 9, 32, 32, 0, progress=False)
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, str(worker), str(folder), str(tmp_path / "two"), "0"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data, captions = load_captioned_clips(folder)  # the same run in this process
    g = JointGenerator.tiny(seed=0, corpus=captions)
    cfg = JointTrainConfig(lambda_rec=0.0, batch=4, lr=2e-3, warmup=1, log_every=1)
    train_jog3r(tmp_path / "one", data, captions, 3, seed=0, generator=g, config=cfg,
                progress=False)  # fmt: skip
    one = g.transformer.state_dict()
    two = load_file(tmp_path / "two" / "transformer.safetensors")
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-4, atol=1e-5)
    assert (tmp_path / "two" / "model" / "jog3r.json").is_file()
    assert not (tmp_path / "two" / ".ranks" / "rank1" / "model").exists()
