#!/usr/bin/env python3
"""8-bit inference: our QUInt8 vs our F32 vs onnxruntime's 8-bit path, same networks, same
thread count, same run: p50 latency and ratios.

For every model, our agent exports the exact network it runs (`ulayer-agent export`), and

  ours f32       ulayer-agent bench --precision f32
  ours quint8    ulayer-agent bench --precision quint8 (calibrated on the bundled photos)
  ort f32        onnxruntime on the F32 export
  ort 8-bit      onnxruntime on the F32 export quantized by onnxruntime.quantization
                 .quantize_static: QDQ format, QUInt8 activations, per-channel QInt8 weights,
                 calibrated (MinMax) on --calibration-samples deterministic inputs
  ort 8-bit ours onnxruntime on our own QDQ export (`export --precision quint8`): the same
                 scales, zero points and weights as ours quint8

each timed in its own process (warm-up discarded, then at least --min-runs runs and
--min-seconds seconds), engines interleaved trial by trial; p50 per trial, median over
trials. The ratio column divides those medians; "paired" is the median over trials of
(ours in trial t) / (engine in trial t), which cancels drift between trials. onnxruntime runs
with intra-op threads = --threads, inter-op 1, sequential.

Usage: tools/bench_q8.py [--models mobilenet-v1,efficientnet-lite0] [--threads 2]
       [--trials 2] [--min-seconds 10] [--markdown FILE]
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_peers  # noqa: E402  (timing worker, shared method)

AGENT = bench_peers.AGENT


def run_ours(model, precision, threads, warmup, min_runs, min_seconds):
    base = [AGENT, "bench", "--model", model, "--precision", precision, "--threads", str(threads), "--json"]
    probe = json.loads(subprocess.check_output(base + ["--iterations", "5", "--warmup", "2"]))
    est = max(probe["latency"]["p50_ms"], 1e-3) / 1e3
    iterations = max(min_runs, int(min_seconds / est) + 1)
    out = json.loads(subprocess.check_output(base + ["--iterations", str(iterations), "--warmup", str(warmup)]))
    return out["runs_ns"]


def quantize_with_onnxruntime(src, dst, shape, samples):
    """onnxruntime's own static quantization of our F32 export (QDQ, U8 activations,
    per-channel S8 weights), calibrated on deterministic inputs."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    import onnxruntime as ort

    name = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    rng = np.random.default_rng(0)
    data = [{name: rng.uniform(-2.0, 2.0, size=shape).astype(np.float32)} for _ in range(samples)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(data)

        def get_next(self):
            return next(self.it, None)

    quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenet-v1,efficientnet-lite0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--min-runs", type=int, default=200)
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--calibration-samples", type=int, default=8)
    ap.add_argument("--engines", default="ours-f32,ours-quint8,ort-f32,ort-8bit,ort-8bit-ours")
    ap.add_argument("--markdown", help="also write the table as Markdown to this file")
    args = ap.parse_args()
    if not os.path.exists(AGENT):
        raise SystemExit(f"{AGENT} is missing: run `cargo build --release -p ulayer`")

    engines = args.engines.split(",")
    tmp = tempfile.mkdtemp(prefix="ulab-bench-q8-")
    rows = []
    versions = {}
    for model in args.models.split(","):
        f32 = os.path.join(tmp, model + ".onnx")
        ort8 = os.path.join(tmp, model + ".ort-qdq.onnx")
        ours8 = os.path.join(tmp, model + ".ours-qdq.onnx")
        subprocess.check_call([AGENT, "export", "--model", model, "--out", f32])
        info = [m for m in json.loads(subprocess.check_output([AGENT, "models", "--json"])) if m["name"] == model]
        shape = info[0]["input_shape"] if info else [1, 3, 224, 224]
        if "ort-8bit" in engines:
            quantize_with_onnxruntime(f32, ort8, shape, args.calibration_samples)
        if "ort-8bit-ours" in engines:
            subprocess.check_call([AGENT, "export", "--model", model, "--precision", "quint8", "--out", ours8])
        files = {"ort-f32": f32, "ort-8bit": ort8, "ort-8bit-ours": ours8}
        results = {e: [] for e in engines}
        notes = {}
        for t in range(args.trials):
            for engine in engines:
                print(f"[{model}] {engine} trial {t + 1}/{args.trials} ({args.threads} threads)", file=sys.stderr, flush=True)
                if engine.startswith("ours-"):
                    runs = run_ours(model, engine[5:], args.threads, args.warmup, args.min_runs, args.min_seconds)
                else:
                    runs, note = bench_peers.run_peer("onnxruntime", files[engine], ",".join(map(str, shape)), args.threads,
                                                      args.warmup, args.min_runs, args.min_seconds)
                    if runs is None:
                        notes[engine] = f"failed: {note}"
                        continue
                    versions["onnxruntime"] = note
                results[engine].append((bench_peers.p50_ms(runs), len(runs), t))
        rows.append((model, results, notes))

    header = (f"machine: {platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · {args.threads} threads · "
              f"onnxruntime {versions.get('onnxruntime', '?')} · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    lines = [header, "",
             "| model | engine | p50 ms per trial | runs | median p50 ms | ours quint8 / engine | paired |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for model, results, notes in rows:
        q = results.get("ours-quint8") or []
        q50 = statistics.median([p for p, _, _ in q]) if q else None
        q_by_trial = {t: p for p, _, t in q}
        for engine in engines:
            trials = results.get(engine) or []
            if not trials:
                lines.append(f"| {model} | {engine} | {notes.get(engine, 'not run')} | | | | |")
                continue
            med = statistics.median([p for p, _, _ in trials])
            ratio = f"{q50 / med:.2f}×" if q50 and engine != "ours-quint8" else ""
            # The same trial's two engines ran back to back, so their ratio cancels the
            # machine's drift between trials; its median is the steadier figure on a noisy VM.
            per_trial = [q_by_trial[t] / p for p, _, t in trials if t in q_by_trial]
            paired = (f"{statistics.median(per_trial):.2f}×" if per_trial and engine != "ours-quint8" else "")
            lines.append(f"| {model} | {engine} | {' / '.join(f'{p:.2f}' for p, _, _ in trials)} | "
                         f"{' / '.join(str(n) for _, n, _ in trials)} | {med:.2f} | {ratio} | {paired} |")
    bench_peers.emit(lines, args.markdown)


if __name__ == "__main__":
    main()
