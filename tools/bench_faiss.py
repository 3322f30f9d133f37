#!/usr/bin/env python3
"""Twin of `earshot bench search`: exact inner-product search with faiss-cpu's IndexFlatIP on random
unit vectors of the same sizes: build (adding the vectors, in the same chunks), the latency of one
query (median of fresh random queries) and of query batches, peak memory. One JSON line.

    pip install faiss-cpu        # into the reference venv
    python tools/bench_faiss.py --items 1000000 --dim 512 --threads 2

Python is only for this side-by-side comparison (never in the build or the tests).
"""
import argparse
import json
import os
import resource
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--batches", default="16,100,1000")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--chunk", type=int, default=65536)
    a = p.parse_args()
    # Both faiss's OpenMP loops and its BLAS read these when they start.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(a.threads)
    rng = np.random.default_rng(0)

    def unit(n):
        x = rng.standard_normal((n, a.dim), dtype=np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    index = faiss.IndexFlatIP(a.dim)
    build = 0.0
    start = 0
    while start < a.items:
        n = min(a.chunk, a.items - start)
        rows = unit(n)
        t0 = time.perf_counter()
        index.add(rows)
        build += time.perf_counter() - t0
        start += n

    def median(fn, iters):
        for _ in range(a.warmup):
            fn()
        times = []
        for _ in range(max(iters, 1)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2]

    out = {"bench": "search-faiss", "faiss": faiss.__version__, "items": a.items, "dim": a.dim, "top": a.top,
           "threads": a.threads, "build_s": build}
    out["query1_ms"] = median(lambda: index.search(unit(1), a.top), max(a.iters, 5)) * 1000
    for b in [int(s) for s in a.batches.split(",") if s.strip()]:
        q = unit(b)
        t = median(lambda: index.search(q, a.top), a.iters)
        out[f"batch{b}_ms"] = t * 1000
        out[f"batch{b}_per_query_ms"] = t * 1000 / b
    out["index_mb"] = a.items * a.dim * 4 / 1e6
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
