"""read_image / save_image: every stored layout converted by its stated rule; clear errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from srcompress.data import read_image, save_image
from srcompress.data.images import image_size
from srcompress.errors import DataError

RNG = np.random.default_rng(0)


def _png16(path: Path, array: np.ndarray) -> Path:
    """Write a 16-bit PNG (Pillow cannot) with Paeth/Sub/Up filters on alternate rows."""
    h, w, c = array.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    bpp = 2 * c
    rows, prev = [], np.zeros(w * bpp, np.int32)
    for y in range(h):
        raw = np.frombuffer(array[y].astype(">u2").tobytes(), np.uint8).astype(np.int32)
        kind = y % 3
        if kind == 0:  # Sub
            filt = raw.copy()
            filt[bpp:] = raw[bpp:] - raw[:-bpp]
        elif kind == 1:  # Up
            filt = raw - prev
        else:  # Paeth
            left = np.concatenate([np.zeros(bpp, np.int32), raw[:-bpp]])
            upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            filt = raw - pred
        rows.append(bytes([[1, 2, 4][kind]]) + (filt % 256).astype(np.uint8).tobytes())
        prev = raw

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
    return path


def _hwc(t: torch.Tensor) -> np.ndarray:
    assert t.dtype == torch.float32 and t.dim() == 3 and t.shape[0] == 3
    return t.permute(1, 2, 0).numpy()


def test_rgb8_png_jpeg_bmp(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for suffix in (".png", ".bmp", ".tif"):
        Image.fromarray(rgb).save(tmp_path / f"a{suffix}")
        out = _hwc(read_image(tmp_path / f"a{suffix}"))
        assert out.shape == (5, 7, 3)
        np.testing.assert_array_equal(out, rgb.astype(np.float32) / 255)
    flat = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    Image.fromarray(flat).save(tmp_path / "a.jpg", quality=100)
    assert np.abs(_hwc(read_image(tmp_path / "a.jpg")) * 255 - flat).max() <= 2


def test_grayscale_replicated(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = _hwc(read_image(tmp_path / "g.png"))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray / np.float32(255))
    Image.fromarray(gray > 127).save(tmp_path / "b.png")  # bilevel
    np.testing.assert_array_equal(_hwc(read_image(tmp_path / "b.png"))[..., 1], (gray > 127).astype(np.float32))


def test_alpha_dropped_not_composited(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: the colour must still come back as stored
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(_hwc(read_image(tmp_path / "a.png")), rgba[..., :3] / np.float32(255))
    la = RNG.integers(0, 256, (4, 5, 2), dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(_hwc(read_image(tmp_path / "la.png"))[..., 2], la[..., 0] / np.float32(255))


def test_palette_and_cmyk(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2] = (255, 0, 0)
    rgb[2:] = (0, 0, 255)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(tmp_path / "p.png")
    np.testing.assert_array_equal(_hwc(read_image(tmp_path / "p.png")), rgb / np.float32(255))
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.tif")
    np.testing.assert_array_equal(_hwc(read_image(tmp_path / "c.tif")), rgb / np.float32(255))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_full_precision(tmp_path: Path, channels: int) -> None:
    deep = RNG.integers(0, 65536, (6, 9, channels), dtype=np.uint16)
    out = _hwc(read_image(_png16(tmp_path / "d.png", deep)))
    colour = deep[..., :3] if channels >= 3 else np.repeat(deep[..., :1], 3, axis=2)
    np.testing.assert_array_equal(out, colour.astype(np.float32) / 65535)


def test_16bit_tiff(tmp_path: Path) -> None:
    deep = RNG.integers(0, 65536, (5, 8, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb16.tif", deep)
    np.testing.assert_array_equal(_hwc(read_image(tmp_path / "rgb16.tif")), deep.astype(np.float32) / 65535)
    tifffile.imwrite(tmp_path / "g16.tif", deep[..., 0])
    np.testing.assert_array_equal(_hwc(read_image(tmp_path / "g16.tif"))[..., 1], deep[..., 0].astype(np.float32) / 65535)
    tifffile.imwrite(tmp_path / "f.tif", np.full((3, 3), 0.25, np.float32))
    assert float(read_image(tmp_path / "f.tif").mean()) == 0.25
    tifffile.imwrite(tmp_path / "bad.tif", np.full((3, 3), 7.0, np.float32))
    with pytest.raises(DataError, match=r"bad\.tif: floating-point pixels outside \[0, 1\]"):
        read_image(tmp_path / "bad.tif")


def test_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(DataError) as info:
        read_image(tmp_path / "junk.png")
    message = str(info.value)
    assert "junk.png" in message and "re-export junk.png as PNG" in message and "\n" not in message
    rgb = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cannot read image .*cut\.png"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(DataError, match=r"image file not found: .*missing\.png"):
        read_image(tmp_path / "missing.png")
    Image.fromarray(rgb).save(tmp_path / "x.gif")
    with pytest.raises(DataError, match=r"x\.gif"):
        read_image(tmp_path / "x.gif")


def test_save_roundtrip_rounding_and_atomic(tmp_path: Path) -> None:
    img = torch.rand(3, 6, 5)
    img[0, 0, 0] = 1.7  # clamped
    img[1, 0, 0] = 0.5 / 255 + 1e-4  # rounds up to level 1
    out = save_image(img, tmp_path / "sub" / "o.png")
    back = read_image(out)
    expected = (img.double().clamp(0, 1) * 255).round() / 255
    assert torch.equal(back, expected.float())
    assert back[0, 0, 0] == 1.0 and back[1, 0, 0] == 1 / np.float32(255)
    save_image(img[None], tmp_path / "o.bmp")
    assert image_size(tmp_path / "o.bmp") == (6, 5)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["o.png"]  # no temporary left
    with pytest.raises(DataError, match=r"unknown image suffix '\.xyz'"):
        save_image(img, tmp_path / "o.xyz")
