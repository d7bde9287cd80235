"""Image reading: any file Pillow opens becomes a float tensor [3, H, W] in 0..1, or an ImageError.

Conventions: EXIF orientation is applied (the picture is returned the way a viewer shows it);
alpha is dropped (as torchvision's `ImageReadMode.RGB` does); grayscale and palette images are
expanded to RGB; 16-bit images are scaled by 1/65535. A file whose pixel count exceeds `max_pixels`
is refused before it is decoded (decompression-bomb guard).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from objdet.errors import ImageError

MAX_PIXELS = 100_000_000  # about 10k x 10k: more than any detection image, less than a bomb
ORIENTATION_TAG = 0x0112  # EXIF orientation; 5..8 turn the picture a quarter, swapping width and height


def _to_array(img: Image.Image) -> np.ndarray:
    """Pixels of an opened image as float32 [H, W, 3] in 0..1 whatever its mode."""
    if img.mode.startswith("I;16") or img.mode == "I":
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if img.mode == "F":
        gray = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Read an image file as a float32 tensor [3, H, W] in 0..1; bad files raise ImageError."""
    path = Path(path)
    if not path.is_file():
        raise ImageError("image file not found", path=path)
    if path.stat().st_size == 0:
        raise ImageError("image file is empty (0 bytes)", path=path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"image is {width}x{height} = {width * height} pixels, more than the "
                        f"limit of {max_pixels} (decompression-bomb guard; raise max_pixels)",
                        path=path,
                    )
                img.load()
                img = ImageOps.exif_transpose(img)
                array = _to_array(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"image too large to decode safely: {err}", path=path) from err
    except UnidentifiedImageError as err:
        raise ImageError("not an image file Pillow can identify", path=path) from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"corrupt or truncated image: {err}", path=path) from err
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as `read_image` returns it (EXIF orientation applied), read from
    the header without decoding the pixels; a missing or unidentifiable file raises ImageError."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                orientation = img.getexif().get(ORIENTATION_TAG, 1)
    except FileNotFoundError as err:
        raise ImageError("image file not found", path=path) from err
    except UnidentifiedImageError as err:
        raise ImageError("not an image file Pillow can identify", path=path) from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"cannot read the image header: {err}", path=path) from err
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def to_pil(image: torch.Tensor | np.ndarray | Image.Image) -> Image.Image:
    """A [3,H,W] (or [1,H,W]) float image in 0..1 as an 8-bit RGB PIL image (PIL images pass)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"expected an image [3, H, W], got shape {tuple(array.shape)}")
    pixels = np.rint(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(pixels, (3, *pixels.shape[1:]))
                                                .transpose(1, 2, 0)))
