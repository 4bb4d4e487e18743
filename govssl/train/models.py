"""The model: an MLP encoder and a linear head in one flat ``nn.Sequential``.

Flat on purpose: attack and defence tools (ART) read activations of Sequential models layer by
layer, and the penultimate activation is the encoder's embedding.
"""

from __future__ import annotations

import json

import torch
from torch import nn

__all__ = ["build_encoder", "build_classifier", "Architecture", "split_classifier"]


class Architecture(dict):
    """JSON-able description of a classifier: enough to rebuild it from a weights file."""

    @property
    def text(self) -> str:
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


def build_classifier(arch: Architecture) -> nn.Sequential:
    encoder = build_encoder(arch["in_dim"], arch["hidden_dims"], arch["dropout"])
    return nn.Sequential(*encoder, nn.Linear(arch["hidden_dims"][-1], arch["n_classes"]))


def split_classifier(model: nn.Sequential) -> tuple[nn.Sequential, nn.Linear]:
    """(encoder, head) views sharing the classifier's parameters."""
    return nn.Sequential(*list(model)[:-1]), model[-1]


@torch.no_grad()
def predict_proba(model: nn.Module, X, batch_size: int = 8192):
    import numpy as np

    model.eval()
    out = []
    for start in range(0, len(X), batch_size):
        xb = torch.as_tensor(X[start : start + batch_size], dtype=torch.float32)
        out.append(torch.softmax(model(xb), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)
