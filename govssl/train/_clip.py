"""Per-example clipping in one backward pass, and Poisson sampling of index batches. Plain torch.

For a linear layer that sees one feature vector per example (input ``a_i``, output gradient
``g_i``), example i's weight gradient is the outer product ``g_i a_i^T``, whose squared norm is
``|g_i|^2 |a_i|^2``; its bias gradient is ``g_i``. So the per-example gradient norms follow from
the activations and output gradients of a single backward pass, and the sum of the clipped
gradients is one matrix product per layer, ``(c * G)^T A`` with ``c_i = min(1, C / |grad_i|)``
(Goodfellow 2015, "Efficient Per-Example Gradient Computations"; Bu et al. 2023, "Differentially
Private Optimization on Large Model at Small Cost", who call this book-keeping). A convolution's
per-example weight gradient is the product of its output gradient with the unfolded input
patches (``g_i U_i^T``); its norm comes from that product or from the Gram matrices of the
positions, whichever is smaller, and the clipped sum is again one matrix product. The backward pass
only needs gradients with respect to the layer outputs, so autograd skips the weight gradients
it would otherwise compute and throw away.

Opacus's ghost clipping needs a second backward pass for the same result (it re-weights the loss
and back-propagates again). The clipping factor is Opacus's own, ``min(1, C / (norm + 1e-6))``,
so the clipped sums agree with Opacus's flat clipping (``tests/train/test_clip.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PoissonBatches", "OnePassClipper"]


#: above this many rows (at a rate of at most SUBSET_MAX_RATE) a Poisson batch is drawn as its size
#: and then that many distinct rows, at a cost of the batch, not of the rows (see PoissonBatches)
SUBSET_MIN_ROWS = 100_000
SUBSET_MAX_RATE = 0.05


class PoissonBatches:
    """``steps`` batches of row indices (sorted); each row joins each batch independently with
    probability ``sample_rate``.

    Up to :data:`SUBSET_MIN_ROWS` rows (or at a rate above :data:`SUBSET_MAX_RATE`): the same
    draws as Opacus's ``UniformWithReplacementSampler`` for the same generator (one uniform number
    per row and step), but the batch stays an index tensor, with no per-row fetch and collate.

    Above it, a batch is drawn in two steps whose result has exactly that distribution: its size
    K ~ Binomial(n, sample_rate), the number of rows a row-by-row draw includes, then K distinct
    rows uniformly, the first K distinct values of uniform draws with replacement (every K-subset
    equally likely, as in the row-by-row draw given its size). Its cost grows with the batch, not
    with the rows: one uniform number per row and step cost 40 ms a step at 7.5 million rows, more
    than the step itself (``benchmarks/bench_large_tables.py``). The accountant's analysis (Poisson subsampling at ``sample_rate``) is the
    same for both."""

    def __init__(self, n: int, sample_rate: float, steps: int, generator: torch.Generator):
        if n <= 0:
            raise ValueError(f"Poisson sampling needs at least one row; got {n}")
        self.n, self.sample_rate, self.steps, self.generator = n, sample_rate, steps, generator
        self.by_subset = n > SUBSET_MIN_ROWS and sample_rate <= SUBSET_MAX_RATE

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            if self.by_subset:
                yield self._subset_batch()
            else:
                yield (torch.rand(self.n, generator=self.generator) < self.sample_rate).nonzero().view(-1)

    def _subset_batch(self) -> torch.Tensor:
        size = int(torch.binomial(torch.tensor([float(self.n)], dtype=torch.float64),
                                  torch.tensor([self.sample_rate], dtype=torch.float64), generator=self.generator))
        chosen = torch.zeros(0, dtype=torch.long)
        while len(chosen) < size:
            draws = torch.cat([chosen, torch.randint(0, self.n, (size - len(chosen) + 8,), generator=self.generator)])
            values, inverse = torch.unique(draws, return_inverse=True)
            first = torch.full((len(values),), len(draws), dtype=torch.long).scatter_reduce_(
                0, inverse, torch.arange(len(draws)), reduce="amin")
            chosen = values[torch.argsort(first)][:size]  # distinct values in the order first drawn
        return chosen.sort().values


def _clippable(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


def _unsupported(model: nn.Module) -> str | None:
    """Why ``model`` cannot be clipped by :class:`OnePassClipper`, or None if it can."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return f"{name or 'the model'} is a batch norm, which mixes the examples of a batch"
        if _clippable(module):
            continue
        for pname, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                return (f"{name}.{pname} is a trainable parameter of a {type(module).__name__}, not of a linear "
                        "layer or a zero-padded, ungrouped 2-D convolution")
    if not any(p.requires_grad for p in model.parameters()):
        return "the model has no trainable parameter"
    return None


def _conv_parts(layer: nn.Conv2d, a: torch.Tensor, g: torch.Tensor):
    """(unfolded input patches (batch, K, T), output gradient (batch, out, T), per-example weight
    gradients (batch, out, K) or None, per-example squared gradient norms). The weight part of
    the norm comes from whichever is smaller: the per-example gradients ``g_i U_i^T`` themselves
    (out x K, kept for the clipped sum), or the Gram matrices of positions (T x T), as
    ``|g_i U_i^T|^2 = <U_i^T U_i, g_i^T g_i>`` (the ghost norm of Li et al. 2022)."""
    batch = a.shape[0]
    patches = F.unfold(a, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    g = g.reshape(batch, layer.out_channels, -1)
    squared = torch.zeros(batch, dtype=g.dtype)
    per_example = None
    if layer.weight.requires_grad:
        positions, width = g.shape[2], patches.shape[1]
        if positions * positions < layer.out_channels * width:
            gram_in = torch.bmm(patches.transpose(1, 2), patches)
            gram_out = torch.bmm(g.transpose(1, 2), g)
            squared += (gram_in * gram_out).flatten(1).sum(1)
        else:
            per_example = torch.bmm(g, patches.transpose(1, 2))
            squared += per_example.pow(2).flatten(1).sum(1)
    if layer.bias is not None and layer.bias.requires_grad:
        squared += g.sum(2).pow(2).sum(1)
    return patches, g, per_example, squared


class OnePassClipper:
    """Sums of clipped per-example gradients for a model whose trainable parameters all belong to
    linear layers (each called once per forward pass on a (batch, features) input) and 2-D
    convolutions (zero padding, no groups, each called once)."""

    @staticmethod
    def unsupported(model: nn.Module) -> str | None:
        return _unsupported(model)

    def __init__(self, model: nn.Module, max_grad_norm: float):
        reason = _unsupported(model)
        if reason is not None:
            raise ValueError(f"one-pass clipping does not apply: {reason}")
        self.max_grad_norm = float(max_grad_norm)
        self.layers = [m for m in model.modules() if _clippable(m) and any(p.requires_grad for p in m.parameters())]
        self._seen: dict[nn.Module, list] = {layer: [] for layer in self.layers}
        self._handles = [layer.register_forward_hook(self._record) for layer in self.layers]

    def _record(self, layer: nn.Module, inputs, output: torch.Tensor) -> None:
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
                want = 2 if isinstance(layer, nn.Linear) else 4
                if len(calls) != 1 or calls[0][0].dim() != want:
                    raise RuntimeError(f"one-pass clipping needs each layer called once on a {want}-D input; "
                                       f"{layer} was called {len(calls)} time(s)"
                                       + (f" on a {calls[0][0].dim()}-D input" if calls else ""))
            inputs = [seen[layer][0][0] for layer in self.layers]
            outputs = [seen[layer][0][1] for layer in self.layers]
            grads = torch.autograd.grad(per_example_loss.sum(), outputs)
        finally:
            for calls in seen.values():
                calls.clear()
        squared = torch.zeros(per_example_loss.shape[0], dtype=per_example_loss.dtype)
        conv = {}
        for layer, a, g in zip(self.layers, inputs, grads):
            if isinstance(layer, nn.Linear):
                g_sq = g.pow(2).sum(1)
                if layer.weight.requires_grad:
                    squared += a.pow(2).sum(1) * g_sq
                if layer.bias is not None and layer.bias.requires_grad:
                    squared += g_sq
            else:
                patches, g_flat, per_example, layer_squared = _conv_parts(layer, a, g)
                conv[layer] = patches, g_flat, per_example
                squared += layer_squared
        norms = squared.sqrt()
        factor = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        for layer, a, g in zip(self.layers, inputs, grads):
            if isinstance(layer, nn.Linear):
                clipped = g * factor[:, None]
                if layer.weight.requires_grad:
                    layer.weight.grad = clipped.T @ a
                if layer.bias is not None and layer.bias.requires_grad:
                    layer.bias.grad = clipped.sum(0)
                continue
            patches, g_flat, per_example = conv[layer]
            clipped = g_flat * factor[:, None, None]  # (batch, out, T)
            if per_example is not None:  # already formed for the norm: weight it
                layer.weight.grad = (factor @ per_example.flatten(1)).view_as(layer.weight)
            elif layer.weight.requires_grad:  # one product over all examples and positions
                out, width = layer.out_channels, patches.shape[1]
                layer.weight.grad = (clipped.transpose(0, 1).reshape(out, -1)
                                     @ patches.transpose(1, 2).reshape(-1, width)).view_as(layer.weight)
            if layer.bias is not None and layer.bias.requires_grad:
                layer.bias.grad = clipped.sum((0, 2))
        return norms
