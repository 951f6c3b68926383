"""Exact selection of the largest magnitudes in linear time and bounded memory.

Pure tensor math, Lightning-free. :func:`keep_largest` answers the one question magnitude and
random pruning ask: *which ``keep`` of these alive values are the largest?* It gives exactly the
answer of a stable descending sort of every value (ties broken by position: earlier segments,
then lower indices, survive first), without sorting and without any temporary of the pool's size.

How: a non-negative ``float32`` is ordered exactly as its bits read as an ``int32``. So the
``keep``-th largest magnitude is found by a radix select over those 31 bits: one pass counts the
alive values per value of the high 15 bits (a histogram of 32,768 bins), which fixes the bucket
the threshold lies in. A second pass finds the threshold ``T`` exactly within that bucket: it
gathers the bucket's keys and sorts them when they fit in the working buffers (the usual case: a
bucket holds about 1/128 of a value's magnitude range), and otherwise counts them per low 16 bits
(a second histogram, whatever the ties). A third pass writes the masks (``key > T``, plus the
first alive keys equal to ``T`` by position). Each pass reads the values chunk by chunk into a
few reused buffers, so the extra memory is a small constant (about ``13 * chunk`` bytes and two
histograms), whatever the pool's size, on the values' device.

Magnitudes are ranked as ``float32`` (``bfloat16`` and ``float16`` convert exactly; ``float64``
rounds to the nearest ``float32``), as the sort-based ranking did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["DEFAULT_CHUNK", "keep_largest"]

DEFAULT_CHUNK = 1 << 20  # values per pass step: 12 MiB of buffers
_ABS = 0x7FFFFFFF  # clears the sign bit: the bits of |x| for a float32 x
_NON_FINITE = 0x7F800000  # |x| bits at or above this: infinite or NaN
_HIGH_SHIFT = 16
_HIGH_BINS = 1 << 15  # values of the high bits of a non-negative int32
_LOW_BINS = 1 << _HIGH_SHIFT


class _Buffers:
    """Reused chunk buffers on one device: keys (``|x|`` bits as int32), an int32 scratch, flags, a float32 copy."""

    def __init__(self, device: torch.device, chunk: int) -> None:
        self.chunk = chunk
        self.keys = torch.empty(chunk, dtype=torch.int32, device=device)
        self.scratch = torch.empty(chunk, dtype=torch.int32, device=device)
        self.flags = torch.empty(chunk, dtype=torch.bool, device=device)
        self.zero = torch.zeros((), dtype=torch.int32, device=device)
        self.sentinel = torch.tensor(_HIGH_BINS, dtype=torch.int32, device=device)
        self._floats: Tensor | None = None

    def key(self, values: Tensor) -> Tensor:
        """The int32 keys of ``|values|`` (as float32), in the key buffer."""
        n = values.numel()
        if values.dtype != torch.float32:
            if self._floats is None:
                self._floats = torch.empty(self.chunk, dtype=torch.float32, device=self.keys.device)
            values = self._floats[:n].copy_(values)
        return torch.bitwise_and(values.view(torch.int32), _ABS, out=self.keys[:n])


def _chunks(values: Tensor, alive: Tensor, chunk: int) -> Iterator[tuple[int, Tensor, Tensor]]:
    """``(start, values, alive)`` chunk by chunk, the alive flags moved to the values' device one chunk at a time."""
    for start in range(0, values.numel(), chunk):
        yield start, values[start : start + chunk], alive[start : start + chunk].to(values.device)


def _bucket(counts: Tensor, keep: int) -> tuple[int, int]:
    """The bin holding the ``keep``-th largest value, and how many values lie in higher bins.

    ``counts`` is a histogram (CPU, int64) of values per bin, bins in increasing value order;
    ``1 <= keep <= counts.sum()``.
    """
    at_or_above = counts.flip(0).cumsum(0).flip(0)
    b = int(torch.nonzero(at_or_above >= keep).max())
    return b, int(at_or_above[b] - counts[b])


def _high_histogram(values: Tensor, alive: Tensor, buffers: _Buffers, name: str) -> Tensor:
    """Alive values per high-bits bin of their keys (CPU, int64, ``_HIGH_BINS`` bins)."""
    total = torch.zeros(_HIGH_BINS + 1, dtype=torch.int64, device=values.device)
    for _, v, a in _chunks(values, alive, buffers.chunk):
        high = torch.bitwise_right_shift(buffers.key(v), _HIGH_SHIFT, out=buffers.scratch[: v.numel()])
        total += torch.bincount(torch.where(a, high, buffers.sentinel, out=high), minlength=_HIGH_BINS + 1)
    counts = total[:_HIGH_BINS].cpu()
    if bool(counts[_NON_FINITE >> _HIGH_SHIFT :].any()):
        raise ValueError(f"Cannot prune {name!r}: it holds NaN or infinite values.")
    return counts


def _low_histogram(values: Tensor, alive: Tensor, buffers: _Buffers, base: int) -> Tensor:
    """Alive values per low-bits bin among the keys in ``[base, base + 2**16)`` (CPU, int64, ``_LOW_BINS`` bins)."""
    total = torch.zeros(_LOW_BINS + 2, dtype=torch.int64, device=values.device)
    for _, v, a in _chunks(values, alive, buffers.chunk):
        # Keys below the bucket land in bin 0, keys above it in the last bin, pruned values in bin 0.
        low = torch.clamp(buffers.key(v), base - 1, base + _LOW_BINS, out=buffers.scratch[: v.numel()])
        low.sub_(base - 1)
        total += torch.bincount(torch.where(a, low, buffers.zero, out=low), minlength=_LOW_BINS + 2)
    return total[1 : _LOW_BINS + 1].cpu()


def _bucket_keys(values: Tensor, alive: Tensor, buffers: _Buffers, bucket: int) -> list[Tensor]:
    """The keys of the alive values whose high bits are ``bucket``, chunk by chunk (in no particular order)."""
    found = []
    for _, v, a in _chunks(values, alive, buffers.chunk):
        key = buffers.key(v)
        high = torch.bitwise_right_shift(key, _HIGH_SHIFT, out=buffers.scratch[: v.numel()])
        inside = torch.eq(high, bucket, out=buffers.flags[: v.numel()]).logical_and_(a)
        found.append(key[inside])
    return found


def _threshold(
    segments: Sequence[tuple[Tensor, Tensor]], buffers: dict[torch.device, _Buffers], high: Tensor, keep: int
) -> tuple[int, int, int]:
    """The ``keep``-th largest alive key ``T``, how many alive keys equal ``T`` are kept, and how many there are."""
    bucket, above = _bucket(high, keep)
    wanted = keep - above  # of the bucket's keys, the largest ones
    if int(high[bucket]) <= min(b.chunk for b in buffers.values()):  # gather the bucket and sort it
        keys = [k.cpu() for v, a in segments for k in _bucket_keys(v, a, buffers[v.device], bucket)]
        ranked = torch.cat(keys).sort(descending=True).values
        threshold = int(ranked[wanted - 1])
        above_threshold = int((ranked > threshold).sum())
        return threshold, wanted - above_threshold, int((ranked == threshold).sum())
    base = bucket << _HIGH_SHIFT
    low = torch.zeros(_LOW_BINS, dtype=torch.int64)
    for v, a in segments:
        low += _low_histogram(v, a, buffers[v.device], base)
    offset, above_offset = _bucket(low, wanted)
    return base + offset, wanted - above_offset, int(low[offset])


class _Writer:
    """Writes the masks: every alive key above ``threshold``, and the first ``ties`` alive keys equal to it."""

    def __init__(self, threshold: int, ties: int, all_ties: bool) -> None:
        self.threshold, self.ties, self.all_ties = threshold, ties, all_ties

    def write(self, values: Tensor, alive: Tensor, out: Tensor, buffers: _Buffers) -> None:
        for start, v, a in _chunks(values, alive, buffers.chunk):
            key = buffers.key(v)
            kept = buffers.flags[: key.numel()]
            if self.all_ties:  # the usual case: every alive value equal to the threshold is kept
                torch.ge(key, self.threshold, out=kept)
            else:
                torch.gt(key, self.threshold, out=kept)
                if self.ties > 0:
                    self._add_ties(key, a, kept)
            kept.logical_and_(a)
            out[start : start + key.numel()].copy_(kept)

    def _add_ties(self, key: Tensor, alive: Tensor, kept: Tensor) -> None:
        tied = torch.eq(key, self.threshold).logical_and_(alive)
        count = int(torch.count_nonzero(tied))
        if count > self.ties:  # only the first ones by position
            tied.logical_and_(torch.cumsum(tied, 0, dtype=torch.int32) <= self.ties)
            count = self.ties
        kept.logical_or_(tied)
        self.ties -= count


def keep_largest(
    values: Sequence[Tensor],
    alive: Sequence[Tensor],
    keep: int,
    *,
    names: Sequence[str] | None = None,
    chunk: int = DEFAULT_CHUNK,
    out: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """Masks of the ``keep`` alive values of largest magnitude, pooled over several flat tensors.

    Exactly what a stable descending sort of the magnitudes (as ``float32``, pruned values last)
    keeps: ties go to the earlier tensor, then the lower index. Linear time; the only memory
    beyond the returned masks is a few buffers of ``chunk`` values on each values' device.

    Args:
        values: 1-D tensors (the pool's segments), any floating dtype, on any device.
        alive: 1-D boolean tensors of the same lengths: only alive values can be kept. They may
            live on another device than the values (the CPU, say, for values on a GPU).
        keep: How many values to keep, clipped to the number alive (nothing revives).
        names: Segment names for error messages (default: their positions).
        chunk: Values read per step of each pass (bounds the extra memory), >= 1.
        out: Boolean tensors to write the masks into, shaped as ``alive`` (new ones on the
            devices of ``alive`` by default).

    Returns:
        The boolean masks, one per segment (``out`` when given).

    Raises:
        ValueError: If a value is NaN or infinite, ``keep`` is negative, ``chunk`` is below 1,
            or the segments and masks do not pair up.
    """
    if len(values) != len(alive) or any(v.dim() != 1 or v.shape != a.shape for v, a in zip(values, alive, strict=True)):
        raise ValueError("`values` and `alive` must pair up as 1-D tensors of the same lengths.")
    if keep < 0:
        raise ValueError(f"`keep` must be >= 0, got {keep}.")
    if chunk < 1:
        raise ValueError(f"`chunk` must be >= 1, got {chunk}.")
    labels = [str(i) for i in range(len(values))] if names is None else list(names)
    if out is None:
        out = [torch.empty(a.shape, dtype=torch.bool, device=a.device) for a in alive]
    elif len(out) != len(alive) or any(
        o.shape != a.shape or o.dtype != torch.bool for o, a in zip(out, alive, strict=False)
    ):
        raise ValueError("`out` must hold one boolean tensor per segment, shaped as its `alive`.")
    out = list(out)
    size = max(1, min(chunk, max((v.numel() for v in values), default=1)))
    buffers = {device: _Buffers(device, size) for device in {v.device for v in values}}
    segments = list(zip(values, alive, labels, out, strict=True))

    high = torch.zeros(_HIGH_BINS, dtype=torch.int64)
    for v, a, name, _ in segments:
        high += _high_histogram(v, a, buffers[v.device], name)
    alive_count = int(high.sum())
    if keep >= alive_count:
        return [o.copy_(a) for o, a in zip(out, alive, strict=True)]
    if keep == 0:
        return [o.zero_() for o in out]
    threshold, ties, tied = _threshold([(v, a) for v, a, _, _ in segments], buffers, high, keep)
    writer = _Writer(threshold, ties, all_ties=ties == tied)
    for v, a, _, o in segments:
        writer.write(v, a, o, buffers[v.device])
    return out
