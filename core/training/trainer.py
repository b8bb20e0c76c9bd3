"""The shared training loop: ``fit(model, config, data, scale, work_dir=...)``.

One loop serves the ``train`` stage and every technique that fine-tunes (pruning, distillation,
QAT). Per step: the model's forward, the hooks' ``before_loss``, the weighted loss terms (with the
discriminator's logits when a ``gan`` term is present), backward; then the discriminator's step;
then, only if every loss value and gradient norm is finite, the optimizer steps and the EMA update.

Files in ``work_dir`` (written by rank 0 only, atomically):

- ``train_state.pt``: everything needed to resume at the step it was written (model, optimizer,
  LR state, EMA, discriminator and its optimizer, hook parameters, RNG states of every rank,
  history, best score); written every ``checkpoint_every`` steps, at the end (``done``) and when
  the loss diverges (the last good state). ``fit`` resumes from it when it exists.
- ``best.pt``: the state dict of the best validation score (``keep_best``).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from attrs import define, field
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from srcompress.errors import DataError, SrcompressError
from srcompress.recipe_types import DataConfig

from . import distributed
from .adversarial import DISC_FAKE, DISC_REAL, AdversarialLoss
from .batches import BatchStream
from .config import TrainConfig, lr_factor
from .distributed import DistInfo
from .hooks import TrainingHook
from .losses import Criterion, LossInputs, build_criterion
from .state import EMA, capture_rng, cpu_state, read_state, restore_rng, write_state

__all__ = ["STATE_FILE", "BEST_FILE", "TrainHistory", "TrainResult", "Trainer", "TrainingDivergedError", "fit"]

STATE_FILE = "train_state.pt"
BEST_FILE = "best.pt"
_DISC_TERM = "discriminator"


class TrainingDivergedError(SrcompressError):
    """A loss value or gradient became NaN/inf; names the stage, the step and the term."""

    def __init__(self, stage: str, step: int, term: str, value: float, kept: Path | None, hint: str) -> None:
        self.stage, self.step, self.term, self.value, self.kept = stage, step, term, value, kept
        where = f"the last good weights were kept in {kept}" if kept else "no state was kept"
        super().__init__(f"stage '{stage}' step {step}: {term} is {_describe(value)}; {where}; {hint}")


def _describe(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


@define(kw_only=True)
class TrainHistory:
    """What happened: mean losses every ``log_every`` steps and validation scores.

    ``val_score`` is the mean of ``val_metric`` over the validation sets at each of ``val_steps``
    (PSNR: dB on Y); ``val_sets`` holds the per-set values.
    """

    steps: list[int] = field(factory=list)
    loss: list[float] = field(factory=list)
    terms: dict[str, list[float]] = field(factory=dict)
    lr: list[float] = field(factory=list)
    val_steps: list[int] = field(factory=list)
    val_metric: str = "psnr"
    val_score: list[float] = field(factory=list)
    val_sets: dict[str, list[float]] = field(factory=dict)
    skipped: list[int] = field(factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps), "loss": list(self.loss), "terms": {k: list(v) for k, v in self.terms.items()},
            "lr": list(self.lr), "val_steps": list(self.val_steps), "val_metric": self.val_metric,
            "val_score": list(self.val_score),
            "val_sets": {k: list(v) for k, v in self.val_sets.items()}, "skipped": list(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainHistory:
        data = dict(data)
        if "val_psnr" in data:  # written before val_metric existed: PSNR
            data.setdefault("val_score", data.pop("val_psnr"))
        return cls(**{k: data[k] for k in attrs.fields_dict(cls) if k in data})


@define(kw_only=True)
class TrainResult:
    """The trained model (best or EMA weights when asked) and the record of the run."""

    model: nn.Module
    history: TrainHistory
    steps: int
    best_score: float | None = None
    best_step: int | None = None
    best_metric: str = "psnr"
    resumed_from: int | None = None
    skipped_steps: int = 0
    world_size: int = 1

    def best_text(self) -> str:
        """What ``keep_best`` kept, for stage summaries (``kept the best validation niqe 6.32 (step 400)``,
        PSNR as ``PSNR 28.17 dB``); "" when nothing was kept."""
        if self.best_score is None:
            return ""
        psnr = self.best_metric == "psnr"
        score = f"PSNR {self.best_score:.2f} dB" if psnr else f"{self.best_metric} {self.best_score:.4g}"
        return f"kept the best validation {score} (step {self.best_step})"


@define(kw_only=True)
class _Window:
    """Loss sums since the last history record."""

    count: int = 0
    sums: dict[str, float] = field(factory=dict)

    def add(self, values: Mapping[str, float]) -> None:
        self.count += 1
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def means(self) -> dict[str, float]:
        return {key: value / self.count for key, value in self.sums.items()}


def fit(
    model: nn.Module,
    config: TrainConfig,
    data: DataConfig,
    scale: int,
    *,
    work_dir: Path,
    stage_name: str = "train",
    registry: Any = None,
    hooks: Sequence[TrainingHook] = (),
    discriminator: nn.Module | None = None,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    progress: bool = True,
    resume: bool = True,
    dataset: Dataset[Any] | None = None,
) -> TrainResult:
    """Train ``model`` (float32 RGB NCHW in [0, 1] -> x``scale``) and return it with its history.

    :param work_dir: folder of this run's checkpoints; an existing ``train_state.pt`` is resumed.
    :param stage_name: names the stage in errors and the progress bar.
    :param registry: plugin registry for loss lookup (default: the process-wide one).
    :param hooks: technique extensions (extra loss terms, teacher forward, adapters).
    :param discriminator: a module mapping (N, 3, H, W) images in [0, 1] to logits; needed by ``gan``.
    :param seed: data order and crops, when ``config.seed`` is None (default 0).
    :param dataset: (lr, hr) pairs to train on instead of the patches of ``data.train``.
    """
    trainer = Trainer(
        model, config, data, scale, work_dir=work_dir, stage_name=stage_name, registry=registry, hooks=hooks,
        discriminator=discriminator, device=device, seed=seed, progress=progress, dataset=dataset,
    )
    return trainer.run(resume=resume)


class Trainer:
    """The state of one training run; :func:`fit` is the way to use it."""

    def __init__(
        self, model: nn.Module, config: TrainConfig, data: DataConfig, scale: int, *, work_dir: Path,
        stage_name: str = "train", registry: Any = None, hooks: Sequence[TrainingHook] = (),
        discriminator: nn.Module | None = None, device: str | torch.device = "cpu", seed: int | None = None,
        progress: bool = True, dataset: Dataset[Any] | None = None,
    ) -> None:
        if registry is None:
            from srcompress.registry import default_registry

            registry = default_registry()
        self.config, self.data, self.scale, self.stage = config, data, scale, stage_name
        self.registry = registry
        self.work_dir = Path(work_dir)
        self.hooks = list(hooks)
        self.progress = progress
        self.seed = config.seed if config.seed is not None else (seed if seed is not None else 0)
        self.info: DistInfo = distributed.setup(device)
        self.device = self.info.device
        self.amp_dtype = self._amp_dtype()
        self.memory_format = torch.channels_last if config.channels_last else torch.preserve_format

        self.model = model.to(self.device, memory_format=self.memory_format)
        for hook in self.hooks:
            hook.setup(self.model, self.device)
        extra = {name: term for hook in self.hooks for name, term in hook.terms().items()}
        self.criterion: Criterion = build_criterion(config.losses, registry, extra).to(self.device)
        self.adversarial = [m for _, _, m in self.criterion.named_terms() if getattr(m, "requires_discriminator", False)]
        self.disc = discriminator.to(self.device, memory_format=self.memory_format) if discriminator is not None else None
        if self.adversarial and self.disc is None:
            raise SrcompressError(f"stage '{stage_name}': loss 'gan' needs a discriminator: add 'discriminator: {{name: ...}}' to the stage")
        self.hook_params = [p for hook in self.hooks for p in hook.parameters()]

        self.stream = self._stream(dataset)
        self.total = config.total_steps(self.stream.steps_per_epoch)
        self.optimizer = self._optimizer([p for p in self.model.parameters() if p.requires_grad], self.hook_params, config.lr)
        self.disc_optimizer = (
            self._optimizer(list(self.disc.parameters()), [], config.disc_lr or config.lr) if self.disc is not None else None
        )
        scaling = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=scaling)
        self.disc_scaler = torch.amp.GradScaler(self.device.type, enabled=scaling)
        self.ema = EMA(self.model, config.ema) if config.ema else None

        self.step = 0
        self.lr_scale = 1.0
        self.history = TrainHistory(val_metric=config.val_metric)
        self.val_entry = registry.get_metric(config.val_metric) if config.val_every else None
        self.best_score: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.resumed_from: int | None = None
        self.done_state: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------------ set-up
    def _amp_dtype(self) -> torch.dtype | None:
        if self.config.amp == "none":
            return None
        if self.device.type != "cuda":
            warnings.warn(f"stage '{self.stage}': amp {self.config.amp} needs CUDA; training in float32 on {self.device}",
                          stacklevel=3)
            return None
        return torch.float16 if self.config.amp == "fp16" else torch.bfloat16

    def _stream(self, dataset: Dataset[Any] | None) -> BatchStream:
        data = self.data
        if data.batch % self.info.world:
            raise DataError(f"data.batch ({data.batch}) must be a multiple of the number of processes ({self.info.world})")
        if dataset is None:
            if data.patch % self.scale:
                raise DataError(f"data.patch ({data.patch}) must be a multiple of the scale ({self.scale})")
            from srcompress.data import PatchDataset

            # cache_lr: each image is cut many times; its whole LR costs 1/scale^2 of the cached HR
            dataset = PatchDataset(data.train, self.scale, data.patch, root=data.root, augment=True, seed=self.seed,
                                   cache_lr=True)
        return BatchStream(
            dataset, global_batch=data.batch, rank=self.info.rank, world=self.info.world, seed=self.seed,
            workers=data.workers, pin_memory=self.device.type == "cuda",
        )

    def _optimizer(self, params: list[nn.Parameter], extra: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        config = self.config
        groups: list[dict[str, Any]] = [{"params": params, "base_lr": lr}]
        if extra:
            groups.append({"params": extra, "base_lr": lr})
        if config.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        return cls(groups, lr=lr, betas=config.betas, weight_decay=config.weight_decay)

    # ------------------------------------------------------------------------------------ run
    def run(self, *, resume: bool = True) -> TrainResult:
        state_file = self.work_dir / STATE_FILE
        if resume and state_file.is_file():
            self._load(read_state(state_file), state_file)
        else:
            self._seed_everything()
        try:
            if self.done_state is None:
                self._train()
                self._finish()
        finally:
            for hook in self.hooks:
                hook.teardown()
        return TrainResult(
            model=self.model, history=self.history, steps=self.step, best_score=self.best_score, best_step=self.best_step,
            best_metric=self.config.val_metric,
            resumed_from=self.resumed_from, skipped_steps=len(self.history.skipped), world_size=self.info.world,
        )

    def _seed_everything(self) -> None:
        torch.manual_seed(self.seed + self.info.rank)
        np.random.seed(self.seed + self.info.rank)
        random.seed(self.seed + self.info.rank)

    def _train(self) -> None:
        model = self._wrapped()
        self.model.train()
        self.criterion.train()
        if self.disc is not None:
            self.disc.train()
        window = _Window()
        bar = self._bar()
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = self.stream.iterate(self.step)
        try:
            while self.step < self.total:
                lr, hr = next(batches)
                values = self._train_step(model, lr, hr)
                self.step += 1
                if values is not None:
                    window.add(values)
                if self.step % self.config.log_every == 0 or self.step == self.total:
                    self._record(window, bar)
                    window = _Window()
                if self.config.val_every and (self.step % self.config.val_every == 0 or self.step == self.total):
                    self._validate_and_keep(bar)
                if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                    self._save()
                if bar is not None:
                    bar.update(1)
        finally:
            batches.close()  # type: ignore[attr-defined]  # shuts DataLoader workers down
            if bar is not None:
                bar.close()

    def _wrapped(self) -> nn.Module:
        if not self.info.distributed:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # static_graph: published SR nets carry dead weights (the released KD student never runs two
        # of its blocks); a static graph tolerates unused parameters without a per-step graph walk.
        return DistributedDataParallel(self.model, device_ids=ids, static_graph=True)

    def _bar(self) -> Any:
        if not self.progress or not self.info.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total, initial=self.step, desc=self.stage, unit="step", dynamic_ncols=True, leave=False)

    # ------------------------------------------------------------------------------------ one step
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _set_lr(self) -> float:
        factor = lr_factor(self.config, self.step, self.total) * self.lr_scale
        for optimizer in (self.optimizer, self.disc_optimizer):
            if optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
        return self.config.lr * factor

    def _buffers(self) -> list[torch.Tensor]:
        modules = [self.model] + ([self.disc] if self.disc is not None else [])
        return [b for m in modules for b in m.buffers()]

    def _train_step(self, model: nn.Module, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float] | None:
        """One optimizer step; returns the (process-averaged) loss values, or None if skipped."""
        lr = lr.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        hr = hr.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        self._set_lr()
        rng = capture_rng() if self.config.on_nan == "stop" else None
        buffers = [b.detach().clone() for b in self._buffers()]
        self.optimizer.zero_grad(set_to_none=True)

        with self._autocast():
            sr = model(lr)
            inputs = LossInputs(sr=sr, hr=hr, lr=lr)
            for hook in self.hooks:
                hook.before_loss(inputs)
            if self.disc is not None and self.adversarial:
                self.disc.requires_grad_(False)
                inputs.extras[DISC_FAKE] = self.disc(sr)
                with torch.no_grad():
                    inputs.extras[DISC_REAL] = self.disc(hr)
            total, terms = self.criterion(inputs)
        self.scaler.scale(total).backward()
        names = [*terms, "total"]
        scalars = [*(v.detach().float().reshape(()) for v in terms.values()), total.detach().float().reshape(())]
        if self.disc is not None:
            names.append(_DISC_TERM)
            scalars.append(self._disc_backward(sr.detach(), hr))

        distributed.sync_gradients(self.hook_params, self.info)
        self.scaler.unscale_(self.optimizer)
        norms = [self._grad_norm(self.optimizer)]
        if self.disc is not None and self.disc_optimizer is not None:
            distributed.sync_gradients(self.disc.parameters(), self.info)
            self.disc_scaler.unscale_(self.disc_optimizer)
            norms.append(self._grad_norm(self.disc_optimizer))
        reduced = distributed.reduce_mean(torch.stack(scalars + norms), self.info).tolist()
        values = dict(zip(names, reduced[: len(names)], strict=True))
        problem = self._first_nonfinite(values, reduced[len(names) :])
        if problem is not None:
            self._diverged(problem, buffers, rng)
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.disc_optimizer is not None:
            self.disc_scaler.step(self.disc_optimizer)
            self.disc_scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return values

    def _disc_backward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        assert self.disc is not None and self.disc_optimizer is not None
        self.disc.requires_grad_(True)
        self.disc_optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            adversarial = self.adversarial[0] if self.adversarial else AdversarialLoss()
            loss = adversarial.discriminator_loss(self.disc(hr), self.disc(sr))
        self.disc_scaler.scale(loss).backward()
        return loss.detach().float().reshape(())

    def _grad_norm(self, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        norm = torch.nn.utils.get_total_norm(grads)
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(
                [p for group in optimizer.param_groups for p in group["params"]], self.config.grad_clip, norm
            )
        return norm.float()

    def _first_nonfinite(self, values: Mapping[str, float], norms: Sequence[float]) -> tuple[str, float] | None:
        for name, value in values.items():
            if not math.isfinite(value):
                label = "the discriminator loss" if name == _DISC_TERM else (
                    "the total loss" if name == "total" else f"loss term '{name}'")
                return label, value
        if self.amp_dtype == torch.float16:
            return None  # fp16 overflow in gradients is expected: the grad scaler skips the step
        for label, norm in zip(("the gradient norm", "the discriminator's gradient norm"), norms, strict=False):
            if not math.isfinite(norm):
                return label, norm
        return None

    def _diverged(self, problem: tuple[str, float], buffers: list[torch.Tensor], rng: dict[str, Any] | None) -> None:
        with torch.no_grad():
            for buffer, saved in zip(self._buffers(), buffers, strict=True):
                buffer.copy_(saved)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.update()  # after unscale_ without step: resets the scaler (a no-op when disabled)
        if self.disc_optimizer is not None:
            self.disc_optimizer.zero_grad(set_to_none=True)
            self.disc_scaler.update()
        term, value = problem
        number = self.step + 1
        if self.config.on_nan == "skip" and len(self.history.skipped) < self.config.max_skips:
            self.lr_scale *= 0.5
            self.history.skipped.append(number)
            warnings.warn(f"stage '{self.stage}' step {number}: {term} is {_describe(value)}; step skipped, "
                          f"learning rate halved to {self.lr_scale:g}x", stacklevel=2)
            return
        if rng is not None:
            restore_rng(rng)
        kept = self._save()
        hint = ("lower lr or set on_nan: skip" if self.config.on_nan == "stop"
                else f"{self.config.max_skips} steps were skipped already; lower lr")
        raise TrainingDivergedError(self.stage, number, term, value, kept, hint)

    # ------------------------------------------------------------------------------------ records
    def _record(self, window: _Window, bar: Any) -> None:
        if not window.count:
            return
        means = window.means()
        self.history.steps.append(self.step)
        self.history.loss.append(means.pop("total"))
        for name, value in means.items():
            self.history.terms.setdefault(name, []).append(value)
        self.history.lr.append(self.config.lr * lr_factor(self.config, self.step - 1, self.total) * self.lr_scale)
        if bar is not None:
            postfix = {"loss": f"{self.history.loss[-1]:.4g}"}
            if self.history.val_score:
                postfix[self.config.val_metric] = f"{self.history.val_score[-1]:.2f}"
            bar.set_postfix(postfix, refresh=False)

    def _validate_and_keep(self, bar: Any) -> None:
        if self.history.val_steps and self.history.val_steps[-1] == self.step:
            return
        scores = self.validate() if self.info.is_main else None
        scores = distributed.broadcast_object(scores, self.info)
        mean = sum(scores.values()) / len(scores)
        self.history.val_steps.append(self.step)
        self.history.val_score.append(mean)
        for name, value in scores.items():
            self.history.val_sets.setdefault(name, []).append(value)
        if self.config.keep_best and self._improves(mean):
            self.best_score, self.best_step = mean, self.step
            self.best_state = self.ema.state_dict() if self.ema is not None else cpu_state(self.model)
            if self.info.is_main:
                from srcompress.checkpoint import atomic_torch_save

                atomic_torch_save(self.best_state, self.work_dir / BEST_FILE)
        if bar is not None:
            loss = f"{self.history.loss[-1]:.4g}" if self.history.loss else "-"
            bar.set_postfix({"loss": loss, self.config.val_metric: f"{mean:.2f}"}, refresh=False)

    def _improves(self, score: float) -> bool:
        """Whether ``score`` beats the best so far (NaN never does; the metric says which way is better)."""
        if math.isnan(score):
            return False
        if self.best_score is None:
            return True
        higher = self.val_entry.higher_is_better if self.val_entry is not None else True
        return score > self.best_score if higher else score < self.best_score

    def validate(self) -> dict[str, float]:
        """Mean ``val_metric`` (PSNR: dB on Y, shave = scale) per validation set, current (or EMA) weights."""
        from srcompress.measure.evaluate import evaluate

        sets = self.config.val_sets or self.data.eval
        options: dict[str, Any] = {"registry": self.registry}
        limit = self.config.val_limit or self.data.eval_limit
        if limit is not None and "limit" in inspect.signature(evaluate).parameters:
            options["limit"] = limit
        with self._evaluation_weights():
            result = evaluate(self.model, sets, self.scale, root=self.data.root, metrics=(self.config.val_metric,),
                              device=str(self.device), **options)
        scores = {name: result.mean(name, self.config.val_metric) for name in result.datasets}
        return {name: float(value) if value is not None else math.nan for name, value in scores.items()}

    @contextlib.contextmanager
    def _evaluation_weights(self) -> Iterator[None]:
        saved = cpu_state(self.model) if self.ema is not None else None
        if self.ema is not None:
            self.model.load_state_dict(self.ema.shadow)
        self.model.eval()
        try:
            yield
        finally:
            if saved is not None:
                self.model.load_state_dict(saved)
            self.model.train()

    # ------------------------------------------------------------------------------------ state
    def _payload(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "step": self.step,
            "total": self.total,
            "world": self.info.world,
            "model": cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "lr_scale": self.lr_scale,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "disc": cpu_state(self.disc) if self.disc is not None else None,
            "disc_optimizer": self.disc_optimizer.state_dict() if self.disc_optimizer is not None else None,
            "disc_scaler": self.disc_scaler.state_dict(),
            "hook_params": [p.detach().cpu().clone() for p in self.hook_params],
            "data_position": list(self.stream.position(self.step)),
            "history": self.history.to_dict(),
            "best_score": self.best_score,
            "best_step": self.best_step,
            "done": self.done_state,
        }

    def _save(self) -> Path | None:
        """Write ``train_state.pt`` (rank 0; every rank contributes its RNG state)."""
        rngs = distributed.all_gather_objects(capture_rng(), self.info)
        if not self.info.is_main:
            return self.work_dir / STATE_FILE
        payload = self._payload()
        payload["rng"] = rngs
        return write_state(payload, self.work_dir / STATE_FILE)

    def _load(self, payload: Mapping[str, Any], path: Path) -> None:
        from srcompress.errors import CheckpointError

        if payload["stage"] != self.stage:
            raise CheckpointError(f"{path}: written by stage '{payload['stage']}', not '{self.stage}'; delete it or use another work_dir")
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.disc is not None:
                if payload["disc"] is None:
                    raise CheckpointError(f"{path}: has no discriminator state but this stage trains one; delete it")
                self.disc.load_state_dict(payload["disc"])
                self.disc_optimizer.load_state_dict(payload["disc_optimizer"])  # type: ignore[union-attr]
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{path}: does not match this model or optimizer ({first}); delete it to start afresh") from None
        self.scaler.load_state_dict(payload["scaler"])
        self.disc_scaler.load_state_dict(payload["disc_scaler"])
        if self.ema is not None and payload["ema"] is not None:
            self.ema.load_state_dict(payload["ema"])
        with torch.no_grad():
            for param, saved in zip(self.hook_params, payload["hook_params"], strict=False):
                param.copy_(saved)
        self.step = int(payload["step"])
        self.lr_scale = float(payload["lr_scale"])
        self.history = TrainHistory.from_dict(payload["history"])
        self.best_score = payload.get("best_score", payload.get("best_psnr"))  # best_psnr: written before val_metric
        self.best_step = payload["best_step"]
        if self.best_step is not None and (self.work_dir / BEST_FILE).is_file():
            self.best_state = torch.load(self.work_dir / BEST_FILE, map_location="cpu", weights_only=True)
        rngs = payload["rng"]
        if len(rngs) == self.info.world:
            restore_rng(rngs[self.info.rank])
        else:
            warnings.warn(f"{path}: written by {len(rngs)} process(es), resumed by {self.info.world}: "
                          "data order is kept but random states are not", stacklevel=3)
        self.resumed_from = self.step
        if payload["done"] is not None:
            self.done_state = payload["done"]
            self.model.load_state_dict(self.done_state)

    def _finish(self) -> None:
        """Put the result weights in the model (best, else EMA) and mark the state file done."""
        if self.config.keep_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        elif self.ema is not None:
            self.model.load_state_dict(self.ema.shadow)
        self.done_state = cpu_state(self.model)
        self._save()
