"""torchrun: 2 gloo processes on the CPU train like 1 process with the same global batch.

Tolerance: the per-step loss curve and the final weights (generator and discriminator) agree to
1e-5 absolute. They are not bit-equal because DDP averages gradients across processes, which sums
float32 numbers in another order than one process's batch mean; measured differences are ~1e-7.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from srcompress.data import PatchDataset
from srcompress.training import fit
from srcompress.training.state import read_state
from srcompress.training.trainer import STATE_FILE

TOLERANCE = 1e-5

# Shared by the torchrun script and the 1-process reference below (exec'd in both).
_COMMON = textwrap.dedent(
    """
    import torch
    from torch import nn
    from srcompress.recipe_types import DataConfig
    from srcompress.training import GANConfig, LossTerm, TrainConfig

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8), nn.Conv2d(8, 12, 3, padding=1),
                                      nn.PixelShuffle(2))
            self.unused = nn.Conv2d(3, 3, 1)  # dead weights, as in published SR checkpoints

        def forward(self, x):
            return self.body(x)

    class Critic(nn.Module):  # no BatchNorm: per-sample logits, so data parallelism is exact maths
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 1),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def forward(self, x):
            return self.net(x)

    CONFIG = TrainConfig(steps=10, lr=1e-3, ema=0.9, log_every=1, checkpoint_every=5,
                         losses=(LossTerm(kind="l1"), LossTerm(kind="gan", weight=0.05, options=GANConfig(flavor="vanilla"))))
    DATA = DataConfig(train=("Set5",), eval=("Set5",), patch=16, batch=8)

    def models():
        torch.manual_seed(0)
        return Net(), Critic()
    """
)

_SCRIPT = _COMMON + textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from srcompress.data import PatchDataset
    from srcompress.training import fit

    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    model, critic = models()
    dataset = PatchDataset(["Set5"], 2, 16, length=64)
    result = fit(model, CONFIG, DATA, 2, work_dir=out, discriminator=critic, dataset=dataset, progress=False)
    rank = int(os.environ["RANK"])
    torch.save({"loss": result.history.loss, "terms": result.history.terms, "world": result.world_size,
                "model": model.state_dict(), "critic": critic.state_dict()}, out / f"rank{rank}.pt")
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    root = os.environ.get("SRCOMPRESS_DATA")
    if not root or not (Path(root) / "Set5").is_dir():
        pytest.skip("needs ../shared/data (or SRCOMPRESS_DATA) with Set5")
    script = tmp_path / "ddp_train.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), str(script), str(out)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    namespace: dict[str, object] = {}
    exec(compile(_COMMON, "common", "exec"), namespace)  # the same model, data and config, one process
    model, critic = namespace["models"]()  # type: ignore[operator]
    single = fit(model, namespace["CONFIG"], namespace["DATA"], 2, work_dir=tmp_path / "single",  # type: ignore[arg-type]
                 discriminator=critic, dataset=PatchDataset(["Set5"], 2, 16, root=root, length=64), progress=False)

    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and single.world_size == 1
    assert ranks[0]["loss"] == ranks[1]["loss"]  # metrics are reduced across ranks
    assert len(ranks[0]["loss"]) == 10
    assert max(abs(a - b) for a, b in zip(ranks[0]["loss"], single.history.loss, strict=True)) < TOLERANCE
    for term in ("l1", "gan", "discriminator"):
        assert max(abs(a - b) for a, b in zip(ranks[0]["terms"][term], single.history.terms[term], strict=True)) < TOLERANCE
    assert single.history.loss[-1] < single.history.loss[0]
    for name, value in model.state_dict().items():
        assert torch.equal(ranks[0]["model"][name], ranks[1]["model"][name]), name
        assert (ranks[0]["model"][name] - value).abs().max().item() < TOLERANCE, name
    for name, value in critic.state_dict().items():
        assert torch.equal(ranks[0]["critic"][name], ranks[1]["critic"][name]), name
        assert (ranks[0]["critic"][name] - value).abs().max().item() < TOLERANCE, name
    # one checkpoint, written by rank 0, holding both ranks' random states
    state = read_state(out / STATE_FILE)
    assert state["world"] == 2 and len(state["rng"]) == 2 and state["step"] == 10
    assert sorted(p.name for p in out.iterdir()) == ["rank0.pt", "rank1.pt", STATE_FILE]
