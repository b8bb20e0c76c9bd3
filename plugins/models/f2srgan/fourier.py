"""F2SRGAN's Fourier unit, in a prunable real layout, and its FFT-free export forms.

:class:`FourierUnit` computes ``irfft2(Wc * rfft2(x))`` (``norm="ortho"``) with one complex
spectral weight ``Wc = Wr + i Wi`` (out x in) shared by every frequency, in a real layout: one 1x1
conv ``conv`` with the weight ``[Wr | -Wi]`` (out, 2 in) maps ``cat([re, im], 1)`` to the real part
and ``cat([im, -re], 1)`` to the imaginary part. That is exactly the published parameter count and
keeps the complex structure by construction; torch-pruning 1.6.1 follows it (checked: a unit
pruned to half its channels equals the original with those channels zeroed, error 0.0).

Because the weight does not depend on the frequency, the FFT along H cancels and along W the unit is
a row-wise Hilbert-type transform (``shared/FACTS.md``)::

    irfft2(Wc * rfft2(x)) = Wr x + Wi (x @ M),
    M[w, n] = (2/W) * sum_{k=1}^{ceil(W/2)-1} sin(2 pi k (w - n) / W)   (DC and Nyquist removed)

(``x @ M`` is ``irfft(i * rfft(x))`` along each row; checked against the FFT in float64 to 1e-14,
odd and even sizes.)

:class:`RowHilbertFourierUnit` is that form: two 1x1 convs plus one W x W matmul per row.
:class:`DFTBasisFourierUnit` is the general form for any spectral map (also one that varies with the
frequency): rfft2 and irfft2 written as real matmuls with cos/sin bases. Both build their bases from
the input's H and W at run time with plain tensor ops (``arange``, ``cos``, ``sin``, ``matmul``), so
they follow dynamic spatial sizes and contain no FFT op.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = [
    "ComplexPointwise",
    "DFTBasisFourierUnit",
    "FourierUnit",
    "RowHilbertFourierUnit",
    "complex_weight_to_real_layout",
    "row_hilbert_matrix",
    "to_export_form",
]


def complex_weight_to_real_layout(complex_weight: torch.Tensor, fftshift_channels: bool = True) -> torch.Tensor:
    """A published ``complex_weight`` (out, in, 1, 1, 2) as our conv weight ``[Wr | -Wi]`` (out, 2 in, 1, 1).

    The published unit wraps its complex conv in ``fftshift`` / ``ifftshift`` with no ``dim``, which
    also rolls the channel axis: input channels by ``in // 2`` before the conv and output channels
    back by ``out // 2`` after it. A pointwise conv commutes with the spatial (and batch) rolls, so
    only the channel rolls remain, absorbed here into the weight (``fftshift_channels=True``).
    """
    w = torch.view_as_complex(complex_weight.detach().float().contiguous())[..., 0, 0]
    if fftshift_channels:
        w = torch.roll(w, shifts=(-(w.shape[0] // 2), -(w.shape[1] // 2)), dims=(0, 1))
    return torch.cat([w.real, -w.imag], dim=1)[..., None, None].contiguous()


class FourierUnit(nn.Module):
    """``irfft2(Wc * rfft2(x, norm="ortho"))`` with a frequency-independent complex channel mix ``Wc``.

    :param in_channels: channels of ``x``.
    :param out_channels: channels of the output.

    ``conv`` holds ``[Wr | -Wi]`` (out, 2 in, 1, 1), no bias. Shapes: (N, in, H, W) -> (N, out, H,
    W); any H, W >= 1. Computes in float32 or float64 (no half FFT on CPU), returns ``x.dtype``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * in_channels, out_channels, 1, bias=False)
        nn.init.normal_(self.conv.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        real_x = x if x.dtype in (torch.float32, torch.float64) else x.float()
        spec = torch.fft.rfft2(real_x, norm="ortho")
        dtype = self.conv.weight.dtype
        re, im = spec.real.to(dtype), spec.imag.to(dtype)
        out_re = self.conv(torch.cat([re, im], dim=1))
        out_im = self.conv(torch.cat([im, -re], dim=1))
        out = torch.fft.irfft2(torch.complex(out_re, out_im), s=(height, width), norm="ortho")
        return out.to(x.dtype)

    def complex_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Wr, Wi)``, each (out, in)."""
        w = self.conv.weight.detach()[..., 0, 0]
        half = w.shape[1] // 2
        return w[:, :half].clone(), -w[:, half:].clone()

    def export_form(self, form: str = "auto") -> nn.Module:
        """An FFT-free module computing the same function.

        :param form: ``"auto"`` or ``"hilbert"``: :class:`RowHilbertFourierUnit` (the cheapest;
            exact because the weight is the same at every frequency); ``"dft"``:
            :class:`DFTBasisFourierUnit` around a copy of this unit's complex mix (the general form).
        """
        if form not in ("auto", "hilbert", "dft"):
            raise ValueError(f"form must be 'auto', 'hilbert' or 'dft' (got {form!r})")
        if form == "dft":
            return DFTBasisFourierUnit(ComplexPointwise(copy.deepcopy(self.conv)))
        return RowHilbertFourierUnit(*self.complex_parts())


class ComplexPointwise(nn.Module):
    """Complex 1x1 conv on a spectrum in the ``cat([re, im], 1)`` layout: (N, 2 in, ...) -> (N, 2 out, ...).

    ``conv`` holds ``[Wr | -Wi]`` (out, 2 in, 1, 1) as in :class:`FourierUnit`.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        re, im = spectrum.chunk(2, dim=1)
        return torch.cat([self.conv(spectrum), self.conv(torch.cat([im, -re], dim=1))], dim=1)


def _angles(count: int, length: int, like: torch.Tensor) -> torch.Tensor:
    """``2 pi (k * n mod length) / length`` for k < count, n < length; exact integer phase first."""
    k = torch.arange(count, device=like.device)
    n = torch.arange(length, device=like.device)
    modulus = torch.scalar_tensor(length, dtype=k.dtype, device=like.device)  # a tensor: exports as Mod
    phase = torch.remainder(k[:, None] * n[None, :], modulus)
    return phase.to(like.dtype) * (2.0 * math.pi / length)


def row_hilbert_matrix(width: int, like: torch.Tensor) -> torch.Tensor:
    """``M`` (width x width) such that ``x @ M = irfft(i * rfft(x))`` along the last axis.

    ``M[w, n] = (2/W) sum_{k=1}^{ceil(W/2)-1} sin(2 pi k (w - n) / W)``, built as
    ``(2/W) (S^T C - C^T S)`` from cos/sin bases over k (DC and Nyquist excluded). ``like`` gives
    dtype and device. ``width`` may be a traced size (ONNX export with dynamic W).
    """
    kmax = (width + 1) // 2  # k = 1 .. ceil(W/2) - 1
    angle = _angles(kmax, width, like)[1:]
    cos, sin = torch.cos(angle), torch.sin(angle)
    return (sin.transpose(0, 1) @ cos - cos.transpose(0, 1) @ sin) * (2.0 / width)


class RowHilbertFourierUnit(nn.Module):
    """FFT-free form of a :class:`FourierUnit` whose spectral weight is complex (``Wr + i Wi``).

    ``forward(x) = real(x) + imag(x @ M)`` with two 1x1 convs and the row-wise matrix of
    :func:`row_hilbert_matrix`, built from the input width at run time.
    """

    def __init__(self, real: torch.Tensor, imag: torch.Tensor) -> None:
        super().__init__()
        out_c, in_c = real.shape
        self.real = nn.Conv2d(in_c, out_c, 1, bias=False, dtype=real.dtype, device=real.device)
        self.imag = nn.Conv2d(in_c, out_c, 1, bias=False, dtype=real.dtype, device=real.device)
        with torch.no_grad():
            self.real.weight.copy_(real[..., None, None])
            self.imag.weight.copy_(imag[..., None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hilbert = row_hilbert_matrix(x.shape[-1], x)
        return self.real(x) + self.imag(torch.matmul(x, hilbert))


class DFTBasisFourierUnit(nn.Module):
    """``irfft2(spectral(rfft2(x)))`` (``norm="ortho"``) with both transforms as real matmuls.

    :param spectral: maps ``cat([real, imag], 1)`` of shape (N, 2 in, H, W//2+1) to (N, 2 out, H,
        W//2+1); any module, also one whose weights vary with the frequency. For a
        :class:`FourierUnit` it is a :class:`ComplexPointwise` around a copy of its ``conv``.

    Along W: ``rfft`` = cos/sin basis (W//2+1 x W); along H: the full complex DFT (H x H). The
    inverse applies the Hermitian weights (1 for DC and Nyquist, 2 otherwise) and ignores the
    imaginary parts of the DC and Nyquist columns, as ``irfft`` does.
    """

    def __init__(self, spectral: nn.Module) -> None:
        super().__init__()
        self.spectral = spectral

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        half = width // 2 + 1
        angle_w = _angles(half, width, x)  # (half, W)
        angle_h = _angles(height, height, x)  # (H, H), symmetric
        cos_w, sin_w = torch.cos(angle_w), torch.sin(angle_w)
        cos_h, sin_h = torch.cos(angle_h), torch.sin(angle_h)
        norm = (torch.ones((), dtype=x.dtype, device=x.device) * (height * width)).rsqrt()
        # forward: rfft along W, then DFT along H (e^{-i theta})
        a = torch.matmul(x, cos_w.transpose(0, 1))
        b = -torch.matmul(x, sin_w.transpose(0, 1))
        re = torch.matmul(cos_h, a) + torch.matmul(sin_h, b)
        im = torch.matmul(cos_h, b) - torch.matmul(sin_h, a)
        mixed = self.spectral(torch.cat([re, im], dim=1) * norm)
        yr, yi = mixed.chunk(2, dim=1)
        # inverse: DFT along H (e^{+i theta}), then Hermitian c2r along W
        zr = torch.matmul(cos_h, yr) - torch.matmul(sin_h, yi)
        zi = torch.matmul(cos_h, yi) + torch.matmul(sin_h, yr)
        k = torch.arange(half, device=x.device)
        edge = (k == 0) | (2 * k == width)
        weight = torch.where(edge, 1.0, 2.0).to(x.dtype)
        sin_w = torch.where(edge[:, None], torch.zeros_like(sin_w), sin_w)
        out = torch.matmul(zr * weight, cos_w) - torch.matmul(zi * weight, sin_w)
        return out * norm


def to_export_form(model: nn.Module, form: str = "auto") -> nn.Module:
    """A deep copy of ``model`` with every module that has ``export_form()`` replaced by its result.

    Works on any model: the protocol is a method ``export_form(form) -> nn.Module`` returning an
    FFT-free module that computes the same function. ``form`` is passed on (``"auto"``,
    ``"hilbert"``, ``"dft"``). The copy is in the same train/eval mode as ``model``.
    """
    clone = copy.deepcopy(model)
    if hasattr(clone, "export_form") and callable(clone.export_form):
        return clone.export_form(form)
    _replace_children(clone, form)
    return clone


def _replace_children(module: nn.Module, form: str) -> None:
    for name, child in list(module.named_children()):
        if callable(getattr(child, "export_form", None)):
            replacement = child.export_form(form)
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            _replace_children(child, form)
