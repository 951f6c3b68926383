"""The seed network: a plain multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """Fully connected network with ReLU between layers, flattening its input first.

    The default sizes are the seed notebook's 784-256-128-32-10 network for 28x28 images.
    Layers are named ``layers.0`` ... ``layers.{n-1}``; the last one is the output layer.

    Args:
        sizes: Widths from input to output, at least two entries, each a positive integer.

    Raises:
        ValueError: If ``sizes`` has fewer than two entries or a non-positive entry.
    """

    def __init__(self, sizes: Sequence[int] = (784, 256, 128, 32, 10)) -> None:
        super().__init__()
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"`sizes` needs at least an input and an output width, got {sizes!r}.")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"`sizes` must be positive integers, got {sizes!r}.")
        self.sizes = sizes
        self.flatten = nn.Flatten()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of inputs of any shape ``(batch, ...)`` with ``sizes[0]`` features."""
        x = self.flatten(x)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return x
