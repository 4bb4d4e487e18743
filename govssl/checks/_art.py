"""Shared pieces of the security and privacy checks: ART estimators, the attackable input space,
penultimate activations, exact binomial intervals and a small SVG line chart.

ART (Nicolae et al. 2018, "Adversarial Robustness Toolbox v1.0.0") does the attacks and
defences; this module only shapes what govssl hands it.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np

__all__ = [
    "art_classifier",
    "InputSpace",
    "input_space",
    "penultimate",
    "line_chart_svg",
    "is_image",
    "seeded",
]


def is_image(X: np.ndarray) -> bool:
    """Images are N x C x H x W in [0, 1]; tables are N x features."""
    return np.ndim(X) == 4


def art_classifier(model, input_shape: tuple[int, ...], n_classes: int, clip_values=None):
    """An ART PyTorchClassifier over a frozen copy of the plain model, no preprocessing (so ART
    picks its native PyTorch attacks, and its input gradients skip the weight gradients)."""
    import copy

    import torch
    from art.estimators.classification import PyTorchClassifier

    frozen = copy.deepcopy(model).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return PyTorchClassifier(
        model=frozen,
        preprocessing=None,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(input_shape),
        nb_classes=int(n_classes),
        clip_values=clip_values,
        device_type="cpu",
    )


@dataclass(frozen=True)
class InputSpace:
    """Where an attack may move an input: per-feature bounds and the mask of mutable features."""

    clip_min: np.ndarray
    clip_max: np.ndarray
    mask: np.ndarray  # 1.0 where the attack may change the feature, 0.0 elsewhere
    mutable: tuple[str, ...]
    immutable: tuple[str, ...]


def input_space(dataset, immutable: list[str], sensitive_immutable: bool) -> InputSpace:
    """The attackable input space of a dataset, in the model's (encoded) input space.

    Tables: only numeric features that are not immutable move, within the encoded range seen in
    training (``TableEncoder.numeric_ranges``); one-hot blocks never move (a half-set one-hot is
    not a person). Sensitive attributes are immutable unless ``sensitive_immutable`` is false.
    Images: every pixel moves, within [0, 1].
    """
    from govssl.errors import ConfigError

    X = dataset.X_train
    if is_image(X):
        shape = X.shape[1:]
        return InputSpace(np.zeros(shape, np.float32), np.ones(shape, np.float32),
                          np.ones(shape, np.float32), ("pixels",), ())
    encoder = dataset.encoder
    names = [name for name, _ in encoder.groups]
    unknown = [c for c in immutable if c not in names]
    if unknown:
        raise ConfigError(
            f"checks.*.immutable: unknown feature(s) {', '.join(unknown)}; features: {', '.join(names)}"
        )
    frozen = set(immutable) | (set(dataset.sensitive) if sensitive_immutable else set())
    n = X.shape[1]
    clip_min, clip_max, mask = np.zeros(n, np.float32), np.ones(n, np.float32), np.zeros(n, np.float32)
    ranges = encoder.numeric_ranges()
    mutable = []
    for name, block in encoder.groups:
        if name in ranges:
            clip_min[block], clip_max[block] = ranges[name]
            if name not in frozen:
                mask[block] = 1.0
                mutable.append(name)
    return InputSpace(clip_min, clip_max, mask, tuple(mutable), tuple(sorted(frozen & set(names))))


def penultimate(model, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Activations of the layer before the head (the encoder's embedding), flattened per row."""
    import torch

    body = torch.nn.Sequential(*list(model)[:-1]).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            z = body(torch.as_tensor(X[start : start + batch_size], dtype=torch.float32))
            out.append(z.reshape(len(z), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class seeded:
    """Context manager: seed numpy's and torch's global generators (ART draws from them), then
    put both back as they were."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        import torch

        self._np, self._torch = np.random.get_state(), torch.get_rng_state()
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)
        return self

    def __exit__(self, *exc):
        import torch

        np.random.set_state(self._np)
        torch.set_rng_state(self._torch)
        return False


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def line_chart_svg(title: str, x_label: str, y_label: str, series: dict[str, list[tuple[float, float]]],
                   width: int = 560, height: int = 340) -> str:
    """A self-contained SVG line chart, y in [0, 1] (accuracies, rates)."""
    left, right, top, bottom = 60, 150, 36, 48
    xs = [x for points in series.values() for x, _ in points] or [0.0, 1.0]
    x_min, x_max = min(xs), max(xs)
    if x_max == x_min:
        x_max = x_min + 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    px = lambda x: left + (x - x_min) / (x_max - x_min) * plot_w  # noqa: E731
    py = lambda y: top + (1 - min(max(y, 0.0), 1.0)) * plot_h  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for tick in np.linspace(0, 1, 6):
        y = py(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.1f}</text>')
    for x in sorted(set(xs)):
        parts.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{x:g}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 10}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for i, (name, points) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(points) if np.isfinite(y))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
        for x, y in points:
            if np.isfinite(y):
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
        ly = top + 14 * i + 6
        parts.append(f'<line x1="{left + plot_w + 12}" y1="{ly}" x2="{left + plot_w + 30}" y2="{ly}" '
                     f'stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{left + plot_w + 34}" y="{ly + 4}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
