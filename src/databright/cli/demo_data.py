"""The demo's data: scikit-learn's handwritten digits rendered to PNG files (ImageFolder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def render_png(pixels: np.ndarray, path: Path, scale: int = 4) -> None:
    """One 8×8 digit (values 0..16) as a 32×32 grayscale PNG."""
    from PIL import Image

    img = (255 - pixels.reshape(8, 8) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    Image.fromarray(img, mode="L").resize((8 * scale, 8 * scale), Image.Resampling.NEAREST).save(path)


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str]) -> Path:
    """An ImageFolder: ``root/<label>/<name>.png``."""
    for pixels, label, name in zip(images, labels, names):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        render_png(pixels, folder / f"{name}.png")
    return root


def digit_pools(seed: int = 7) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Disjoint pools of digits for each demo participant (a fixed shuffle)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    images, labels = digits.data[order], digits.target[order]
    names = [f"digit-{i:04d}" for i in order]
    cuts = {"seed": (0, 500), "bob": (500, 700), "carol": (700, 900), "mallory": (900, 1100),
            "dave": (1100, 1130)}
    return {who: (images[a:b], labels[a:b].copy(), names[a:b]) for who, (a, b) in cuts.items()}


def flip_labels(labels: np.ndarray, fraction: float, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Give ``fraction`` of the items another class; returns (new labels, flipped mask)."""
    rng = np.random.default_rng(seed)
    flipped = rng.random(len(labels)) < fraction
    out = labels.copy()
    out[flipped] = (labels[flipped] + rng.integers(1, 10, flipped.sum())) % 10
    return out, flipped
