"""Image augmentations for SimCLR in plain torch, batched and deterministic for a generator.

Chen et al. 2020 ("A Simple Framework for Contrastive Learning of Visual Representations")
found random cropping the strongest single augmentation; small digits-sized images also take a
small rotation and translation, pixel noise and cutout (DeVries & Taylor 2017).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["augment"]


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    crop_scale: tuple[float, float] = (0.6, 1.0),
    max_degrees: float = 15.0,
    max_shift: float = 0.1,
    noise_std: float = 0.05,
    cutout: float = 0.25,
) -> torch.Tensor:
    """A random view of each image of ``x`` (N, C, H, W) in [0, 1].

    Random resized crop, rotation and translation are one affine map per image (sampled with
    ``affine_grid`` / ``grid_sample``); then Gaussian pixel noise and a square cutout of side
    ``cutout`` x the image side at a random place.
    """
    assert x.dim() == 4, x.shape
    n, _, h, w = x.shape
    scale = torch.sqrt(_uniform(n, *crop_scale, generator))  # side of the crop, as a share of the image
    angle = _uniform(n, -max_degrees, max_degrees, generator) * math.pi / 180
    # the crop's centre may move as far as the crop still fits, plus the translation
    tx = (1 - scale) * _uniform(n, -1, 1, generator) + _uniform(n, -max_shift, max_shift, generator) * 2
    ty = (1 - scale) * _uniform(n, -1, 1, generator) + _uniform(n, -max_shift, max_shift, generator) * 2
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if noise_std > 0:
        out = out + noise_std * torch.randn(out.shape, generator=generator)
    if cutout > 0:
        side_h, side_w = max(1, round(h * cutout)), max(1, round(w * cutout))
        top = torch.randint(0, h - side_h + 1, (n,), generator=generator)
        left = torch.randint(0, w - side_w + 1, (n,), generator=generator)
        rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side_h)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side_w)
        hole = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
        out = out.masked_fill(hole, 0.0)
    return out.clamp(0.0, 1.0)
