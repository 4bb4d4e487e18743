"""Per-example clipping in one backward pass, and Poisson sampling of index batches. Plain torch.

For a linear layer that sees one feature vector per example (input ``a_i``, output gradient
``g_i``), example i's weight gradient is the outer product ``g_i a_i^T``, whose squared norm is
``|g_i|^2 |a_i|^2``; its bias gradient is ``g_i``. So the per-example gradient norms follow from
the activations and output gradients of a single backward pass, and the sum of the clipped
gradients is one matrix product per layer, ``(c * G)^T A`` with ``c_i = min(1, C / |grad_i|)``
(Goodfellow 2015, "Efficient Per-Example Gradient Computations"; Bu et al. 2023, "Differentially
Private Optimization on Large Model at Small Cost", who call this book-keeping). The backward
pass only needs gradients with respect to the layer outputs, so autograd skips the weight
gradients it would otherwise compute and throw away.

Opacus's ghost clipping needs a second backward pass for the same result (it re-weights the loss
and back-propagates again). The clipping factor is Opacus's own, ``min(1, C / (norm + 1e-6))``,
so the clipped sums agree with Opacus's flat clipping (``tests/train/test_clip.py``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PoissonBatches", "LinearClipper"]


class PoissonBatches:
    """``steps`` batches of row indices; each row joins each batch independently with probability
    ``sample_rate``. The same draws as Opacus's ``UniformWithReplacementSampler`` for the same
    generator, but the batch stays an index tensor, with no per-row fetch and collate."""

    def __init__(self, n: int, sample_rate: float, steps: int, generator: torch.Generator):
        if n <= 0:
            raise ValueError(f"Poisson sampling needs at least one row; got {n}")
        self.n, self.sample_rate, self.steps, self.generator = n, sample_rate, steps, generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield (torch.rand(self.n, generator=self.generator) < self.sample_rate).nonzero().view(-1)


def _unsupported(model: nn.Module) -> str | None:
    """Why ``model`` cannot be clipped by :class:`LinearClipper`, or None if it can."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return f"{name or 'the model'} is a batch norm, which mixes the examples of a batch"
        if isinstance(module, nn.Linear):
            continue
        for pname, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                return f"{name}.{pname} is a trainable parameter of a {type(module).__name__}, not of a linear layer"
    if not any(p.requires_grad for p in model.parameters()):
        return "the model has no trainable parameter"
    return None


class LinearClipper:
    """Sums of clipped per-example gradients for a model whose trainable parameters all belong to
    ``nn.Linear`` layers, each called once per forward pass on a (batch, features) input."""

    @staticmethod
    def unsupported(model: nn.Module) -> str | None:
        return _unsupported(model)

    def __init__(self, model: nn.Module, max_grad_norm: float):
        reason = _unsupported(model)
        if reason is not None:
            raise ValueError(f"one-pass clipping does not apply: {reason}")
        self.max_grad_norm = float(max_grad_norm)
        self.layers = [m for m in model.modules()
                       if isinstance(m, nn.Linear) and any(p.requires_grad for p in m.parameters())]
        self._seen: dict[nn.Linear, list] = {layer: [] for layer in self.layers}
        self._handles = [layer.register_forward_hook(self._record) for layer in self.layers]

    def _record(self, layer: nn.Linear, inputs, output: torch.Tensor) -> None:
        if torch.is_grad_enabled():
            self._seen[layer].append((inputs[0].detach(), output))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def backward(self, per_example_loss: torch.Tensor) -> torch.Tensor:
        """Set each trainable parameter's ``.grad`` to the sum over the batch of the clipped
        per-example gradients of ``per_example_loss`` (shape (batch,), each entry depending on
        its own row only). Returns the per-example gradient norms before clipping."""
        seen = self._seen
        try:
            for layer, calls in seen.items():
                if len(calls) != 1 or calls[0][0].dim() != 2:
                    raise RuntimeError(f"one-pass clipping needs each linear layer called once on a 2-D input; "
                                       f"{layer} was called {len(calls)} time(s)"
                                       + (f" on a {calls[0][0].dim()}-D input" if calls else ""))
            inputs = [seen[layer][0][0] for layer in self.layers]
            outputs = [seen[layer][0][1] for layer in self.layers]
            grads = torch.autograd.grad(per_example_loss.sum(), outputs)
        finally:
            for calls in seen.values():
                calls.clear()
        squared = torch.zeros(per_example_loss.shape[0], dtype=per_example_loss.dtype)
        for layer, a, g in zip(self.layers, inputs, grads):
            g_sq = g.pow(2).sum(1)
            if layer.weight.requires_grad:
                squared += a.pow(2).sum(1) * g_sq
            if layer.bias is not None and layer.bias.requires_grad:
                squared += g_sq
        norms = squared.sqrt()
        factor = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        for layer, a, g in zip(self.layers, inputs, grads):
            clipped = g * factor[:, None]
            if layer.weight.requires_grad:
                layer.weight.grad = clipped.T @ a
            if layer.bias is not None and layer.bias.requires_grad:
                layer.bias.grad = clipped.sum(0)
        return norms
