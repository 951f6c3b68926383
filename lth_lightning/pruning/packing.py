"""Boolean masks stored at one bit per weight, as plain data that ``torch.load(weights_only=True)`` reads.

A packed mask is ``{"bits": uint8 tensor, "shape": [...]}``: the mask flattened in row-major
order, eight weights per byte, the first weight in the highest bit (``numpy.packbits``' default
order), the last byte padded with zeros. Lightning-free and module-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["is_packed", "pack_mask", "pack_masks", "unpack_mask", "unpack_masks"]


def pack_mask(mask: Tensor) -> dict[str, Any]:
    """One bit per weight of a boolean mask (copied to the CPU first if needed)."""
    flat = mask.detach().to("cpu", torch.bool).contiguous().reshape(-1)
    return {"bits": torch.from_numpy(np.packbits(flat.numpy())), "shape": list(mask.shape)}


def is_packed(value: Any) -> bool:
    """Whether ``value`` is a mask as :func:`pack_mask` wrote it (an unpacked mask is a tensor)."""
    return isinstance(value, Mapping) and set(value) == {"bits", "shape"}


def unpack_mask(packed: Mapping[str, Any]) -> Tensor:
    """The boolean CPU mask :func:`pack_mask` packed.

    Raises:
        ValueError: If the bits are not uint8 or do not hold the shape's number of weights.
    """
    bits, shape = packed["bits"], tuple(int(s) for s in packed["shape"])
    count = math.prod(shape)
    if not isinstance(bits, Tensor) or bits.dtype != torch.uint8 or bits.numel() != (count + 7) // 8:
        raise ValueError(
            f"A packed mask of shape {shape} needs {(count + 7) // 8} uint8 bytes, got "
            f"{getattr(bits, 'numel', lambda: '?')()} of {getattr(bits, 'dtype', type(bits).__name__)}."
        )
    flat = np.unpackbits(bits.cpu().numpy(), count=count)
    return torch.from_numpy(flat.view(np.bool_)).reshape(shape)


def pack_masks(masks: Mapping[str, Tensor]) -> dict[str, dict[str, Any]]:
    """:func:`pack_mask` of every mask, keys kept."""
    return {name: pack_mask(mask) for name, mask in masks.items()}


def unpack_masks(masks: Mapping[str, Any]) -> dict[str, Tensor]:
    """Boolean CPU masks from packed masks or from plain mask tensors (as states before packing held)."""
    return {
        name: unpack_mask(value) if is_packed(value) else value.to("cpu", torch.bool) for name, value in masks.items()
    }
