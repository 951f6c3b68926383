"""The seed network: a plain multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

from torch import Tensor, nn

__all__ = ["MLP", "GlorotLinear"]

Init = Literal["default", "glorot_normal"]
_INITS = ("default", "glorot_normal")


class GlorotLinear(nn.Linear):
    """``nn.Linear`` initialized as Frankle & Carbin's networks: Gaussian Glorot weights, zero biases.

    Its ``reset_parameters`` is that initialization, so a random reinitialization (which calls
    every layer's ``reset_parameters``) draws from the same scheme.
    """

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class MLP(nn.Module):
    """Fully connected network with ReLU between layers, flattening its input first.

    The default sizes are the seed notebook's 784-256-128-32-10 network for 28x28 images.
    Layers are named ``layers.0`` ... ``layers.{n-1}``; the last one is the output layer.

    Args:
        sizes: Widths from input to output, at least two entries, each a positive integer.
        init: ``"default"``: PyTorch's ``nn.Linear`` initialization (uniform); ``"glorot_normal"``:
            weights from a Gaussian of variance ``2 / (fan_in + fan_out)`` (Glorot & Bengio 2010) and
            zero biases, the "Gaussian Glorot" of Frankle & Carbin (2019, Figure 2).

    Raises:
        ValueError: If ``sizes`` has fewer than two entries or a non-positive entry, or ``init`` is unknown.
    """

    def __init__(self, sizes: Sequence[int] = (784, 256, 128, 32, 10), init: Init = "default") -> None:
        super().__init__()
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"`sizes` needs at least an input and an output width, got {sizes!r}.")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"`sizes` must be positive integers, got {sizes!r}.")
        if init not in _INITS:
            raise ValueError(f"`init` must be one of {', '.join(map(repr, _INITS))}, got {init!r}.")
        self.sizes, self.init = sizes, init
        self.flatten = nn.Flatten()
        linear = GlorotLinear if init == "glorot_normal" else nn.Linear
        self.layers = nn.ModuleList(linear(a, b) for a, b in pairwise(sizes))
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
