"""SwinIR-light (Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021), the
lightweight SR configuration of the official JingyunLiang/SwinIR ``models/network_swinir.py``.

(x - DIV2K mean) -> 3x3 conv to C -> K residual Swin transformer blocks (RSTB: D Swin layers with
(shifted) window self-attention and an MLP, then a 3x3 conv, plus the block's skip) -> LayerNorm ->
3x3 conv -> skip from the first conv -> 3x3 conv to 3 r^2 maps + PixelShuffle(r) ("pixelshuffledirect")
-> + mean. Lightweight configuration: C=60, depths [6, 6, 6, 6], heads [6, 6, 6, 6], window 8,
MLP ratio 2, img_range 1, patch size 1 with LayerNorm after the patch embedding, '1conv' residual
connection. Parameters (``sum(p.numel())``, as the official module gives them): 910,152 / 918,267 /
929,628 at x2 / x3 / x4; the paper's 878K / 886K / 897K leave out the 24 x 1,350 = 32,400 entries of
the relative position bias tables.

Differences from the official module, none changing the maths:
- the attention mask of shifted windows is computed for the actual input size at every forward
  (the official caches one for ``img_size`` as the buffer ``attn_mask``, recomputing it for other
  sizes); an official state dict loads after dropping its ``attn_mask`` keys;
- an input whose height or width is not a multiple of the window is padded by mirroring
  (``cat([x, flip(x)])``, as the official test script does) up to the next multiple, and the output is
  cropped back to scale x the input size (the official test script pads a full extra window when the
  size is already a multiple; we pad nothing then);
- an RSTB takes and returns NCHW feature maps (the official one works on tokens), so that a hook on
  ``layers.i`` sees a feature map; token <-> map reshapes are pure layout.
Dropout rates are 0 in the official configuration and are left out; stochastic depth (drop path,
0.1 as the official default, linearly increasing over the 24 layers) is kept.

Boundary: RGB in [0, 1] -> RGB (the network works on [0, 1], img_range 1).
"""

from __future__ import annotations

import torch
from attrs import define, validators
from torch import Tensor, nn

from srcompress.config import in_range, option
from srcompress.entries import ModelHints

from .common import DIV2K_RGB_MEAN, check_scale

__all__ = [
    "RSTB",
    "SCALES",
    "SwinIRLight",
    "SwinIROptions",
    "SwinTransformerBlock",
    "WindowAttention",
    "build",
    "hints",
]

SCALES = (2, 3, 4)
_positive_ints = validators.deep_iterable(
    member_validator=in_range(1, None), iterable_validator=validators.instance_of(tuple)
)


@define(frozen=True, kw_only=True)
class SwinIROptions:
    """SwinIR options (defaults: the official lightweight SR configuration)."""

    embed_dim: int = option(60, help="Feature width C of the transformer (embed_dim).", validator=in_range(1, None))
    depths: tuple[int, ...] = option(
        (6, 6, 6, 6), help="Swin layers in each RSTB (one entry per RSTB).", converter=tuple, validator=_positive_ints
    )
    num_heads: tuple[int, ...] = option(
        (6, 6, 6, 6),
        help="Attention heads in each RSTB (same length as depths).",
        converter=tuple,
        validator=_positive_ints,
    )
    window_size: int = option(8, help="Side of the attention windows, in LR pixels.", validator=in_range(2, None))
    mlp_ratio: float = option(2.0, help="MLP hidden width / embed_dim.", validator=in_range(0.0, None, lo_open=True))
    drop_path_rate: float = option(
        0.1,
        help="Stochastic depth rate of the last Swin layer (linear from 0); training only.",
        validator=in_range(0.0, 1.0, hi_open=True),
    )


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) -> (B * H/window * W/window, window * window, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> Tensor:
    """(nW, window^2, window^2) additive mask: -100 between tokens from different regions after the roll."""
    img = torch.zeros((1, h, w, 1), device=device)
    bounds = ((0, -window), (-window, -shift), (-shift, None))
    region = 0
    for hs in bounds:
        for ws in bounds:
            img[:, slice(*hs), slice(*ws), :] = region
            region += 1
    windows = window_partition(img, window).squeeze(-1)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class DropPath(nn.Module):
    """Stochastic depth: in training, drop the whole residual branch of a sample with probability p."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"swinir_light: embed_dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.softmax = nn.Softmax(dim=-1)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(b // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(
                -1, self.num_heads, n, n
            )
        x = (self.softmax(attn) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    """LayerNorm -> (shifted) window attention -> skip -> LayerNorm -> MLP -> skip, on (B, H*W, C) tokens."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, size: tuple[int, int], mask: Tensor | None) -> Tensor:
        h, w = size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), mask=mask if self.shift else None)
        y = window_reverse(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BasicLayer(nn.Module):
    """D Swin blocks alternating regular and shifted (by window/2) windows."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, drop_path: list[float]):
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(
            [
                SwinTransformerBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drop_path[i])
                for i in range(depth)
            ]
        )

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        mask = (
            shifted_window_mask(size[0], size[1], self.window, self.window // 2, x.device)
            if len(self.blocks) > 1
            else None
        )
        for block in self.blocks:
            x = block(x, size, mask)
        return x


class RSTB(nn.Module):
    """Residual Swin transformer block on NCHW maps: x + conv(swin_layers(x))."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, drop_path: list[float]):
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window, mlp_ratio, drop_path)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.residual_group(x.flatten(2).transpose(1, 2), (h, w))
        return self.conv(tokens.transpose(1, 2).reshape(b, c, h, w)) + x


class PatchEmbed(nn.Module):
    """Patch size 1: NCHW -> (B, H*W, C) tokens, then LayerNorm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


def _mirror_pad(x: Tensor, multiple: int) -> Tensor:
    """Pad bottom/right by mirroring (``cat([x, flip(x)])``, repeated) to a multiple of ``multiple``."""
    for dim in (2, 3):
        size = x.shape[dim]
        target = -(-size // multiple) * multiple
        while x.shape[dim] < target:
            x = torch.cat([x, torch.flip(x, [dim])], dim)
        x = x.narrow(dim, 0, target)
    return x


class SwinIRLight(nn.Module):
    """SwinIR with the "pixelshuffledirect" upsampler. Input RGB (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW)."""

    def __init__(self, scale: int, options: SwinIROptions) -> None:
        super().__init__()
        if len(options.depths) != len(options.num_heads):
            raise ValueError(
                f"swinir_light: depths {options.depths} and num_heads {options.num_heads} differ in length"
            )
        dim, window = options.embed_dim, options.window_size
        self.scale = scale
        self.window_size = window
        self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(3, dim, 3, padding=1)
        self.patch_embed = PatchEmbed(dim)
        total = sum(options.depths)
        rates = [options.drop_path_rate * i / max(1, total - 1) for i in range(total)]  # as torch.linspace
        starts = [sum(options.depths[:i]) for i in range(len(options.depths))]
        self.layers = nn.ModuleList(
            [
                RSTB(dim, depth, heads, window, options.mlp_ratio, rates[start : start + depth])
                for depth, heads, start in zip(options.depths, options.num_heads, starts, strict=True)
            ]
        )
        self.norm = nn.LayerNorm(dim)
        self.conv_after_body = nn.Conv2d(dim, dim, 3, padding=1)
        self.upsample = nn.Sequential(nn.Conv2d(dim, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))
        self.apply(_init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x = self.patch_embed(x).transpose(1, 2).reshape(b, c, h, w)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        x = _mirror_pad(x, self.window_size) - self.mean
        first = self.conv_first(x)
        out = self.upsample(self.conv_after_body(self.forward_features(first)) + first) + self.mean
        return out[..., : h * self.scale, : w * self.scale]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build(scale: int, options: SwinIROptions) -> SwinIRLight:
    check_scale("swinir_light", scale, SCALES)
    return SwinIRLight(scale, options)


def hints(model: nn.Module) -> ModelHints:
    blocks = [
        f"layers.{i}.residual_group.blocks.{j}"
        for i, layer in enumerate(model.layers)
        for j in range(len(layer.residual_group.blocks))
    ]
    return ModelHints(
        never_prune=("upsample.0", *(f"{b}.attn.qkv" for b in blocks)),
        pixel_shuffle_convs={"upsample.0": model.scale},
        feature_taps=tuple(f"layers.{i}" for i in range(len(model.layers))),
        residual_inner=tuple(f"{b}.mlp.fc1" for b in blocks),
    )
