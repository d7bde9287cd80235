"""read_image against numpy arrays written with Pillow and against torchvision's decoder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from objdet.data.image import read_image
from objdet.errors import ImageError


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)


def test_rgb_png_matches_written_pixels_and_torchvision(tmp_path, rgb):
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    image = read_image(path)
    assert image.dtype == torch.float32 and image.shape == (3, 7, 11)
    torch.testing.assert_close(image, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchvision.io import ImageReadMode, decode_image

        oracle = decode_image(str(path), mode=ImageReadMode.RGB)
    torch.testing.assert_close(image, oracle.float() / 255)


def test_rgba_drops_alpha(tmp_path, rgb):
    alpha = np.full((7, 11, 1), 40, dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], 2), "RGBA").save(tmp_path / "a.png")
    torch.testing.assert_close(read_image(tmp_path / "a.png"),
                               torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)


def test_grayscale_is_repeated_on_three_channels(tmp_path, rgb):
    gray = rgb[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    expected = torch.from_numpy(gray).float().div(255).expand(3, -1, -1)
    torch.testing.assert_close(read_image(tmp_path / "g.png"), expected)


def test_palette_image_looks_up_its_palette(tmp_path):
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 256, (5, 6), dtype=np.uint8)
    img = Image.fromarray(index, "P")
    img.putpalette(palette.reshape(-1).tolist())
    img.save(tmp_path / "p.png")
    expected = torch.from_numpy(palette[index]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(read_image(tmp_path / "p.png"), expected)


def test_sixteen_bit_grayscale_scales_by_65535(tmp_path):
    deep = np.random.default_rng(2).integers(0, 65536, (4, 9), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    image = read_image(tmp_path / "d.png")
    expected = torch.from_numpy(deep.astype(np.float32) / 65535).expand(3, -1, -1)
    torch.testing.assert_close(image, expected)


def test_exif_orientation_is_applied_like_torchvision(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10] = (250, 10, 10)  # a red band on the left of the stored picture
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    image = read_image(tmp_path / "r.jpg")
    assert image.shape == (3, 40, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchvision.io import ImageReadMode, decode_image

        oracle = decode_image(str(tmp_path / "r.jpg"), mode=ImageReadMode.RGB,
                              apply_exif_orientation=True)
    assert (image * 255 - oracle.float()).abs().max() <= 3
    assert image[0, :10].mean() > 0.9  # the band is now on top


def test_decompression_bomb_guard(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    with pytest.raises(ImageError, match="77 pixels.*limit of 76") as err:
        read_image(tmp_path / "a.png", max_pixels=76)
    assert str(tmp_path / "a.png") in str(err.value)


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "garbage"])
def test_bad_files_raise_image_error_naming_the_file(tmp_path, rgb, damage):
    path = tmp_path / "bad.png"
    if damage != "missing":
        Image.fromarray(np.tile(rgb, (10, 10, 1))).save(path)
        data = path.read_bytes()
        path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2],
                          "garbage": b"not an image at all"}[damage])
    with pytest.raises(ImageError) as err:
        read_image(path)
    assert str(path) in str(err.value)
