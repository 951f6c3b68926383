"""Inference of an exported ticket: dense masked MLP vs CSR sparse layers, at several densities.

For the seed MLP (784-256-128-32-10) pruned by global magnitude to each density, measures the
median latency of a forward pass at batch sizes 1 and 256 (dense and sparse interleaved), the
throughput, and the size on disk of the dense state_dict and of the sparse layers.

    python benchmarks/sparse_inference.py
    python benchmarks/sparse_inference.py --densities 1 0.2 0.1 0.05 0.02 --batches 1 256 --reps 200
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch

from lth_lightning import MLP, to_sparse
from lth_lightning.pruning.magnitude import prune


def pruned_mlp(density: float, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    net = MLP().eval()
    if density < 1:
        weights = {n: p.detach() for n, p in net.named_parameters() if n.endswith("weight")}
        masks = prune(
            weights, {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}, 1 - density, rounds=1
        )
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name in masks:
                    p.mul_(masks[name])
    return net


def saved_bytes(obj: object) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def time_once(net: torch.nn.Module, x: torch.Tensor, inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        net(x)
    return (time.perf_counter() - start) / inner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.2, 0.1, 0.05, 0.02])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions (each of several calls)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(
        "\n| density | batch | dense ms | sparse ms | sparse / dense | dense samples/s | sparse samples/s | "
        "dense file KB | sparse file KB |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    crossover: dict[int, float | None] = dict.fromkeys(args.batches)
    for density in args.densities:
        dense = pruned_mlp(density)
        sparse = to_sparse(dense)
        dense_kb = saved_bytes(dense.state_dict()) / 1024
        sparse_kb = saved_bytes(sparse.state_dict()) / 1024
        for batch in args.batches:
            x = torch.randn(batch, 784)
            inner = 200 if batch == 1 else 10
            with torch.no_grad():
                for net in (dense, sparse):  # warm-up
                    time_once(net, x, inner)
                d_times, s_times = [], []
                for _ in range(args.reps):  # interleaved
                    d_times.append(time_once(dense, x, inner))
                    s_times.append(time_once(sparse, x, inner))
            d, s = statistics.median(d_times), statistics.median(s_times)
            if s < d and (crossover[batch] is None or density > crossover[batch]):
                crossover[batch] = density
            print(
                f"| {100 * density:g}% | {batch} | {1e3 * d:.4f} | {1e3 * s:.4f} | {s / d:.2f} | {batch / d:,.0f} | "
                f"{batch / s:,.0f} | {dense_kb:,.0f} | {sparse_kb:,.0f} |"
            )
    for batch, density in crossover.items():
        where = "never, at the densities measured" if density is None else f"at {100 * density:g}% of weights or less"
        print(f"batch {batch}: sparse beats dense {where}")


if __name__ == "__main__":
    main()
