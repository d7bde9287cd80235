"""Hostile and unusual image files: each decodes to the oracle's pixels or raises an ImageError naming
the file; detectors accept the extreme sizes a reader lets through."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from objdet.data.coco import CocoDataset
from objdet.data.image import read_image
from objdet.errors import ImageError

from .conftest import write_json

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)  # asymmetric, so any rotation shows


def as_tensor(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1).float() / 255


def png_bytes(width: int, height: int, bit_depth: int = 8, colour: int = 2, idat: bytes = b"") -> bytes:
    """A PNG written chunk by chunk, so its header may claim any size (the bytes of a bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encoded(array: np.ndarray, fmt: str, **options) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **options)
    return buf.getvalue()


# --- files that must be refused ----------------------------------------------------------------------
BROKEN = {
    "zero_bytes": b"",
    "truncated_png": encoded(RGB, "PNG")[:60],
    "truncated_jpeg": encoded(np.repeat(np.repeat(RGB, 8, 0), 8, 1), "JPEG")[:400],
    "jpeg_header_only": encoded(RGB, "JPEG")[:20],
    "png_bad_crc": encoded(RGB, "PNG")[:29] + b"\0\0\0\0" + encoded(RGB, "PNG")[33:],
    "text_named_png": b"this is not an image\n",
    "html": b"<html><body>404</body></html>",
    "png_signature_only": b"\x89PNG\r\n\x1a\n",
    "bomb_header_60000x60000": png_bytes(60000, 60000, idat=zlib.compress(b"\0" * 1000)),
    "zero_size_png": png_bytes(0, 0),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_raise_image_error_naming_the_file(tmp_path, name):
    path = tmp_path / f"{name}.png"
    path.write_bytes(BROKEN[name])
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_bomb_guard_refuses_before_decoding_and_says_how_to_raise_it(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(12000, 12000, idat=zlib.compress(b"\0" * 1000)))  # over objdet's limit
    with pytest.raises(ImageError, match="144000000 pixels.*decompression-bomb guard; raise max_pixels"):
        read_image(path)
    path.write_bytes(png_bytes(60000, 60000, idat=zlib.compress(b"\0" * 1000)))  # over Pillow's too
    with pytest.raises(ImageError, match="too large to decode safely.*decompression bomb"):
        read_image(path)
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(path)  # a real image over a lowered limit
    with pytest.raises(ImageError, match="90000 pixels, more than the limit of 50000"):
        read_image(path, max_pixels=50_000)
    assert read_image(path, max_pixels=90_000).shape == (3, 300, 300)


def test_missing_and_directory_paths(tmp_path):
    for path in (tmp_path / "absent.png", tmp_path):
        with pytest.raises(ImageError, match="not found"):
            read_image(path)


def test_garbage_inside_jpeg_data_decodes_like_torchvision(tmp_path):
    """libjpeg recovers from corrupt entropy-coded data: objdet returns what torchvision returns."""
    data = bytearray(encoded(np.repeat(np.repeat(RGB, 8, 0), 8, 1), "JPEG", quality=90))
    data[len(data) // 2: len(data) // 2 + 64] = RNG.integers(0, 255, 64, dtype=np.uint8).tobytes()
    path = tmp_path / "noisy.jpg"
    path.write_bytes(bytes(data))
    from torchvision.io import ImageReadMode, decode_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oracle = decode_image(str(path), mode=ImageReadMode.RGB)
    image = read_image(path)
    assert image.shape == oracle.shape
    assert (image * 255 - oracle.float()).abs().mean() < 8  # same picture up to IDCT rounding


# --- unusual but valid files: pixels equal a numpy oracle ------------------------------------------------
def _gray16(path):
    values = RNG.integers(0, 65536, (6, 10), dtype=np.uint16)
    Image.fromarray(values).save(path)
    return np.repeat((values / 65535.0)[..., None], 3, 2)


def _gray8(path):
    Image.fromarray(RGB[..., 0]).save(path)
    return np.repeat(RGB[..., :1], 3, 2) / 255.0


def _gray_alpha(path):
    Image.fromarray(np.stack([RGB[..., 0], RGB[..., 1]], 2), "LA").save(path)
    return np.repeat(RGB[..., :1], 3, 2) / 255.0


def _rgba(path):
    Image.fromarray(np.concatenate([RGB, RGB[..., :1]], 2), "RGBA").save(path)
    return RGB / 255.0


def _palette(path):
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    index = RNG.integers(0, 256, (6, 10), dtype=np.uint8)
    img = Image.fromarray(index, "P")
    img.putpalette(palette.reshape(-1).tolist())
    img.save(path)
    return palette[index] / 255.0


def _palette_transparent(path):
    palette = RNG.integers(0, 256, (4, 3), dtype=np.uint8)
    index = RNG.integers(0, 4, (6, 10), dtype=np.uint8)
    img = Image.fromarray(index, "P")
    img.putpalette(palette.reshape(-1).tolist())
    img.save(path, transparency=0)
    return palette[index] / 255.0


def _bilevel(path):
    bits = RNG.integers(0, 2, (6, 10)).astype(bool)
    Image.fromarray(bits).save(path)
    return np.repeat(bits[..., None], 3, 2).astype(np.float64)


def _one_pixel(path):
    Image.fromarray(RGB[:1, :1]).save(path)
    return RGB[:1, :1] / 255.0


MODES = {"16bit_gray": _gray16, "gray": _gray8, "gray_alpha": _gray_alpha, "rgba": _rgba, "palette": _palette,
         "palette_transparency": _palette_transparent, "bilevel": _bilevel, "1x1": _one_pixel}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_unusual_modes_read_as_rgb_in_0_1(tmp_path, mode):
    path = tmp_path / f"{mode}.png"
    expected = torch.from_numpy(MODES[mode](path)).permute(2, 0, 1).float()
    image = read_image(path)
    assert image.dtype == torch.float32 and image.shape == expected.shape
    torch.testing.assert_close(image, expected, atol=1e-6, rtol=0)


# EXIF orientation -> the upright picture, from the EXIF 2.3 table ("row 0 is the visual right side,
# column 0 the visual bottom" for 7, ...), as numpy ops
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_turns_the_picture_upright(tmp_path, orientation):
    img = Image.fromarray(RGB)
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.png"
    img.save(path, exif=exif)
    torch.testing.assert_close(read_image(path), as_tensor(UPRIGHT[orientation](RGB)))


def test_exif_rotated_image_must_match_its_record_upright(tmp_path):
    """A record must give the size a viewer shows; the stored (unrotated) size is an ImageError."""
    img = Image.fromarray(RGB)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.png", exif=exif)
    doc = {"images": [{"id": 1, "file_name": "r.png", "width": 10, "height": 6}],
           "categories": [{"id": 1, "name": "x"}], "annotations": []}
    ds = CocoDataset(write_json(tmp_path / "a.json", doc), tmp_path)
    with pytest.raises(ImageError, match="image is 6x10 but its record .* says 10x6"):
        ds.load(0)
    doc["images"][0].update(width=6, height=10)
    ds = CocoDataset(write_json(tmp_path / "a.json", doc), tmp_path)
    torch.testing.assert_close(ds.load(0)[0], as_tensor(np.rot90(RGB, -1)))


# --- detectors on extreme sizes ----------------------------------------------------------------------
@pytest.mark.parametrize("size", [(1, 1), (1, 300), (300, 1), (7, 5)])
def test_detectors_take_tiny_and_extreme_aspect_images(small_detectors, size):
    image = torch.rand(3, *size)
    for name, model in small_detectors.items():
        model.eval()
        with torch.no_grad():
            out = model([image])[0]
        boxes = out["boxes"]
        slack = 1e-4 * max(size)  # boxes are clipped at the resized size, then scaled back (as torchvision)
        assert torch.isfinite(boxes).all(), name
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= size[1] + slack).all(), name
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= size[0] + slack).all(), name
        assert len(out["scores"]) == len(out["labels"]) == len(boxes)
