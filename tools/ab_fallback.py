#!/usr/bin/env python3
"""Does running a plan cost anything beyond its layers? Interleaved trials of `bench` with the
`cpu` mechanism, `ulayer --no-fallback` (the plan as planned) and `ulayer` (the measured
fallback), each trial one process per mechanism; prints per network each one's median p50
and the paired medians plan ÷ cpu and fallback ÷ cpu (the fallback target: at most 1.02).

Where the plan puts every layer on the CPU (`ulayer-agent plan ... --explain`), the three run
the same CPU work, so the ratios are the cooperative executor's and the fallback's own costs.

Usage: tools/ab_fallback.py [--agent A] [--precision quint8] [--threads 0] TRIALS MODEL...
The agent plans from $ULAYER_PROFILE or this device's cached profile.
"""
import argparse
import json
import statistics
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="target/release/ulayer-agent")
    ap.add_argument("--precision", default="quint8")
    ap.add_argument("--threads", default="0")
    ap.add_argument("--iterations", default="100")
    ap.add_argument("trials", type=int)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    runs = [("cpu", ["--mechanism", "cpu"]),
            ("plan", ["--mechanism", "ulayer", "--no-fallback"]),
            ("fallback", ["--mechanism", "ulayer"])]
    for model in args.models:
        res = {name: [] for name, _ in runs}
        for t in range(args.trials):
            for name, extra in runs:
                cmd = [args.agent, "bench", "--model", model, "--precision", args.precision,
                       "--iterations", args.iterations, "--warmup", "10", "--threads", args.threads,
                       "--json"] + extra
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-1500:]}")
                d = json.loads(out.stdout)
                res[name].append(d["latency"]["p50_ms"])
                if name == "fallback" and t == 0:
                    print(f"{model}: the fallback ran {d.get('executed')}", flush=True)
        for name in res:
            print(f"  {name:9s} median p50 {statistics.median(res[name]):.3f} ms  "
                  + " ".join(f"{x:.3f}" for x in res[name]))
        for name in ("plan", "fallback"):
            r = [a / b for a, b in zip(res[name], res["cpu"])]
            print(f"  {name} / cpu paired median {statistics.median(r):.3f} (range {min(r):.3f}–{max(r):.3f})",
                  flush=True)


if __name__ == "__main__":
    main()
