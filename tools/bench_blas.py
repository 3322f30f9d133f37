#!/usr/bin/env python3
"""Measures the SGEMMs Debian offers (OpenBLAS, BLIS, oneDNN's dnnl_sgemm) on transformer shapes,
each in its own process with 2 threads, C = A Bᵀ with B stored [N, K] (a Linear layer).
Usage: python3 tools/bench_blas.py   (needs numpy, libopenblas0-pthread, libblis4-pthread, libdnnl2)
Prints one JSON line per library and shape. Used to pick Earshot's BLAS (docs/BENCHMARKS.md)."""
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

# The last shape is one attention score block (128 queries x 1212 keys, head dim 64).
SHAPES = [(9696, 192, 576), (9696, 192, 768), (9696, 768, 192), (9696, 384, 1536), (4096, 768, 3072), (9696, 768, 2304), (128, 64, 1212)]
LIBS = {
    "openblas": ("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0", {"OPENBLAS_NUM_THREADS": "2"}),
    "blis": ("/usr/lib/x86_64-linux-gnu/blis-pthread/libblis.so.4", {"BLIS_NUM_THREADS": "2"}),
    "dnnl": ("/usr/lib/x86_64-linux-gnu/libdnnl.so.2", {"OMP_NUM_THREADS": "2"}),
}


def run_one(name):
    import numpy as np
    path, _ = LIBS[name]
    lib = ctypes.CDLL(path)
    fp = ctypes.POINTER(ctypes.c_float)
    for m, k, n in SHAPES:
        a = np.random.rand(m, k).astype(np.float32)
        b = np.random.rand(n, k).astype(np.float32)
        c = np.zeros((m, n), dtype=np.float32)
        pa, pb, pc = (x.ctypes.data_as(fp) for x in (a, b, c))
        if name == "dnnl":
            L = ctypes.c_int64
            call = lambda: lib.dnnl_sgemm(ctypes.c_char(b"N"), ctypes.c_char(b"T"), L(m), L(n), L(k), ctypes.c_float(1.0),
                                          pa, L(k), pb, L(k), ctypes.c_float(0.0), pc, L(n))
        else:
            I = ctypes.c_int
            # CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112
            call = lambda: lib.cblas_sgemm(I(101), I(111), I(112), I(m), I(n), I(k), ctypes.c_float(1.0),
                                           pa, I(k), pb, I(k), ctypes.c_float(0.0), pc, I(n))
        call()
        times = []
        for _ in range(7):
            t0 = time.perf_counter(); call(); times.append(time.perf_counter() - t0)
        ref = a @ b.T
        err = float(np.abs(ref - c).max() / max(np.abs(ref).max(), 1e-6))
        t = statistics.median(times)
        print(json.dumps({"bench": "sgemm", "lib": name, "m": m, "k": k, "n": n, "threads": 2,
                          "gflops_median": round(2 * m * k * n / t / 1e9, 1),
                          "gflops_best": round(2 * m * k * n / min(times) / 1e9, 1), "rel_err": err}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run_one(sys.argv[1])
    else:
        for name, (path, env) in LIBS.items():
            if not os.path.exists(path):
                print(json.dumps({"lib": name, "skipped": f"{path} not installed"}))
                continue
            subprocess.run([sys.executable, __file__, name], env={**os.environ, **env}, check=False)
