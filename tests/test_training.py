"""The shared training loop: it learns, it stops on NaN with a clear message, it resumes exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from torch import nn

from srcompress.data import PatchDataset
from srcompress.errors import DataError
from srcompress.measure.evaluate import evaluate
from srcompress.recipe_types import DataConfig
from srcompress.registry import Registry
from srcompress.training import (
    LossInputs,
    LossTerm,
    GANConfig,
    TrainConfig,
    TrainingDivergedError,
    TrainingHook,
    fit,
)
from srcompress.training.state import EMA, read_state
from srcompress.training.trainer import BEST_FILE, STATE_FILE, TrainHistory

SCALE = 2
REPO = Path(__file__).resolve().parents[1]


class ESPCN(nn.Module):
    """A 3-layer sub-pixel CNN (Shi et al. 2016), x2: small enough to train in seconds on a CPU."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 5, padding=2), nn.Tanh(), nn.Conv2d(width, width // 2, 3, padding=1), nn.Tanh(),
            nn.Conv2d(width // 2, 3 * SCALE * SCALE, 3, padding=1), nn.PixelShuffle(SCALE),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PatchCritic(nn.Module):
    """A small patch discriminator (conv, BN, LeakyReLU) mapping images to per-image logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.LeakyReLU(0.2),
                                 nn.Conv2d(8, 1, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _model(seed: int = 0, width: int = 8) -> ESPCN:
    torch.manual_seed(seed)
    return ESPCN(width)


@pytest.fixture(scope="module")
def set5_patches(tmp_path_factory: pytest.TempPathFactory) -> PatchDataset:
    """64 x2 patches (16 px HR) per epoch from Set5, decoded once for the whole module."""
    root = os.environ.get("SRCOMPRESS_DATA")
    if not root or not (Path(root) / "Set5").is_dir():
        pytest.skip("needs ../shared/data (or SRCOMPRESS_DATA) with Set5")
    return PatchDataset(["Set5"], SCALE, 16, root=root, length=64, cache_lr=True)


DATA = DataConfig(train=("Set5",), eval=("Set5",), patch=16, batch=8)


class NaNProbe(TrainingHook):
    """Adds a loss term 'probe' that is 0 except at one step, where it is NaN (or has a NaN gradient)."""

    def __init__(self, at_step: int, *, in_gradient: bool = False) -> None:
        self.at_step, self.in_gradient, self.step = at_step, in_gradient, 0
        probe = self

        class Probe(nn.Module):
            def forward(self, inputs: LossInputs) -> torch.Tensor:
                zero = inputs.sr.mean() * 0
                if probe.step != probe.at_step:
                    return zero
                return torch.sqrt(zero * 0) if probe.in_gradient else zero + float("nan")

        self.module = Probe()

    def terms(self) -> Mapping[str, tuple[float, nn.Module]]:
        return {"probe": (1.0, self.module)}

    def before_loss(self, inputs: LossInputs) -> None:
        self.step += 1


class _AlwaysNaN(TrainingHook):
    def terms(self) -> Mapping[str, tuple[float, nn.Module]]:
        class NaN(nn.Module):
            def forward(self, inputs: LossInputs) -> torch.Tensor:
                return inputs.sr.mean() * float("nan")

        return {"probe": (1.0, NaN())}


# --------------------------------------------------------------------------------------- acceptance


def test_fine_tuning_on_t91_lowers_l1_and_raises_set5_psnr(data_root: Path, tmp_path: Path) -> None:
    """200 steps of L1 on T91 (batch 8, 24 px patches) take a random ESPCN from ~8.4 dB to ~28.6 dB on Set5 x2."""
    model = _model(width=16)
    before = evaluate(model, ["Set5"], SCALE, root=data_root, metrics=("psnr",)).mean("Set5", "psnr")
    config = TrainConfig(steps=200, lr=3e-3, schedule="cosine", warmup_steps=10, log_every=20, val_every=100,
                         keep_best=True, checkpoint_every=None)
    data = DataConfig(train=("T91",), eval=("Set5",), patch=24, batch=8)
    result = fit(model, config, data, SCALE, work_dir=tmp_path, registry=Registry(), progress=False)
    history = result.history
    assert result.steps == 200 and history.steps == list(range(20, 201, 20)) and history.val_steps == [100, 200]
    assert history.terms["l1"] == pytest.approx(history.loss)  # the only term, weight 1
    assert history.loss[-1] < 0.3 * history.loss[0], history.loss  # mean L1 of steps 181-200 vs 1-20
    after = max(history.val_score)
    assert before < 10.0
    assert after > before + 17.0 and after > 27.0, (before, history.val_score)
    # keep_best: the returned weights are the best validated ones, also saved in best.pt
    assert result.best_score == after and result.best_step == history.val_steps[history.val_score.index(after)]
    assert result.best_text() == f"kept the best validation PSNR {after:.2f} dB (step {result.best_step})"
    best = torch.load(tmp_path / BEST_FILE, weights_only=True)
    assert all(torch.equal(best[k], v) for k, v in result.model.state_dict().items())


def test_keep_best_by_niqe_keeps_the_lowest(data_root: Path, weights_root: Path, tmp_path: Path) -> None:
    """val_metric niqe (lower is better, no ground truth): the kept weights are those of the lowest score."""
    model = _model(width=8)
    config = TrainConfig(steps=6, lr=3e-3, log_every=2, val_every=2, val_metric="niqe", val_sets=("Set5",), val_limit=1,
                         keep_best=True, checkpoint_every=None)
    data = DataConfig(train=("T91",), eval=("Set14",), patch=24, batch=4)
    result = fit(model, config, data, SCALE, work_dir=tmp_path, registry=Registry(), progress=False)
    history = result.history
    assert history.val_metric == "niqe" and history.val_steps == [2, 4, 6] and list(history.val_sets) == ["Set5"]
    best = min(history.val_score)
    assert best > 0 and len(set(history.val_score)) == 3, history.val_score  # an untrained net: NIQE 30-560
    assert result.best_metric == "niqe" and result.best_score == best
    assert result.best_step == history.val_steps[history.val_score.index(best)]
    assert result.best_text() == f"kept the best validation niqe {best:.4g} (step {result.best_step})"
    kept = torch.load(tmp_path / BEST_FILE, weights_only=True)
    assert all(torch.equal(kept[k], v) for k, v in result.model.state_dict().items())


def test_history_written_before_val_metric_reads_as_psnr() -> None:
    old = {"steps": [10], "loss": [0.5], "val_steps": [10], "val_psnr": [27.5], "val_sets": {"Set5": [27.5]}}
    history = TrainHistory.from_dict(old)
    assert history.val_metric == "psnr" and history.val_score == [27.5]
    assert TrainHistory.from_dict(history.to_dict()) == history


# --------------------------------------------------------------------------------------- robustness


def test_injected_nan_stops_naming_stage_step_and_term(tmp_path: Path, set5_patches: PatchDataset) -> None:
    model = _model()
    config = TrainConfig(steps=10, lr=1e-3, checkpoint_every=None)
    with pytest.raises(TrainingDivergedError) as error:
        fit(model, config, DATA, SCALE, work_dir=tmp_path, stage_name="prune", hooks=[NaNProbe(5)],
            dataset=set5_patches, progress=False)
    kept = tmp_path / STATE_FILE
    assert str(error.value) == (
        f"stage 'prune' step 5: loss term 'probe' is nan; the last good weights were kept in {kept}; "
        "lower lr or set on_nan: skip"
    )
    assert (error.value.stage, error.value.step, error.value.term) == ("prune", 5, "loss term 'probe'")
    state = read_state(kept)  # weights_only=True
    assert state["step"] == 4
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())  # step 5 never applied
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_nan_gradient_stops_naming_the_gradient(tmp_path: Path, set5_patches: PatchDataset) -> None:
    config = TrainConfig(steps=5, checkpoint_every=None)
    with pytest.raises(TrainingDivergedError, match=r"^stage 'train' step 2: the gradient norm is nan; the last good"):
        fit(_model(), config, DATA, SCALE, work_dir=tmp_path, hooks=[NaNProbe(2, in_gradient=True)],
            dataset=set5_patches, progress=False)


def test_on_nan_skip_drops_the_step_and_halves_the_lr(tmp_path: Path, set5_patches: PatchDataset) -> None:
    config = TrainConfig(steps=6, lr=1e-3, log_every=1, on_nan="skip", checkpoint_every=None)
    with pytest.warns(UserWarning, match=r"stage 'train' step 3: loss term 'probe' is nan; step skipped, learning rate halved"):
        result = fit(_model(), config, DATA, SCALE, work_dir=tmp_path, hooks=[NaNProbe(3)], dataset=set5_patches,
                     progress=False)
    history = result.history
    assert result.steps == 6 and result.skipped_steps == 1 and history.skipped == [3]
    assert history.steps == [1, 2, 4, 5, 6]
    assert history.lr == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 5e-4])
    assert all(p.isfinite().all() for p in result.model.parameters())
    config = TrainConfig(steps=6, on_nan="skip", max_skips=1, checkpoint_every=None)
    with pytest.raises(TrainingDivergedError, match=r"step 2: loss term 'probe' is nan; .*; 1 steps were skipped already; lower lr"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit(_model(), config, DATA, SCALE, work_dir=tmp_path / "again", hooks=[_AlwaysNaN()], dataset=set5_patches,
                progress=False)


# --------------------------------------------------------------------------------------- resume


class _Kill(TrainingHook):
    """Interrupts the run at the start of a step's loss, like a kill (no clean-up writes)."""

    def __init__(self, at_step: int) -> None:
        self.at_step, self.step = at_step, 0

    def before_loss(self, inputs: LossInputs) -> None:
        self.step += 1
        if self.step == self.at_step:
            raise KeyboardInterrupt


RESUME_CONFIG = TrainConfig(
    steps=10, lr=1e-3, schedule="cosine", warmup_steps=2, grad_clip=1.0, ema=0.9, checkpoint_every=3, log_every=1,
    losses=(LossTerm(kind="l1", weight=1.0), LossTerm(kind="gan", weight=0.01, options=GANConfig(flavor="relativistic"))),
)


def _gan_run(work_dir: Path, dataset: PatchDataset, hooks: list[TrainingHook]) -> tuple[ESPCN, PatchCritic, object]:
    model = _model(1)
    critic = PatchCritic()
    result = fit(model, RESUME_CONFIG, DATA, SCALE, work_dir=work_dir, hooks=hooks, discriminator=critic,
                 dataset=dataset, progress=False)
    return model, critic, result


def test_killed_run_resumes_bit_for_bit(tmp_path: Path, set5_patches: PatchDataset) -> None:
    """GAN + EMA + warm-up/cosine + clipping: killed at step 8, resumed from step 6, equals the straight run."""
    straight, straight_critic, straight_result = _gan_run(tmp_path / "straight", set5_patches, [])
    with pytest.raises(KeyboardInterrupt):
        _gan_run(tmp_path / "killed", set5_patches, [_Kill(at_step=8)])
    assert read_state(tmp_path / "killed" / STATE_FILE)["step"] == 6
    resumed, resumed_critic, resumed_result = _gan_run(tmp_path / "killed", set5_patches, [])
    assert resumed_result.resumed_from == 6 and resumed_result.steps == 10
    for a, b in ((straight, resumed), (straight_critic, resumed_critic)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), name
    assert resumed_result.history.loss == straight_result.history.loss  # exact floats, steps 1..10
    assert set(straight_result.history.terms) == {"l1", "gan", "discriminator"}
    # the result carries the EMA weights, not the last raw weights
    raw = read_state(tmp_path / "straight" / STATE_FILE)
    assert torch.equal(raw["ema"]["body.0.weight"], straight.body[0].weight.detach())
    # a finished stage is not trained again
    again = fit(_model(5), RESUME_CONFIG, DATA, SCALE, work_dir=tmp_path / "straight", discriminator=PatchCritic(),
                dataset=set5_patches, progress=False)
    assert again.resumed_from == 10 and torch.equal(again.model.body[0].weight, straight.body[0].weight)


_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import torch
    sys.path.insert(0, {tests!r})
    from test_training import DATA, SCALE, _model
    from srcompress.data import PatchDataset
    from srcompress.training import TrainConfig, TrainingHook, fit

    torch.set_num_threads(1)

    class KillAt(TrainingHook):
        def __init__(self, step):
            self.at, self.step = step, 0
        def before_loss(self, inputs):
            self.step += 1
            if self.step == self.at:
                os.kill(os.getpid(), signal.SIGKILL)

    kill_at = int(sys.argv[2])
    dataset = PatchDataset(["Set5"], SCALE, 16, length=64)
    model = _model(3)
    config = TrainConfig(steps=8, lr=1e-3, checkpoint_every=2, log_every=1)
    hooks = [KillAt(kill_at)] if kill_at else []
    result = fit(model, config, DATA, SCALE, work_dir=Path(sys.argv[1]), hooks=hooks, dataset=dataset, progress=False)
    torch.save({{"state": model.state_dict(), "loss": result.history.loss, "resumed": result.resumed_from}},
               Path(sys.argv[1]) / "result.pt")
    """
)


def test_sigkill_then_resume_in_a_new_process(tmp_path: Path, set5_patches: PatchDataset) -> None:
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT.format(tests=str(REPO / "tests")))
    work = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, str(script), str(work), "5"], env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert read_state(work / STATE_FILE)["step"] == 4 and not (work / "result.pt").exists()
    done = subprocess.run([sys.executable, str(script), str(work), "0"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = torch.load(work / "result.pt", weights_only=True)
    assert resumed["resumed"] == 4
    model = _model(3)  # the same run, uninterrupted, in this process
    config = TrainConfig(steps=8, lr=1e-3, checkpoint_every=2, log_every=1)
    result = fit(model, config, DATA, SCALE, work_dir=tmp_path / "straight", dataset=set5_patches, progress=False)
    assert resumed["loss"] == result.history.loss
    for name, value in model.state_dict().items():
        assert torch.equal(resumed["state"][name], value), name


# --------------------------------------------------------------------------------------- features


class _Adapter(TrainingHook):
    """A technique-style hook: one trainable gain, one extra term, teacher output in extras."""

    def __init__(self) -> None:
        self.gain = nn.Parameter(torch.tensor(0.5))
        self.calls: list[str] = []
        hook = self

        class Match(nn.Module):
            def forward(self, inputs: LossInputs) -> torch.Tensor:
                return (inputs.sr * hook.gain - inputs.extras["teacher"]).abs().mean()

        self.match = Match()

    def setup(self, model: nn.Module, device: torch.device) -> None:
        self.calls.append(f"setup {type(model).__name__} {device}")

    def terms(self) -> Mapping[str, tuple[float, nn.Module]]:
        return {"match": (0.5, self.match)}

    def parameters(self) -> list[nn.Parameter]:
        return [self.gain]

    def before_loss(self, inputs: LossInputs) -> None:
        assert inputs.sr.requires_grad
        inputs.extras["teacher"] = inputs.hr

    def teardown(self) -> None:
        self.calls.append("teardown")


def test_hooks_add_terms_parameters_and_extras(tmp_path: Path, set5_patches: PatchDataset) -> None:
    hook = _Adapter()
    config = TrainConfig(steps=4, lr=1e-2, log_every=2, checkpoint_every=2)
    result = fit(_model(), config, DATA, SCALE, work_dir=tmp_path, hooks=[hook], dataset=set5_patches, progress=False)
    assert hook.calls == ["setup ESPCN cpu", "teardown"]
    assert set(result.history.terms) == {"l1", "match"}
    assert result.history.loss == pytest.approx([a + 0.5 * b for a, b in zip(result.history.terms["l1"], result.history.terms["match"])])
    assert hook.gain.item() != 0.5
    assert read_state(tmp_path / STATE_FILE)["hook_params"][0].item() == hook.gain.item()


def test_train_stage_technique(tmp_path: Path, set5_patches: PatchDataset, data_root: Path) -> None:
    from srcompress.context import StageContext

    registry = Registry()
    entry = registry.get_technique("train")
    config = entry.config_cls(steps=3, lr=1e-3, checkpoint_every=None)
    data = DataConfig(root=str(data_root), train=("Set5",), eval=("Set5",), patch=16, batch=4)
    ctx = StageContext(index=0, stage_name="finetune", scale=SCALE, data=data, work_dir=tmp_path, registry=registry, quiet=True)
    model = _model()
    first = model.body[0].weight.detach().clone()
    trained = entry.apply(model, config, ctx)
    assert trained is model and not torch.equal(first, model.body[0].weight)
    assert ctx.notes and ctx.notes[0].startswith("trained 3 steps; loss ")
    assert read_state(tmp_path / STATE_FILE)["stage"] == "finetune"


def test_amp_on_cpu_is_ignored_with_a_warning(tmp_path: Path, set5_patches: PatchDataset) -> None:
    config = TrainConfig(steps=1, amp="bf16", channels_last=True, checkpoint_every=None)
    with pytest.warns(UserWarning, match=r"stage 'train': amp bf16 needs CUDA; training in float32 on cpu"):
        result = fit(_model(), config, DATA, SCALE, work_dir=tmp_path, dataset=set5_patches, progress=False)
    assert result.model.body[0].weight.dtype == torch.float32
    assert result.model.body[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_too_few_patches_for_the_batch(tmp_path: Path, data_root: Path) -> None:
    data = DataConfig(root=str(data_root), train=("Set5",), patch=16, batch=8)  # 5 images: 5 patches per epoch
    with pytest.raises(DataError, match=r"the training set has 5 patches per epoch, fewer than data.batch \(8\)"):
        fit(_model(), TrainConfig(steps=1), data, SCALE, work_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match=r"data.patch \(15\) must be a multiple of the scale \(2\)"):
        fit(_model(), TrainConfig(steps=1), DataConfig(train=("Set5",), patch=15, batch=1), SCALE, work_dir=tmp_path)


def test_ema_update_rule() -> None:
    model = nn.BatchNorm2d(2)
    ema = EMA(model, decay=0.75)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.num_batches_tracked.fill_(7)
    ema.update(model)
    assert torch.equal(ema.shadow["weight"], torch.full((2,), 0.75 * 1 + 0.25 * 3))
    assert ema.shadow["num_batches_tracked"].item() == 7  # integers are copied, not averaged


def test_batches_do_not_depend_on_workers_or_restart_point(set5_patches: PatchDataset) -> None:
    from srcompress.training.batches import BatchStream

    def take(stream: BatchStream, start: int, count: int) -> list[torch.Tensor]:
        batches = stream.iterate(start)
        out = [next(batches)[1] for _ in range(count)]  # HR patches (N, 3, 16, 16)
        batches.close()
        return out

    kwargs = {"global_batch": 8, "seed": 3}
    plain = take(BatchStream(set5_patches, rank=0, world=1, **kwargs), 0, 10)  # 8 steps per epoch: crosses one
    workers = take(BatchStream(set5_patches, rank=0, world=1, workers=2, **kwargs), 0, 10)
    assert all(torch.equal(a, b) for a, b in zip(plain, workers, strict=True))
    restarted = take(BatchStream(set5_patches, rank=0, world=1, **kwargs), 7, 3)
    assert all(torch.equal(a, b) for a, b in zip(plain[7:], restarted, strict=True))
    halves = [take(BatchStream(set5_patches, rank=r, world=2, **kwargs), 0, 10) for r in (0, 1)]
    assert all(torch.equal(torch.cat([a, b]), c) for a, b, c in zip(*halves, plain, strict=True))
    assert not torch.equal(plain[0], plain[8])  # a new epoch draws other patches
