#!/usr/bin/env python3
"""Our Vulkan GPU backend vs ncnn's Vulkan path on the same network, same device, same run.

For every model our agent exports the exact network it runs (`ulayer-agent export`, ONNX),
tools/onnx_to_ncnn.py turns that file into ncnn's .param/.bin (same weights, activations fused
as ncnnoptimize would), and then, per precision:

  check   ncnn's output on the bench input against onnxruntime's on the same ONNX file (F32:
          max |diff| <= 1e-4 * max|logit| + 1e-5; F16: <= 3e-2 * max|logit| and the same
          top-1). Our side of that equality is asserted by the test suite (our CPU = onnxruntime
          within 1e-5 + 1e-4*max|logit|, zoo_vs_onnxruntime.rs; our GPU = our CPU within the
          same F32 bound and 3e-2 at F16, vulkan_zoo.rs), so a passing check means ncnn computes
          what we compute. Timing stops at the first mismatch.
  ours    ulayer-agent bench --mechanism gpu --precision P (Vulkan device: $ULAYER_VK_DEVICE,
          else the agent's choice), p50 of the whole inference on the host clock.
  ncnn    PyPI ncnn, use_vulkan_compute on (device --ncnn-gpu), fp16 packed/storage/arithmetic
          on for F16 and off for F32; one extractor per inference (input upload, every layer,
          output download), p50 over the runs, in its own process.

Both sides use the same input (the agent's bench input formula), --warmup unmeasured runs,
then at least --min-runs runs and --min-seconds seconds. Prints p50 per network and the ratio
ours / ncnn (< 1: we are faster).

Usage: ./lab bench-gpu [--models mobilenet-v1,efficientnet-lite0] [--precisions f32,f16]
       [--min-runs 3] [--warmup 1] [--markdown FILE]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = os.environ.get("ULAB_AGENT") or os.path.join(ROOT, "target", "release", "ulayer-agent")
sys.path.insert(0, os.path.join(ROOT, "tools"))


def bench_input(shape):
    import numpy as np

    n = 1
    for d in shape:
        n *= d
    x = (np.arange(n, dtype=np.int64) * 7919 % 255 - 127.0) / 128.0
    return x.astype(np.float32).reshape(shape)


def make_net(args, param, binf, fp16):
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = True
    net.opt.num_threads = args.threads
    for k in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic"):
        setattr(net.opt, k, fp16)
    net.set_vulkan_device(args.ncnn_gpu)
    if net.load_param(param) != 0 or net.load_model(binf) != 0:
        raise SystemExit(f"ncnn could not load {param}")
    return net


def worker(args):
    """In its own process: check or time ncnn on one model at one precision; prints JSON."""
    import numpy as np
    import ncnn

    shape = [int(d) for d in args.shape.split(",")]
    x = bench_input(shape)
    net = make_net(args, args.param, args.bin, args.precision == "f16")

    def run_once():
        ex = net.create_extractor()
        ex.input(args.in_blob, ncnn.Mat(x[0]).clone())
        ret, out = ex.extract(args.out_blob)
        if ret != 0:
            raise SystemExit(f"ncnn extract failed: {ret}")
        return np.array(out).ravel().copy()

    if args.worker == "check":
        import onnxruntime as ort

        got = run_once()
        sess = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
        want = sess.run(None, {sess.get_inputs()[0].name: x})[0].ravel()
        print(json.dumps({
            "max_diff": float(np.abs(got - want).max()),
            "scale": float(np.abs(want).max()),
            "top1": [int(got.argmax()), int(want.argmax())],
        }))
        return
    for _ in range(args.warmup):
        run_once()
    runs = []
    start = time.perf_counter()
    while len(runs) < args.min_runs or time.perf_counter() - start < args.min_seconds:
        t0 = time.perf_counter_ns()
        run_once()
        runs.append(time.perf_counter_ns() - t0)
    dev = ncnn.get_gpu_info(args.ncnn_gpu).device_name() if hasattr(ncnn, "get_gpu_info") else "?"
    print(json.dumps({"runs_ns": runs, "device": dev, "version": getattr(ncnn, "__version__", "?")}))


def p50_ms(runs_ns):
    s = sorted(runs_ns)
    n = len(s)
    mid = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return mid / 1e6


def run_worker(args, kind, model, precision, files, shape):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--precision", precision,
           "--param", files["param"], "--bin", files["bin"], "--onnx", files["onnx"],
           "--in-blob", files["in"], "--out-blob", files["out"], "--shape", ",".join(map(str, shape)),
           "--threads", str(args.threads), "--ncnn-gpu", str(args.ncnn_gpu),
           "--warmup", str(args.warmup), "--min-runs", str(args.min_runs),
           "--min-seconds", str(args.min_seconds)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"ncnn {kind} on {model} {precision} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider")


def ort_gpu():
    """onnxruntime's GPU execution provider here, or None, and every provider it has."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, []
    have = ort.get_available_providers()
    return next((p for p in GPU_PROVIDERS if p in have), None), have


def time_ort_gpu(args, provider, onnx_path, shape):
    """p50 ms and run count of onnxruntime on `provider` (F32: the exported network as is)."""
    import onnxruntime as ort

    x = bench_input(shape)
    sess = ort.InferenceSession(onnx_path, providers=[provider])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(args.warmup):
        sess.run(None, feed)
    runs = []
    start = time.perf_counter()
    while len(runs) < args.min_runs or time.perf_counter() - start < args.min_seconds:
        t0 = time.perf_counter_ns()
        sess.run(None, feed)
        runs.append(time.perf_counter_ns() - t0)
    return p50_ms(runs), len(runs)


def run_ours(args, model, precision):
    out = subprocess.check_output([
        AGENT, "bench", "--model", model, "--mechanism", "gpu", "--precision", precision,
        "--iterations", str(args.min_runs), "--warmup", str(args.warmup), "--json"])
    rep = json.loads(out)
    return rep["latency"]["p50_ms"], len(rep["runs_ns"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenet-v1,efficientnet-lite0")
    ap.add_argument("--precisions", default="f32,f16")
    ap.add_argument("--threads", type=int, default=2, help="ncnn CPU threads (its CPU-side work)")
    ap.add_argument("--ncnn-gpu", type=int, default=0, help="ncnn's Vulkan device index")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--min-runs", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=0.0)
    ap.add_argument("--markdown", help="also write the table to this file")
    # Worker-only arguments.
    ap.add_argument("--worker", choices=["check", "time"])
    ap.add_argument("--precision", default="f32")
    for a in ("--param", "--bin", "--onnx", "--in-blob", "--out-blob", "--shape"):
        ap.add_argument(a)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    import onnx_to_ncnn

    if not os.path.exists(AGENT):
        raise SystemExit(f"no agent at {AGENT}: cargo build --release -p ulayer")
    devices = json.loads(subprocess.check_output([AGENT, "devices", "--json"]))
    tmp = tempfile.mkdtemp(prefix="bench_gpu_")
    rows = []
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs; "
          f"Vulkan devices: {[d.get('name') for d in devices]}", flush=True)
    provider, have = ort_gpu()
    print(f"onnxruntime's GPU path: {provider or 'none here'} (providers: {have})", flush=True)
    ort_rows = []
    for model in args.models.split(","):
        files = {"onnx": os.path.join(tmp, f"{model}.onnx"),
                 "param": os.path.join(tmp, f"{model}.param"),
                 "bin": os.path.join(tmp, f"{model}.bin")}
        subprocess.check_call([AGENT, "export", "--model", model, "--out", files["onnx"]])
        files["in"], files["out"] = onnx_to_ncnn.convert(files["onnx"], files["param"], files["bin"])
        import onnx

        dims = onnx.load(files["onnx"]).graph.input[0].type.tensor_type.shape.dim
        shape = [d.dim_value for d in dims]
        for precision in args.precisions.split(","):
            chk = run_worker(args, "check", model, precision, files, shape)
            bound = (1e-4 * chk["scale"] + 1e-5) if precision == "f32" else 3e-2 * chk["scale"]
            ok = chk["max_diff"] <= bound and (precision == "f32" or chk["top1"][0] == chk["top1"][1])
            print(f"{model} {precision}: ncnn vs onnxruntime max |diff| {chk['max_diff']:.3e} "
                  f"(bound {bound:.3e}), top-1 {chk['top1'][0]} vs {chk['top1'][1]}: "
                  f"{'match' if ok else 'MISMATCH'}", flush=True)
            if not ok:
                raise SystemExit(f"ncnn's output does not match on {model} {precision}: not timing")
            ours, our_runs = run_ours(args, model, precision)
            print(f"{model} {precision}: ours p50 {ours:.2f} ms ({our_runs} runs)", flush=True)
            peer = run_worker(args, "time", model, precision, files, shape)
            theirs = p50_ms(peer["runs_ns"])
            print(f"{model} {precision}: ncnn {peer['version']} on {peer['device']} p50 {theirs:.2f} ms "
                  f"({len(peer['runs_ns'])} runs); ours / ncnn {ours / theirs:.2f}x", flush=True)
            rows.append((model, precision, ours, our_runs, theirs, len(peer["runs_ns"]),
                         peer["device"], peer["version"], chk["max_diff"]))
            if provider and precision == "f32":
                o, n = time_ort_gpu(args, provider, files["onnx"], shape)
                print(f"{model} f32: onnxruntime {provider} p50 {o:.2f} ms ({n} runs); "
                      f"ours / onnxruntime {ours / o:.2f}x", flush=True)
                ort_rows.append((model, ours, o, n))
    lines = ["| model | precision | ours p50 ms (runs) | ncnn Vulkan p50 ms (runs) | ours / ncnn | ncnn vs onnxruntime max diff |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for m, p, o, on, t, tn, dev, ver, d in rows:
        lines.append(f"| {m} | {p} | {o:.2f} ({on}) | {t:.2f} ({tn}) | {o / t:.2f}× | {d:.1e} |")
    table = "\n".join(lines)
    print()
    print(f"device: {rows[0][6] if rows else '?'}, ncnn {rows[0][7] if rows else '?'}")
    print(table)
    for m, o, t, n in ort_rows:
        print(f"{m} f32: ours {o:.2f} ms, onnxruntime {provider} {t:.2f} ms ({n} runs): {o / t:.2f}x")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
