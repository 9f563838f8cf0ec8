#!/usr/bin/env python3
"""Ours vs the peers on the same networks, in the same run: p50 latency and ratios.

For every model, our agent exports the exact network it runs to ONNX (`ulayer-agent
export`), then each engine is timed in its own process on that same file and the same
input shape, with the same thread count:

  ours         ulayer-agent bench (CPU, F32)
  onnxruntime  CPU execution provider, intra-op threads = --threads, inter-op 1
  tract        tract's Python bindings (single-threaded by construction)

Method (as PEERS.md): warm-up runs discarded, then at least --min-runs runs and
--min-seconds seconds; p50 over the runs; --trials independent trials per engine (the
machine is noisy: read medians and ratios, not single numbers).

Usage: ./lab bench [--models mobilenet-v1,efficientnet-lite0] [--threads 2] [--trials 2]
       [--min-seconds 10] [--markdown FILE]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.environ.get("ULAB_AGENT") or os.path.join(ROOT, "target", "release", "ulayer-agent")


def timed_loop(run_once, warmup, min_runs, min_seconds):
    for _ in range(warmup):
        run_once()
    runs = []
    start = time.perf_counter()
    while len(runs) < min_runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter_ns()
        run_once()
        runs.append(time.perf_counter_ns() - t0)
    return runs


def worker(args):
    """Runs inside its own process: times one engine on one ONNX file, prints JSON."""
    import numpy as np

    shape = [int(d) for d in args.shape.split(",")]
    x = (np.arange(np.prod(shape), dtype=np.float32) * 7919 % 255 - 127.0) / 128.0
    x = x.reshape(shape).astype(np.float32)
    if args.worker == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        version = ort.__version__
        run_once = lambda: sess.run(None, {name: x})
    elif args.worker == "tract":
        import tract

        onnx = tract.onnx()
        if hasattr(onnx, "load"):  # tract >= 0.21: load -> typed model -> runnable (optimised)
            model = onnx.load(args.onnx).into_model().into_runnable()
            version = tract.version()
        else:  # older bindings
            model = onnx.model_for_path(args.onnx).into_optimized().into_runnable()
            version = getattr(tract, "__version__", "?")
        run_once = lambda: model.run([x])
    else:
        raise SystemExit(f"unknown worker {args.worker}")
    runs = timed_loop(run_once, args.warmup, args.min_runs, args.min_seconds)
    print(json.dumps({"engine": args.worker, "version": version, "runs_ns": runs}))


def p50_ms(runs_ns):
    return statistics.median(runs_ns) / 1e6


def run_ours(model, threads, warmup, min_runs, min_seconds):
    probe = json.loads(subprocess.check_output([AGENT, "bench", "--model", model, "--iterations", "5", "--warmup", "2", "--threads", str(threads), "--json"]))
    est = max(probe["latency"]["p50_ms"], 1e-3) / 1e3
    iterations = max(min_runs, int(min_seconds / est) + 1)
    out = json.loads(subprocess.check_output([AGENT, "bench", "--model", model, "--iterations", str(iterations), "--warmup", str(warmup), "--threads", str(threads), "--json"]))
    return out["runs_ns"]


def run_peer(engine, onnx, shape, threads, warmup, min_runs, min_seconds):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", engine, "--onnx", onnx, "--shape", shape, "--threads", str(threads),
           "--warmup", str(warmup), "--min-runs", str(min_runs), "--min-seconds", str(min_seconds)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return None, res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return out["runs_ns"], out["version"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenet-v1,efficientnet-lite0,squeezenet1.1,googlenet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--min-runs", type=int, default=200)
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--engines", default="ours,onnxruntime,tract")
    ap.add_argument("--markdown", help="also write the table as Markdown to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--onnx", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not os.path.exists(AGENT):
        raise SystemExit(f"{AGENT} is missing: run `cargo build --release -p ulayer` (./lab bench does)")

    engines = args.engines.split(",")
    rows = []
    tmp = tempfile.mkdtemp(prefix="ulab-bench-")
    for model in args.models.split(","):
        onnx = os.path.join(tmp, model + ".onnx")
        subprocess.check_call([AGENT, "export", "--model", model, "--out", onnx])
        info = [m for m in json.loads(subprocess.check_output([AGENT, "models", "--json"])) if m["name"] == model]
        shape = ",".join(str(d) for d in info[0]["input_shape"]) if info else "1,3,224,224"
        results = {}
        for engine in engines:
            trials = []
            note = ""
            for t in range(args.trials):
                threads = 1 if engine == "tract" else args.threads
                print(f"[{model}] {engine} trial {t + 1}/{args.trials} ({threads} thread(s))", file=sys.stderr, flush=True)
                if engine == "ours":
                    runs, note = run_ours(model, threads, args.warmup, args.min_runs, args.min_seconds), "ulayer " + "F32"
                else:
                    runs, note = run_peer(engine, onnx, shape, threads, args.warmup, args.min_runs, args.min_seconds)
                if runs is None:
                    break
                trials.append((p50_ms(runs), len(runs)))
            results[engine] = (trials, note)
        rows.append((model, results))

    header = f"machine: {platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · threads {args.threads} (tract: 1) · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    lines = [header, "", "| model | engine | p50 ms per trial | runs | ours / engine (median p50) |", "| --- | --- | --- | --- | --- |"]
    for model, results in rows:
        ours = results.get("ours", ([], ""))[0]
        ours_p50 = statistics.median([p for p, _ in ours]) if ours else None
        for engine, (trials, note) in results.items():
            if not trials:
                lines.append(f"| {model} | {engine} | failed: {note} | | |")
                continue
            med = statistics.median([p for p, _ in trials])
            ratio = f"{ours_p50 / med:.2f}×" if ours_p50 and engine != "ours" else ""
            name = engine if engine == "ours" else f"{engine} {note}"
            lines.append(f"| {model} | {name} | {' / '.join(f'{p:.2f}' for p, _ in trials)} | {' / '.join(str(n) for _, n in trials)} | {ratio} |")
    emit(lines, args.markdown)


def emit(lines, markdown=None):
    """Prints the report and, when asked, writes it as Markdown (the tools share this)."""
    text = "\n".join(lines)
    print(text)
    if markdown:
        with open(markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
