"""Decoding image items into tensors (Pillow), with a clear error naming a bad item."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from databright.training.errors import TrainingError

__all__ = ["MAX_IMAGE_PIXELS", "decode_image"]

MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # a decompression bomb is refused, not decoded


def decode_image(data: bytes, name: str, mode: str, size: int) -> np.ndarray:
    """``size × size`` pixels of ``mode`` ("L" or "RGB") as uint8, shape (channels, size, size).

    Raises:
        TrainingError: not a decodable image, or too many pixels.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise TrainingError(f"{name}: {img.width}×{img.height} pixels is too large")
            small = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(small, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TrainingError(f"cannot decode {name} as an image: {exc}") from exc
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def image_batch(items: Sequence[tuple[str, bytes]], mode: str, size: int) -> torch.Tensor:
    """A float32 batch in [0, 1] of shape (n, channels, size, size)."""
    channels = 3 if mode == "RGB" else 1
    out = np.zeros((len(items), channels, size, size), dtype=np.float32)
    for i, (name, data) in enumerate(items):
        out[i] = decode_image(data, name, mode, size) / np.float32(255.0)
    return torch.from_numpy(out)
