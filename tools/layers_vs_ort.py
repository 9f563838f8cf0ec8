#!/usr/bin/env python3
"""Where the time goes, layer by layer: our CPU executor against onnxruntime on the same
network, same precision, same thread count, in the same run.

For every model, our agent exports the network it runs (`ulayer-agent export`; with
--precision quint8 the QDQ export with our own scales, zero points and weights, which
onnxruntime runs as QLinearConv/QGemm), then

  ours         ulayer-agent bench --json: per-layer p50 over --runs runs
  onnxruntime  the export with onnxruntime's profiler on (intra-op threads = --threads,
               inter-op 1, sequential): per-node kernel time, p50 over the same number of
               runs after the warm-up

Nodes are matched by name (onnxruntime's fused and transposed nodes keep the original name
as a prefix). Prints one row per layer (ours, onnxruntime, ratio), the sums per layer kind,
and both engines' whole-inference p50; a ratio above 1 means we are slower on that layer.
onnxruntime's layout changes (Transpose to NHWC) and QuantizeLinear of the input have no
counterpart of ours and are listed under "onnxruntime only".

Usage: tools/layers_vs_ort.py [--models mobilenet-v1,efficientnet-lite0] [--precision quint8]
       [--threads 2] [--runs 60] [--warmup 10] [--markdown FILE]
"""
import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_peers  # noqa: E402  (agent path, shared)

AGENT = bench_peers.AGENT


def ours(model, precision, threads, runs, warmup):
    out = subprocess.check_output([AGENT, "bench", "--model", model, "--precision", precision, "--threads",
                                   str(threads), "--iterations", str(runs), "--warmup", str(warmup), "--json"])
    rep = json.loads(out)
    layers = [(lay["node"], lay["kind"], lay["p50_ms"]) for lay in rep["layers"]]
    return layers, rep["latency"]["p50_ms"]


def onnxruntime_profile(path, shape, threads, runs, warmup, tmp):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tmp, "ort-profile")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-2.0, 2.0, size=shape).astype(np.float32)
    walls = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        if i >= warmup:
            walls.append((time.perf_counter() - t) * 1e3)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    per_node = collections.defaultdict(list)
    ops = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            n = e["name"][: -len("_kernel_time")]
            per_node[n].append(e["dur"] / 1e3)
            ops[n] = e.get("args", {}).get("op_name", "?")
    nodes = {n: (ops[n], statistics.median(v[warmup:] or v)) for n, v in per_node.items()}
    return nodes, statistics.median(walls), ort.__version__


def base_name(ort_node, ours_names):
    """Our node name inside onnxruntime's: QDQ fusion appends `_token_N`, the NCHWc layout
    `_nchwc`, quantized exports `_DequantizeLinear` and the like; a convolution fused with its
    activation takes the activation's name (`conv1/relu6`), so trailing `/part`s are dropped
    until one of our names matches."""
    n = re.sub(r"_token_\d+$", "", ort_node)
    n = re.sub(r"_(nchwc|DequantizeLinear|QuantizeLinear|quant|dequant)$", "", n)
    while n not in ours_names and "/" in n:
        n = n.rsplit("/", 1)[0]
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenet-v1,efficientnet-lite0")
    ap.add_argument("--precision", default="quint8", choices=["f32", "quint8"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--markdown", help="also write the tables as Markdown to this file")
    args = ap.parse_args()
    if not os.path.exists(AGENT):
        raise SystemExit(f"{AGENT} is missing: run `cargo build --release -p ulayer`")
    tmp = tempfile.mkdtemp(prefix="ulab-layers-vs-ort-")
    lines = [f"machine: {os.uname().nodename} · {os.cpu_count()} CPUs · {args.threads} threads · precision "
             f"{args.precision} · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]
    for model in args.models.split(","):
        path = os.path.join(tmp, f"{model}.{args.precision}.onnx")
        export = [AGENT, "export", "--model", model, "--out", path]
        if args.precision == "quint8":
            export += ["--precision", "quint8"]
        subprocess.check_call(export, stdout=subprocess.DEVNULL)
        info = [m for m in json.loads(subprocess.check_output([AGENT, "models", "--json"])) if m["name"] == model]
        shape = info[0]["input_shape"] if info else [1, 3, 224, 224]
        print(f"[{model}] ours, {args.runs} runs", file=sys.stderr, flush=True)
        layers, ours_p50 = ours(model, args.precision, args.threads, args.runs, args.warmup)
        print(f"[{model}] onnxruntime with its profiler, {args.runs} runs", file=sys.stderr, flush=True)
        nodes, ort_p50, version = onnxruntime_profile(path, shape, args.threads, args.runs, args.warmup, tmp)
        ours_names = {n for n, _, _ in layers}
        theirs = collections.defaultdict(float)
        for n, (_, ms) in nodes.items():
            theirs[base_name(n, ours_names)] += ms
        only_ort = sorted((n, op, ms) for n, (op, ms) in nodes.items() if base_name(n, ours_names) not in ours_names)
        lines += ["", f"### {model} ({args.precision}; onnxruntime {version})", "",
                  "| layer | kind | ours ms | onnxruntime ms | ours / onnxruntime |", "| --- | --- | ---: | ---: | ---: |"]
        kinds = collections.defaultdict(lambda: [0, 0.0, 0.0])
        for n, kind, ms in layers:
            t = theirs.get(n)
            ratio = f"{ms / t:.2f}×" if t else ""
            lines.append(f"| {n} | {kind} | {ms:.3f} | {t:.3f} | {ratio} |" if t is not None
                         else f"| {n} | {kind} | {ms:.3f} | — | |")
            k = kinds[kind]
            k[0] += 1
            k[1] += ms
            k[2] += t or 0.0
        lines += ["", "| kind | layers | ours ms | onnxruntime ms | ours / onnxruntime |", "| --- | ---: | ---: | ---: | ---: |"]
        for kind, (count, a, b) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
            lines.append(f"| {kind} | {count} | {a:.3f} | {b:.3f} | {a / b:.2f}× |" if b
                         else f"| {kind} | {count} | {a:.3f} | — | |")
        extra = sum(ms for _, _, ms in only_ort)
        lines.append(f"| onnxruntime only ({', '.join(sorted({op for _, op, _ in only_ort})) or 'none'}) | "
                     f"{len(only_ort)} | | {extra:.3f} | |")
        lines += ["", f"Whole inference p50: ours {ours_p50:.2f} ms, onnxruntime {ort_p50:.2f} ms "
                  f"(with its profiler on), ratio {ours_p50 / ort_p50:.2f}×."]
    bench_peers.emit(lines, args.markdown)


if __name__ == "__main__":
    main()
