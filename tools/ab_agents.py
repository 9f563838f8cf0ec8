#!/usr/bin/env python3
"""A/B of two (or more) ulayer-agent builds on one model: the builds run interleaved, trial
by trial, each trial one process of 200 timed inferences after 20 warm-up ones; prints, per
build, the median over trials of the per-trial p10 and p50 (ms) and their minimum.

Keep the old build before rebuilding (cp target/release/ulayer-agent /tmp/agent_old), then
Usage: tools/ab_agents.py OLD,NEW MODEL PRECISION THREADS TRIALS [BENCH ARGS...]
e.g.   tools/ab_agents.py /tmp/agent_old,target/release/ulayer-agent mobilenet-v1 quint8 2 10
       tools/ab_agents.py OLD,NEW mobilenet-v1 quint8 16 3 --mechanism ulayer --no-fallback
(further arguments go to every `ulayer-agent bench`; THREADS 0 leaves --threads out, for the
cooperative mechanisms, which use every core)
"""
import json
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 6:
        raise SystemExit(__doc__)
    extra = sys.argv[6:]
    bins = sys.argv[1].split(",")
    model, prec, threads, trials = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    res = {b: [] for b in bins}
    for _ in range(trials):
        for b in bins:
            cmd = [b, "bench", "--model", model, "--precision", prec, "--iterations", "200", "--warmup", "20",
                   "--json"] + (["--threads", threads] if threads != "0" else []) + extra
            out = subprocess.check_output(cmd, stderr=subprocess.DEVNULL)
            r = sorted(x / 1e6 for x in json.loads(out)["runs_ns"])
            res[b].append((r[len(r) // 10], r[len(r) // 2]))
    for b in bins:
        p10 = [a for a, _ in res[b]]
        p50 = [c for _, c in res[b]]
        print(f"{model} {prec} t{threads} {b}: p10 med {statistics.median(p10):.3f} min {min(p10):.3f} | "
              f"p50 med {statistics.median(p50):.3f} min {min(p50):.3f}")


if __name__ == "__main__":
    main()
