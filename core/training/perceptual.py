"""VGG19 perceptual loss (Johnson et al.; SRGAN, ESRGAN, F2SRGAN): MSE between VGG19 features.

The ImageNet weights are torchvision's ``vgg19-dcbb9e9d.pth`` (548 MB). They are read from the torch
hub cache (``~/.cache/torch/hub/checkpoints/``, or ``$TORCH_HOME/hub/checkpoints/``) or from the
file named by the ``weights`` option; they are downloaded only when the loss term says
``download: true``, so no run fetches half a gigabyte silently.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from attrs import define
from torch import nn

from srcompress.config import option
from srcompress.errors import CheckpointError

from .losses import LossInputs

__all__ = ["VGG19_FILENAME", "VGG19_LAYERS", "VGG19_URL", "VGGConfig", "VGGPerceptualLoss", "vgg19_features"]

VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILENAME}"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# VGG19 ("E") convolution counts per block; names follow the usual conv{block}_{i} / relu / pool.
_BLOCKS = (2, 2, 4, 4, 4)


def _layer_names() -> tuple[str, ...]:
    names: list[str] = []
    for block, convs in enumerate(_BLOCKS, start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


VGG19_LAYERS: tuple[str, ...] = _layer_names()
"""Names of ``torchvision.models.vgg19().features[i]`` in order (``conv5_4`` is index 34)."""


def _check_layer(_inst: object, _attribute: object, value: str) -> None:
    if value not in VGG19_LAYERS:
        raise ValueError(f"must be a VGG19 layer name like conv5_4 or relu2_2 (got {value!r})")


@define(frozen=True, kw_only=True)
class VGGConfig:
    """Options of the VGG19 perceptual loss."""

    layer: str = option(
        "conv5_4", help="Feature layer compared (conv{b}_{i}, relu{b}_{i} or pool{b}); F2SRGAN uses conv5_4.",
        validator=_check_layer,
    )
    weights: str | None = option(
        None, help=f"Path of a VGG19 ImageNet state dict; None: {VGG19_FILENAME} in the torch hub cache."
    )
    download: bool = option(
        False, help=f"Download {VGG19_FILENAME} (548 MB) into the torch hub cache when it is missing."
    )


def _hub_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def _missing_message(path: Path) -> str:
    return (
        f"VGG19 perceptual loss needs torchvision's ImageNet weights: {path} does not exist. "
        f"Place {VGG19_FILENAME} (from {VGG19_URL}) in {path.parent}/, or give its path as the loss "
        f"option 'weights', or set 'download: true' on the vgg loss term"
    )


def _weights_file(config: VGGConfig) -> Path:
    path = Path(config.weights).expanduser() if config.weights else _hub_file()
    if path.is_file():
        return path
    if config.download and not config.weights:
        try:
            torch.hub.download_url_to_file(VGG19_URL, str(path), hash_prefix=VGG19_FILENAME.split("-")[1][:8])
        except Exception as exc:  # network errors of every kind: the message says what to do offline
            raise CheckpointError(f"cannot download {VGG19_URL} ({exc}). {_missing_message(path)}") from exc
        return path
    raise CheckpointError(_missing_message(path))


def vgg19_features(config: VGGConfig) -> nn.Sequential:
    """torchvision's VGG19 ``features`` up to ``config.layer`` with ImageNet weights (see module doc)."""
    from torchvision.models import vgg19

    path = _weights_file(config)
    with torch.device("meta"):  # the 120 M-parameter classifier is never materialised
        features = vgg19().features[: VGG19_LAYERS.index(config.layer) + 1]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable VGG19 state dict ({exc}); delete it and place {VGG19_FILENAME} again") from exc
    wanted = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    wanted = {k: v for k, v in wanted.items() if int(k.split(".")[0]) < len(features)}
    features = features.to_empty(device="cpu")
    try:
        features.load_state_dict(wanted, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: not torchvision's VGG19 ImageNet weights ({exc})") from exc
    return features


class VGGPerceptualLoss(nn.Module):
    """MSE between VGG19 features of ``sr`` and ``hr`` (inputs in [0, 1], ImageNet-normalised inside).

    :param network: a torchvision ``vgg19()`` (or its ``features``) to use instead of loading the
        ImageNet weights, e.g. a randomly initialised one in tests; it is cut at ``config.layer``.
    """

    def __init__(self, config: VGGConfig | None = None, network: nn.Module | None = None) -> None:
        super().__init__()
        config = config or VGGConfig()
        if network is None:
            features = vgg19_features(config)
        else:
            layers = getattr(network, "features", network)
            features = layers[: VGG19_LAYERS.index(config.layer) + 1]
        self.layer = config.layer
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        super().train(mode)
        self.features.eval()  # a fixed feature extractor, whatever the trainer's mode
        return self

    def _features(self, image: torch.Tensor) -> torch.Tensor:
        return self.features((image - self.mean) / self.std)

    def forward(self, inputs: LossInputs) -> torch.Tensor:
        with torch.no_grad():
            target = self._features(inputs.hr)
        return F.mse_loss(self._features(inputs.sr), target)
