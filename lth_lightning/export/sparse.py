"""Compact sparse inference: linear layers whose pruned weights are stored in CSR form."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

__all__ = ["SparseLinear", "to_sparse"]


class SparseLinear(nn.Module):
    """A linear layer holding its weight as a ``torch.sparse_csr`` tensor (inference only).

    Stores only the surviving weights (values, column indices, row pointers), and computes
    ``x @ W.T + b`` with a sparse-dense product. Outputs equal the dense masked layer's to float
    tolerance.

    Args:
        weight: Dense weight ``(out_features, in_features)`` whose zeros are pruned entries.
        bias: Optional bias ``(out_features,)``.
    """

    weight: Tensor
    bias: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only its stable core
            warnings.simplefilter("ignore", UserWarning)
            csr = weight.detach().to_sparse_csr()
        self.register_buffer("weight", csr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SparseLinear:
        """A sparse copy of a (masked) ``nn.Linear``."""
        return cls(linear.weight, linear.bias)

    @property
    def nnz(self) -> int:
        """Number of stored (alive) weights."""
        return int(self.weight.values().numel())

    def forward(self, x: Tensor) -> Tensor:
        """``x @ W.T + b`` for ``x`` of shape ``(..., in_features)``."""
        flat = x.reshape(-1, self.in_features)
        out = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}"


@torch.no_grad()
def to_sparse(module: nn.Module, max_density: float = 1.0) -> nn.Module:
    """A copy of ``module`` in which every ``nn.Linear`` at or below ``max_density`` is a :class:`SparseLinear`.

    Args:
        module: The (masked) network; it is not modified.
        max_density: Convert a layer only if its fraction of non-zero weights is at most this.

    Returns:
        The converted copy, in eval mode.
    """
    if not 0 < max_density <= 1:
        raise ValueError(f"`max_density` must be in (0, 1], got {max_density!r}.")
    converted = copy.deepcopy(module)
    for parent in list(converted.modules()):
        for attr, sub in list(parent.named_children()):
            if isinstance(sub, nn.Linear) and float((sub.weight != 0).float().mean()) <= max_density:
                setattr(parent, attr, SparseLinear.from_linear(sub))
    return converted.eval()
