"""The model: an MLP (tables) or small CNN (images) encoder and a linear head in one flat
``nn.Sequential``.

Flat on purpose: attack and defence tools (ART) read activations of Sequential models layer by
layer, and the penultimate activation is the encoder's embedding.
"""

from __future__ import annotations

import json

import torch
from torch import nn

__all__ = ["build_encoder", "build_cnn_encoder", "build_classifier", "Architecture", "split_classifier",
           "parameter_count", "check_parameter_count", "MAX_PARAMETERS"]

# Weights, gradients and Adam's two moments are four copies of the parameters (160 MB at this
# limit), and the private path forms per-example gradients on top; the default tabular MLP has
# about 0.1 million parameters and the default CNN on digits about 0.3 million.
MAX_PARAMETERS = 10_000_000


class Architecture(dict):
    """JSON-able description of a classifier: enough to rebuild it from a weights file."""

    @property
    def text(self) -> str:
        if self.get("kind") == "cnn":
            shape = "x".join(str(d) for d in self["in_shape"])
            convs = ", ".join(str(c) for c in self["channels"])
            dims = " -> ".join(str(d) for d in [*self["hidden_dims"], self["n_classes"]])
            return (f"CNN on {shape} images: 3x3 convolutions with {convs} channels (ReLU), "
                    f"then {dims} fully connected, encoder depth {len(self['channels']) + len(self['hidden_dims'])}")
        dims = " -> ".join(str(d) for d in [self["in_dim"], *self["hidden_dims"], self["n_classes"]])
        return f"MLP {dims} (ReLU, dropout {self['dropout']:g}), encoder depth {len(self['hidden_dims'])}"

    def to_json(self) -> str:
        return json.dumps(dict(self), sort_keys=True)


def build_encoder(in_dim: int, hidden_dims: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = in_dim
    for width in hidden_dims:
        layers += [nn.Linear(prev, width), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        prev = width
    return nn.Sequential(*layers)


def build_cnn_encoder(in_shape: list[int], channels: list[int], hidden_dims: list[int], dropout: float = 0.0) -> nn.Sequential:
    """3x3 convolutions (the first keeps the size, later ones halve it), flatten, then an MLP.
    No batch norm: it mixes the examples of a batch, which per-example DP clipping cannot allow."""
    layers: list[nn.Module] = []
    c, h, w = in_shape
    for i, out in enumerate(channels):
        stride = 1 if i == 0 else 2
        layers += [nn.Conv2d(c, out, 3, stride=stride, padding=1), nn.ReLU()]
        c, h, w = out, (h - 1) // stride + 1, (w - 1) // stride + 1
    layers.append(nn.Flatten())
    return nn.Sequential(*layers, *build_encoder(c * h * w, hidden_dims, dropout))


def parameter_count(arch: Architecture | dict) -> int:
    """The number of parameters :func:`build_classifier` would create, computed without building it."""
    dims = [int(d) for d in arch["hidden_dims"]]
    count = 0
    if arch.get("kind") == "cnn":
        c, h, w = (int(d) for d in arch["in_shape"])
        for i, out in enumerate(int(o) for o in arch["channels"]):
            stride = 1 if i == 0 else 2
            count += out * c * 9 + out
            c, h, w = out, (h - 1) // stride + 1, (w - 1) // stride + 1
        prev = c * h * w
    else:
        prev = int(arch["in_dim"])
    for width in [*dims, int(arch["n_classes"])]:
        count += prev * width + width
        prev = width
    return count


def check_parameter_count(arch: Architecture | dict) -> int:
    """The parameter count of ``arch``; ConfigError naming ``training.encoder`` if over MAX_PARAMETERS."""
    from govssl.errors import ConfigError

    count = parameter_count(arch)
    if count > MAX_PARAMETERS:
        shape = (f"{'x'.join(str(d) for d in arch['in_shape'])} images, channels {list(arch['channels'])}, "
                 if arch.get("kind") == "cnn" else f"{arch['in_dim']} input features, ")
        raise ConfigError(
            f"training.encoder.hidden_dims: the model would have {count:,} parameters ({shape}hidden_dims "
            f"{list(arch['hidden_dims'])}); the limit is {MAX_PARAMETERS:,}: use narrower or fewer layers"
            + (" or fewer channels" if arch.get("kind") == "cnn" else "")
        )
    return count


def build_classifier(arch: Architecture) -> nn.Sequential:
    check_parameter_count(arch)
    if arch.get("kind") == "cnn":
        encoder = build_cnn_encoder(arch["in_shape"], arch["channels"], arch["hidden_dims"], arch["dropout"])
        return nn.Sequential(*encoder, nn.Linear(arch["hidden_dims"][-1], arch["n_classes"]))
    encoder = build_encoder(arch["in_dim"], arch["hidden_dims"], arch["dropout"])
    return nn.Sequential(*encoder, nn.Linear(arch["hidden_dims"][-1], arch["n_classes"]))


def split_classifier(model: nn.Sequential) -> tuple[nn.Sequential, nn.Linear]:
    """(encoder, head) views sharing the classifier's parameters."""
    return nn.Sequential(*list(model)[:-1]), model[-1]


@torch.no_grad()
def predict_proba(model: nn.Module, X, batch_size: int = 8192):
    import numpy as np

    model.eval()
    n_classes = getattr(model[-1], "out_features", 2) if isinstance(model, nn.Sequential) else 2
    # One output array, filled batch by batch: a small array kept per batch would sit between
    # the freed activations of the next ones, and glibc's heap could not give that memory back
    # (at 10M rows, a poisoning retrain scoring the 2.5M test rows grew the audit by 1.5 GB in
    # benchmarks/bench_scale.py).
    out = np.zeros((0, n_classes), dtype=np.float32)
    for start in range(0, len(X), batch_size):
        xb = torch.as_tensor(X[start : start + batch_size], dtype=torch.float32)
        p = torch.softmax(model(xb), dim=1).numpy()
        if start == 0:
            out = np.empty((len(X), p.shape[1]), dtype=np.float32)
        out[start : start + len(xb)] = p
    return out
