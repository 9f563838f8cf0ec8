#!/usr/bin/env python3
"""A/B of two `q8_layer_bench` builds, layer by layer: the builds run interleaved, TRIALS
times each; prints per layer the median over trials of each build's 8-bit time (the
example's best of RUNS) and the ratio new / old.

Keep the old build before rebuilding (cp target/release/examples/q8_layer_bench /tmp/qlb_old).
Usage: tools/ab_layers.py OLD,NEW TRIALS THREADS [FILTER] [RUNS] [FRACTION]
e.g.   tools/ab_layers.py /tmp/qlb_old,target/release/examples/q8_layer_bench 3 2 conv3x3 30 0.25
"""
import re
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    old, new = sys.argv[1].split(",")
    trials = int(sys.argv[2])
    args = sys.argv[3:]
    times = {}
    for _ in range(trials):
        for name, binary in (("old", old), ("new", new)):
            out = subprocess.check_output([binary] + args, text=True)
            for line in out.splitlines():
                # "layer name   f32 ms   q8 ms   ..." (names hold single spaces)
                m = re.match(r"^(.*?)\s{2,}([\d.]+)\s+([\d.]+)", line)
                if m:
                    times.setdefault(m.group(1).strip(), {}).setdefault(name, []).append(float(m.group(3)))
    print(f"{'layer':28s} {'old ms':>8s} {'new ms':>8s} {'new/old':>8s}")
    for layer, t in times.items():
        o, n = statistics.median(t["old"]), statistics.median(t["new"])
        print(f"{layer:28s} {o:8.3f} {n:8.3f} {n / o:8.2f}")


if __name__ == "__main__":
    main()
