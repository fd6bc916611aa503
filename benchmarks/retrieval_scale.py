"""How fast `vab retrieve`'s search answers over a large index, and what memory it adds.

    python benchmarks/retrieval_scale.py [--n 1000000] [--dim 256] [--chunk 65536]

Index: N random unit vectors (float32). Per row: one query alone, then a batch of 16; the time
is the median of 5 searches (top 10) after one warm-up. "extra peak memory" is how much the
process's peak resident set grew over the searches (warm-up included), beyond what building the
index took; "process peak" is the whole process's peak, index included.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from vabcli.tasks.retrieval import top_k


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=65_536)
    args = parser.parse_args()
    torch.manual_seed(0)
    index = torch.empty(args.n, args.dim)
    for start in range(0, args.n, 100_000):  # built in slices: no second full-size copy
        index[start : start + 100_000] = F.normalize(torch.randn(100_000, args.dim), dim=-1)
    index = index[: args.n]
    index_mb = index.numel() * 4 / 2**20
    print(
        f"index {args.n:,} x {args.dim} float32 ({index_mb:.0f} MiB), chunk {args.chunk:,}, "
        f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}\n"
    )
    print("| queries | median seconds per search | per query | extra peak memory | process peak |")
    print("|---|---|---|---|---|")
    for n_queries in (1, 16, 256):
        queries = F.normalize(torch.randn(n_queries, args.dim), dim=-1)
        before = peak_mb()
        top_k(queries, index, 10, args.chunk)  # warm-up
        times = []
        for _ in range(5):
            started = time.perf_counter()
            top_k(queries, index, 10, args.chunk)
            times.append(time.perf_counter() - started)
        median = statistics.median(times)
        extra = peak_mb() - before
        print(
            f"| {n_queries} | {median:.3f} | {median / n_queries:.4f} | {extra:.0f} MiB | "
            f"{peak_mb():.0f} MiB |"
        )


if __name__ == "__main__":
    main()
