"""F2SRGAN family: architecture, parameter counts, published-weight conversion, hints, export forms.

Parameter counts come from the authors' files and code (bibom108/F2SRGAN ``model.py`` and
``pretrain_weight/``; khanhhungvu1508/Light-F2SRGAN): F2SRGAN x4 202,233 (24 of them the frozen
mean shifts), x2 184,889 (one upsampling stage), KD student 113,145.
"""

from __future__ import annotations

import copy
from pathlib import Path

import attrs
import pytest
import torch

import srcompress.plugins.models.f2srgan as f2
from srcompress.config import field_help
from srcompress.errors import CheckpointError
from srcompress.weights import build_pretrained, extract_state_dict, load_checkpoint_file

ENTRIES = {e.name: e for e in f2.srcompress_models() if e.role == "sr"}


@pytest.fixture(autouse=True)
def _one_thread() -> object:
    """Tiny inputs: one thread. With 2 threads on the shared 2-core machine, OpenMP spin-waits made
    these tests ~50x slower (5 s instead of 0.1 s for one forward) whenever other jobs ran."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params(model: torch.nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if not p.requires_grad)


def _upstream_fourier_unit(x: torch.Tensor, complex_weight: torch.Tensor) -> torch.Tensor:
    """The published FourierUnit's math (rfftn, fftshift over all axes, complex 1x1, ifftshift, irfftn)."""
    spec = torch.fft.fftshift(torch.fft.rfftn(x, dim=(-2, -1), norm="ortho"))
    w = torch.view_as_complex(complex_weight)[..., 0, 0]
    mixed = torch.einsum("oi,bihw->bohw", w, spec)
    return torch.fft.irfftn(torch.fft.ifftshift(mixed), s=x.shape[-2:], dim=(-2, -1), norm="ortho")


# ------------------------------------------------------------------------------- architecture
@pytest.mark.parametrize(("scale", "total"), [(4, 202_233), (2, 184_889)])
def test_f2srgan_parameter_counts(scale: int, total: int) -> None:
    model = f2.F2SRGAN(scale)
    assert _params(model) == (total, 24)
    assert len(model.upsampler) == {2: 1, 4: 2}[scale]
    assert [i for i, b in enumerate(model.body) if isinstance(b.conv1, f2.FFC)] == list(range(0, 16, 2))


def test_student_and_light_counts() -> None:
    assert _params(f2.F2SRGAN(4, f2.F2SRGANStudentOptions())) == (113_145, 24)
    light = f2.F2SRGAN(4, f2.LightF2SRGANOptions())
    # file: 77,905 values = 77,865 parameters + 40 fake-quant observer buffers (dropped)
    assert _params(light) == (77_865, 24)
    used = {id(p) for i in set(light.block_order) for p in light.body[i].parameters()}
    dead = sum(p.numel() for p in light.body.parameters() if id(p) not in used)
    assert 77_865 - dead - 24 == 39_185  # "params used" of the released Light F2SRGAN (issue 10)


@pytest.mark.parametrize("name", sorted(ENTRIES))
@pytest.mark.parametrize("scale", [2, 4])
def test_forward_shapes_range_and_odd_sizes(name: str, scale: int) -> None:
    entry = ENTRIES[name]
    model = entry.build(scale, entry.options_cls()).eval()
    x = torch.rand(2, 3, 9, 14)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 9 * scale, 14 * scale) and y.dtype == torch.float32
    assert model.sub_mean.weight.requires_grad is False and float(model.sub_mean.bias[0]) == pytest.approx(-0.4488 * 255)


def test_options_validate_and_have_help() -> None:
    import attrs

    for cls in (f2.F2SRGANOptions, f2.F2SRGANStudentOptions, f2.LightF2SRGANOptions, f2.DiscriminatorOptions):
        for attribute in attrs.fields(cls):
            assert field_help(attribute)[0], f"{cls.__name__}.{attribute.name} has no help"
    with pytest.raises(ValueError, match=r"ffc_blocks \[16\] name a block >= blocks \(16\)"):
        f2.F2SRGANOptions(ffc_blocks=[16])
    with pytest.raises(ValueError, match="released_forward needs blocks divisible by 4"):
        f2.F2SRGANOptions(blocks=6, released_forward=True)
    with pytest.raises(ValueError, match="inner_widths has 2 entries for 16 blocks"):
        f2.F2SRGANOptions(inner_widths=[8, 8])
    with pytest.raises(ValueError, match="powers of 2"):
        f2.F2SRGAN(3)
    assert f2.F2SRGANOptions(ffc_blocks=[]).ffc_indices() == ()
    assert f2.F2SRGANOptions(blocks=8, released_forward=True).block_order() == (0, 1, 2, 3, 2, 3, 2, 3)


def test_student_built_from_options_is_the_8_block_no_ffc_net() -> None:
    model = f2.F2SRGAN(4, f2.F2SRGANOptions(blocks=8, ffc_blocks=[], inner_widths=[40] * 8, upsampler_widths=[16, 16]))
    assert not any(isinstance(m, f2.FFC) for m in model.modules())
    assert model.body[0].conv1.pointwise.out_channels == 40 and model.tail.depthwise.in_channels == 16
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


def test_shared_upsampler_slopes_are_one_prelu_parameter_per_stage_and_read_back() -> None:
    options = f2.F2SRGANOptions(blocks=2, ffc_blocks=[], upsampler_widths=[16, 12], upsampler_slopes="shared")
    model = f2.F2SRGAN(4, options)
    assert [stage.act.weight.shape for stage in model.upsampler] == [(1,), (1,)]
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    read, scale = f2.options_from_state_dict(model.state_dict())  # widths from the convs, not the slopes
    assert (read.upsampler_widths, read.upsampler_slopes, scale) == ((16, 12), "shared", 4)
    per_channel, _ = f2.options_from_state_dict(f2.F2SRGAN(4, attrs.evolve(options, upsampler_slopes="per_channel")).state_dict())
    assert (per_channel.upsampler_widths, per_channel.upsampler_slopes) == ((16, 12), "per_channel")
    with pytest.raises(ValueError, match="upsampler_slopes"):
        f2.F2SRGANOptions(upsampler_slopes="per_pixel")


# ------------------------------------------------------------------------------ Fourier unit
@pytest.mark.parametrize(("batch", "height", "width", "cin", "cout"), [(1, 8, 8, 16, 16), (3, 7, 9, 16, 16), (2, 5, 6, 6, 10)])
def test_fourier_unit_matches_published_fftshift_math(batch: int, height: int, width: int, cin: int, cout: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(batch, cin, height, width, dtype=torch.float64)
    complex_weight = torch.randn(cout, cin, 1, 1, 2, dtype=torch.float64)
    unit = f2.FourierUnit(cin, cout).double()
    with torch.no_grad():
        unit.conv.weight.copy_(f2.complex_weight_to_real_layout(complex_weight).double())
    reference = _upstream_fourier_unit(x, complex_weight)
    wr, wi = unit.complex_parts()
    assert unit.conv.weight.shape == (cout, 2 * cin, 1, 1)
    assert torch.allclose(unit(x), reference, atol=1e-5)
    for form, cls in (("auto", f2.RowHilbertFourierUnit), ("hilbert", f2.RowHilbertFourierUnit), ("dft", f2.DFTBasisFourierUnit)):
        exported = unit.export_form(form)
        assert isinstance(exported, cls)
        assert (exported(x) - unit(x)).abs().max() < 1e-12  # float64: exact up to rounding
    assert wr.shape == wi.shape == (cout, cin)


def test_dft_form_supports_frequency_dependent_spectral_maps() -> None:
    """Form (b) wraps any spectral map; here one whose weight varies per frequency column."""

    class PerFrequency(torch.nn.Module):
        def __init__(self, scale: torch.Tensor) -> None:
            super().__init__()
            self.scale = scale

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z * self.scale

    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 10, dtype=torch.float64)
    scale = torch.rand(1, 1, 6, 6, dtype=torch.float64)  # (H, W//2+1), real gain per frequency
    spec = torch.fft.rfft2(x, norm="ortho") * scale[0]
    reference = torch.fft.irfft2(spec, s=(6, 10), norm="ortho")
    out = f2.DFTBasisFourierUnit(PerFrequency(scale))(x)
    assert (out - reference).abs().max() < 1e-12


def test_row_hilbert_matrix_is_irfft_of_i_times_rfft() -> None:
    for width in (1, 2, 5, 8, 17):
        x = torch.randn(3, width, dtype=torch.float64)
        reference = torch.fft.irfft(1j * torch.fft.rfft(x), n=width)
        assert (x @ f2.row_hilbert_matrix(width, x) - reference).abs().max() < 1e-12


# --------------------------------------------------------------------------------- published
def test_published_weights_load_with_exact_counts(weights_root: Path) -> None:
    for name, scale, total in (("f2srgan", 4, 202_233), ("f2srgan", 2, 184_889), ("f2srgan_student", 4, 113_145)):
        model = build_pretrained(ENTRIES[name], scale, "official")
        assert _params(model) == (total, 24) and not model.training


def test_light_widths_come_from_the_file_shapes(weights_root: Path) -> None:
    state = extract_state_dict(load_checkpoint_file(weights_root / "LightF2SRGAN_x4.pt"))
    options, scale = f2.options_from_state_dict(state)
    assert scale == 4 and options.blocks == 8 and options.ffc_indices() == ()
    assert options.inner_widths == (1, 1, 1, 1, 64, 64, 64, 64) == f2.LightF2SRGANOptions().inner_widths
    x2_options, x2_scale = f2.options_from_state_dict(extract_state_dict(load_checkpoint_file(weights_root / "F2SRGAN_2x.pt")))
    assert x2_scale == 2 and x2_options == f2.F2SRGANOptions(ffc_blocks=tuple(range(0, 16, 2)))


def test_converted_state_maps_every_key_and_the_fourier_weights(weights_root: Path) -> None:
    raw = extract_state_dict(load_checkpoint_file(weights_root / "F2SRGAN_4x.pt"))
    ours = f2.convert_published_state(raw)
    assert len(ours) == len(raw) == 294
    key = "residual.2.block1.0.convg2g.fu.complex_weight"
    weight = ours["body.2.conv1.convg2g.fu.conv.weight"]
    w = torch.roll(torch.view_as_complex(raw[key])[..., 0, 0], (-8, -8), (0, 1))
    assert torch.equal(weight[:, :16, 0, 0], w.real) and torch.equal(weight[:, 16:, 0, 0], -w.imag)
    assert f2.convert_published_state(ours) == ours  # already ours: unchanged


def test_wrong_architecture_error_names_file_and_keys(weights_root: Path) -> None:
    model = f2.F2SRGAN(2)
    with pytest.raises(CheckpointError) as info:
        f2.load_published(model, weights_root / "F2SRGAN_4x.pt")
    message = str(info.value)
    assert message.startswith(f"{weights_root / 'F2SRGAN_4x.pt'}: state dict does not fit F2SRGAN (unexpected 5: upsampler.1.")
    assert "\n" not in message
    with pytest.raises(CheckpointError, match=r"shape mismatch 24: body\.0\.conv1\.pointwise\.weight \(1, 64, 1, 1\) vs model \(64, 64, 1, 1\)"):
        f2.load_published(f2.F2SRGAN(4, f2.F2SRGANStudentOptions()), weights_root / "LightF2SRGAN_x4.pt")


def test_released_forward_and_untied_copy_agree(weights_root: Path) -> None:
    released = build_pretrained(ENTRIES["f2srgan_student"], 4, "official")
    assert released.block_order == [0, 1, 2, 3, 2, 3, 2, 3]
    untied = f2.untie_released_forward(released)
    corrected = build_pretrained(ENTRIES["f2srgan_student"], 4, "official", options={"released_forward": False})
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        a, b, c = released(x), untied(x), corrected(x)
    assert torch.equal(a, b) and (a - c).abs().max() > 1e-3
    assert untied.block_order == list(range(8)) and not untied.options.released_forward
    light = f2.untie_released_forward(build_pretrained(ENTRIES["light_f2srgan"], 4, "official"))
    assert light.options.inner_widths == (1,) * 8 and _params(light)[0] == 39_185 + 4 * 844 + 24


def test_export_form_of_published_x4_matches_fft_model(weights_root: Path) -> None:
    """Tolerances: float64 proves the forms exact (< 1e-9 on 0..255); in float32 both the FFT model
    and the export form sit ~2.5e-4 (0..255 scale) from the float64 result, so float32 agreement is
    asserted at 5e-4 on 0..255 (2e-6 on [0, 1])."""
    model = build_pretrained(ENTRIES["f2srgan"], 4, "official")
    exported = f2.to_export_form(model)
    assert not any(isinstance(m, f2.FourierUnit) for m in exported.modules())
    assert sum(isinstance(m, f2.RowHilbertFourierUnit) for m in exported.modules()) == 16
    assert _params(exported) == (202_233, 24)
    torch.manual_seed(0)
    for shape in ((1, 3, 12, 12), (1, 3, 10, 17)):  # square and non-square, odd width
        x = torch.rand(shape)
        with torch.no_grad():
            assert (exported(x) - model(x)).abs().max() * 255 < 5e-4
    double, double_dft = copy.deepcopy(model).double(), f2.to_export_form(model, "dft").double()
    x = torch.rand(1, 3, 6, 9, dtype=torch.float64)
    with torch.no_grad():
        reference = double(x)
        assert (f2.to_export_form(double)(x) - reference).abs().max() * 255 < 1e-9
        assert (double_dft(x) - reference).abs().max() * 255 < 1e-9


# ------------------------------------------------------------------------------------- hints
def test_hints_name_real_modules() -> None:
    model = f2.F2SRGAN(4)
    hints = f2.f2srgan_hints(model)
    names = dict(model.named_modules())
    for name in (*hints.never_prune, *hints.pixel_shuffle_convs, *hints.feature_taps, *hints.keep_float, *hints.residual_inner):
        assert name in names, name
    assert hints.pixel_shuffle_convs == {"upsampler.0.conv.pointwise": 2, "upsampler.1.conv.pointwise": 2}
    assert hints.feature_taps == tuple(f"body.{i}" for i in range(16))
    assert len(hints.keep_float) == 16 and all(isinstance(names[n], f2.FourierUnit) for n in hints.keep_float)
    assert {"sub_mean", "add_mean", "head.depthwise", "tail.pointwise", "body.0.conv1.convg2g.conv1.pointwise"} <= set(hints.never_prune)
    assert hints.residual_inner[:2] == ("body.0.conv1", "body.1.conv1.pointwise")
    student = f2.f2srgan_hints(f2.F2SRGAN(2, f2.F2SRGANStudentOptions()))
    assert student.keep_float == () and student.pixel_shuffle_convs == {"upsampler.0.conv.pointwise": 2}


# ------------------------------------------------------------------------------ discriminator
def test_discriminator_counts_and_stride_option() -> None:
    # authors' Discriminator: 8 separable blocks (64..512), BN from block 2, Linear(512*36, 1024), Linear(1024, 1)
    disc = f2.F2SRGANDiscriminator()
    assert sum(p.numel() for p in disc.parameters()) == 19_416_543
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert disc.blocks(x).shape == (2, 512, 2, 2) and disc(x).shape == (2, 1)
        bug = f2.F2SRGANDiscriminator(f2.DiscriminatorOptions(published_stride_bug=True, sigmoid_output=True))
        assert bug.blocks(torch.rand(1, 3, 16, 16)).shape == (1, 512, 16, 16)
        assert 0.0 < float(bug(torch.rand(1, 3, 16, 16))) < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("form", ["hilbert", "dft"])
def test_export_form_goes_to_onnx_without_dft_and_with_dynamic_sizes(form: str) -> None:
    """~30 s per form: dynamo export (opset 18) of a small F2SRGAN (2 blocks, one FFC) in export form."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = f2.F2SRGAN(2, f2.F2SRGANOptions(blocks=2, width=16)).eval()
    exported = f2.to_export_form(model, form)
    dim = torch.export.Dim
    program = torch.onnx.export(
        exported, (torch.rand(1, 3, 12, 16),), dynamo=True, opset_version=18,
        dynamic_shapes={"x": {2: dim("h", min=4, max=1024), 3: dim("w", min=4, max=1024)}},
    )
    ops = {node.op_type for node in program.model_proto.graph.node}
    assert "DFT" not in ops and {"MatMul", "Sin", "Cos"} <= ops
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 12, 16), (1, 3, 9, 21)):  # the export size and another, odd one
        x = torch.rand(shape)
        out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            assert (torch.from_numpy(out) - model(x)).abs().max() < 1e-5
