#!/usr/bin/env python3
"""Run ONNX models with onnxruntime (CPU provider) and save their outputs as .npy files.

The reference oracle of ulayer's tests (`ulayer::onnx::reference`) and of the benchmark.

One model:
    ort_run.py MODEL.onnx --out-dir DIR [--input X.npy ...] [--seed N] [--threads T]
               [--opt-level all|extended|basic|disable] [--check] [--repeat R --warmup W]
Many models in one process (Python and onnxruntime start once):
    ort_run.py --batch JOBS.json [--threads T] [--opt-level ...] [--check]
    JOBS.json: [{"model": PATH, "out_dir": DIR, "inputs": [X.npy, ...] | "seed": N,
                 "repeat": R, "warmup": W}, ...]   (inputs/seed/repeat/warmup optional)

Inputs come from .npy files (model input order) or, with a seed (default 0), from numpy's
default generator (standard normal for floats; symbolic dimensions such as a dynamic batch
become 1), and are saved too. DIR/outputs.json lists inputs and outputs (name, file, shape,
dtype), the onnxruntime version and, with a repeat count, the latency of each timed run in
milliseconds. Exits non-zero, with the reason on stderr, if any job fails.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(bool)": np.bool_,
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="the .onnx file (or use --batch)")
    p.add_argument("--batch", metavar="JOBS.json", help="run the jobs listed in this file")
    p.add_argument("--out-dir", help="where outputs (and generated inputs) go")
    p.add_argument("--input", action="append", default=[], metavar="FILE.npy", help="an input tensor, in model input order (repeat)")
    p.add_argument("--seed", type=int, help="generate the inputs from this seed (the default, with seed 0)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime's default)")
    p.add_argument("--opt-level", choices=sorted(OPT_LEVELS), default="all", help="graph optimisation level (default: all)")
    p.add_argument("--check", action="store_true", help="run onnx.checker (full check, with shape inference) first")
    p.add_argument("--repeat", type=int, default=0, help="time this many runs (after --warmup) and record them")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before --repeat (default: 1)")
    args = p.parse_args(argv)
    if (args.model is None) == (args.batch is None):
        p.error("give a MODEL or --batch JOBS.json")
    if args.model is not None and args.out_dir is None:
        p.error("--out-dir is required with a MODEL")
    if args.input and args.seed is not None:
        p.error("give --input files or --seed, not both")
    return args


def concrete_shape(shape):
    """Fixed dimensions stay; symbolic or unknown ones (dynamic batch) become 1."""
    return [d if isinstance(d, int) and d > 0 else 1 for d in shape]


def generated_input(rng, meta):
    dtype = DTYPES.get(meta.type)
    if dtype is None:
        raise ValueError(f"input '{meta.name}': cannot generate values of type {meta.type}")
    shape = concrete_shape(meta.shape)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    return rng.integers(0, 10, size=shape).astype(dtype)


def save(out_dir, prefix, index, name, array):
    file = f"{prefix}_{index}.npy"
    array = np.ascontiguousarray(array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array)
    np.save(os.path.join(out_dir, file), array)
    return {"name": name, "file": file, "shape": list(array.shape), "dtype": str(array.dtype)}


def run_job(model, out_dir, input_files, seed, threads, opt_level, check, repeat, warmup):
    if check:
        import onnx

        onnx.checker.check_model(onnx.load(model), full_check=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = OPT_LEVELS[opt_level]
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    metas = session.get_inputs()
    if input_files:
        if len(input_files) != len(metas):
            raise ValueError(f"the model has {len(metas)} input(s) {[m.name for m in metas]}, got {len(input_files)} input file(s)")
        inputs = [np.load(f) for f in input_files]
        inputs = [x.astype(DTYPES.get(m.type, x.dtype)) for x, m in zip(inputs, metas)]
    else:
        rng = np.random.default_rng(0 if seed is None else seed)
        inputs = [generated_input(rng, m) for m in metas]
    feed = {m.name: x for m, x in zip(metas, inputs)}
    outputs = session.run(None, feed)

    timings = []
    if repeat > 0:
        for _ in range(warmup):
            session.run(None, feed)
        for _ in range(repeat):
            start = time.perf_counter_ns()
            session.run(None, feed)
            timings.append((time.perf_counter_ns() - start) / 1e6)

    os.makedirs(out_dir, exist_ok=True)
    manifest = {
        "model": os.path.abspath(model),
        "onnxruntime": ort.__version__,
        "inputs": [save(out_dir, "input", i, m.name, x) for i, (m, x) in enumerate(zip(metas, inputs))],
        "outputs": [save(out_dir, "output", i, m.name, y) for i, (m, y) in enumerate(zip(session.get_outputs(), outputs))],
    }
    if timings:
        manifest["threads"] = threads
        manifest["timings_ms"] = timings
    with open(os.path.join(out_dir, "outputs.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def main(argv):
    args = parse_args(argv)
    if args.batch is None:
        jobs = [{"model": args.model, "out_dir": args.out_dir, "inputs": args.input, "seed": args.seed, "repeat": args.repeat, "warmup": args.warmup}]
    else:
        with open(args.batch) as f:
            jobs = json.load(f)
    failed = 0
    for job in jobs:
        try:
            run_job(
                job["model"],
                job["out_dir"],
                job.get("inputs") or [],
                job.get("seed"),
                args.threads,
                args.opt_level,
                args.check,
                job.get("repeat", 0),
                job.get("warmup", 1),
            )
        except Exception as e:  # one line per failed job, then go on with the others
            print(f"{job.get('model')}: {type(e).__name__}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
