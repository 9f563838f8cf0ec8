#!/usr/bin/env python3
"""Times onnxruntime (CPU, F32) on ONNX files written by `cpu_bench --export DIR`, with the
same input as cpu_bench, N intra-op threads: 20 warm-up runs, then at least --runs runs and
--seconds seconds; prints p50/p90/min in ms.

Usage: python3 ort_bench.py FILE.onnx [FILE.onnx ...] [--threads 2] [--runs 300] [--seconds 5]
"""
import argparse
import time

import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("files", nargs="+")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--runs", type=int, default=300)
ap.add_argument("--seconds", type=float, default=5.0)
a = ap.parse_args()
for f in a.files:
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    s = ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    n = int(np.prod(shape))
    x = ((np.arange(n, dtype=np.int64) * 7919 % 255).astype(np.float32) - 127.0) / 128.0
    x = x.reshape(shape)
    for _ in range(20):
        s.run(None, {i.name: x})
    t = []
    t0 = time.perf_counter()
    while len(t) < a.runs or time.perf_counter() - t0 < a.seconds:
        t1 = time.perf_counter_ns()
        s.run(None, {i.name: x})
        t.append((time.perf_counter_ns() - t1) / 1e6)
    t.sort()
    print(f"onnxruntime {ort.__version__} {f}: threads {a.threads} runs {len(t)}: p50 {t[len(t) // 2]:.3f} ms  p90 {t[int(len(t) * 0.9)]:.3f} ms  min {t[0]:.3f} ms")
