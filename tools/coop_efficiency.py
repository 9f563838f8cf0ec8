#!/usr/bin/env python3
"""Cooperative efficiency of μLayer, per network and per layer, in one run.

For every model and precision, runs `ulayer-agent bench` for: cpu, gpu, layer-to-processor,
ulayer and ulayer+branch as planned (--no-fallback), and ulayer and ulayer+branch with the
measured fallback (what a campaign runs). Prints, per network:

  * latency of every mechanism normalised to layer-to-processor (the paper's Figure 16 form);
  * ulayer (fallback) against the best single processor (target: never more than 2% slower);
  * cooperative efficiency of the plans: measured speedup over the best single processor
    divided by the ideal one, i.e. T_ideal / T_plan with 1/T_ideal = 1/T_cpu + 1/T_gpu;

and per layer, for layers whose CPU and GPU times are within 2× of each other (where
cooperation can pay), the same efficiency: the ideal from the two processors' times over the
plan's measured per-layer median.

The per-layer CPU and GPU times are the device profile's whole-layer wall times (what a split
waits for: the GPU's submission, transfers and fence wait included; what the planner sees),
at the processors' precisions. Without a profile they fall back to the `cpu` and `gpu`
benches' per-layer medians, where a GPU layer's time is its GPU-timestamp interval plus its
staging copies: on the 2026-12-08 H100 host that made googlenet/conv2/3x3 0.26 ms on the GPU
against 1.08 ms of wall time, and counted 114 layers "within 2×" where the wall times put
none. Usage:

  python3 tools/coop_efficiency.py --agent target/release/ulayer-agent \
      --models mobilenet-v1,squeezenet1.1 --precisions f32,quint8 [--json out.json]

The agent plans from this device's profile ($ULAYER_PROFILE or its cache; see
`ulayer-agent profile`).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

PLANS = ["ulayer", "ulayer+branch"]


def bench(agent, model, mechanism, precision, args, fallback=True):
    cmd = [
        agent, "bench", "--model", model, "--mechanism", mechanism, "--precision", precision,
        "--iterations", str(args.iterations), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--json",
    ]
    if not fallback:
        cmd.append("--no-fallback")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def layer_ms(report):
    return {l["node"]: l["p50_ms"] + l.get("transfer_p50_ms", 0.0) for l in report["layers"]}


def profile_layers(path, precision):
    """Whole-layer wall times (ms) by node of each model, per processor, from a device profile
    at `precision` (the CPU's and the GPU's: F16 on the GPU for processor-friendly runs is not
    told apart here)."""
    with open(path) as f:
        prof = json.load(f)
    out = {}
    for m in prof["measurements"]:
        layer = m["layer"]
        if m["precision"] != precision or m["c"] != layer["c"] or m["h"] != layer["h"]:
            continue
        model, _, node = m["source"].partition("/")
        out.setdefault(model, {}).setdefault(m["processor"], {})[node] = m["ns"] / 1e6
    return out


def ideal(tc, tg):
    return 1.0 / (1.0 / tc + 1.0 / tg) if tc > 0 and tg > 0 else min(tc, tg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="target/release/ulayer-agent")
    ap.add_argument("--models", default="mobilenet-v1,squeezenet1.1,googlenet,efficientnet-lite0")
    ap.add_argument("--precisions", default="f32,quint8")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--profile", default=os.environ.get("ULAYER_PROFILE"),
                    help="the device profile whose whole-layer wall times judge the layers "
                         "(default: $ULAYER_PROFILE; without one, the benches' per-layer medians)")
    args = ap.parse_args()
    if args.profile:
        print(f"per-layer CPU and GPU times: whole-layer wall times of {args.profile}", file=sys.stderr)
    else:
        print("per-layer CPU and GPU times: the benches' per-layer medians (no profile named; "
              "GPU times exclude submission and fence waits)", file=sys.stderr)

    rows, layer_rows = [], []
    for model in args.models.split(","):
        for prec in args.precisions.split(","):
            r = {}
            print(f"[{model} {prec}] 7 benches ...", file=sys.stderr, flush=True)
            for mech in ["cpu", "gpu", "layer-to-processor"]:
                r[mech] = bench(args.agent, model, mech, prec, args)
            for mech in PLANS:
                r[mech + " (plan)"] = bench(args.agent, model, mech, prec, args, fallback=False)
                r[mech] = bench(args.agent, model, mech, prec, args, fallback=True)
            p50 = {k: v["latency"]["p50_ms"] for k, v in r.items()}
            tc, tg = p50["cpu"], p50["gpu"]
            best = min(tc, tg)
            row = {
                "model": model, "precision": prec, "p50_ms": p50,
                "best_single_ms": best, "ideal_ms": ideal(tc, tg),
                "executed": {m: r[m].get("executed") for m in PLANS},
            }
            for m in PLANS:
                row[f"{m} vs best single"] = best / p50[m]
                row[f"{m} (plan) efficiency"] = ideal(tc, tg) / p50[m + " (plan)"]
            rows.append(row)
            if args.profile:
                walls = profile_layers(args.profile, prec).get(model, {})
                lc, lg = walls.get("cpu", {}), walls.get("gpu", {})
            else:
                lc, lg = layer_ms(r["cpu"]), layer_ms(r["gpu"])
            lu = layer_ms(r["ulayer (plan)"])
            effs = []
            for node, c in lc.items():
                g, u = lg.get(node), lu.get(node)
                if g is None or u is None or c <= 0 or g <= 0 or u <= 0:
                    continue
                if max(c, g) / min(c, g) <= 2.0:
                    e = ideal(c, g) / u
                    effs.append(e)
                    layer_rows.append({"model": model, "precision": prec, "node": node,
                                       "cpu_ms": c, "gpu_ms": g, "ulayer_ms": u, "efficiency": e,
                                       "times": "profile" if args.profile else "benches"})
            row["layers_within_2x"] = len(effs)
            row["layer_efficiency_median"] = statistics.median(effs) if effs else None
            row["layers_at_80pct"] = sum(e >= 0.8 for e in effs)
            # Progress, and nothing lost if a later network fails or the run is cut short.
            print(f"[{model} {prec}] p50 ms " + ", ".join(f"{k} {v:.2f}" for k, v in p50.items())
                  + f"; layers within 2x {len(effs)}, median efficiency "
                  + (f"{row['layer_efficiency_median']:.0%}" if effs else "-"), file=sys.stderr, flush=True)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"networks": rows, "layers": layer_rows}, f, indent=1)

    mechs = ["cpu", "gpu", "layer-to-processor", "ulayer (plan)", "ulayer+branch (plan)", "ulayer", "ulayer+branch"]
    print("p50 ms (normalised to layer-to-processor):")
    print(f"{'network':22} {'prec':7} " + " ".join(f"{m:>22}" for m in mechs))
    for row in rows:
        base = row["p50_ms"]["layer-to-processor"]
        cells = [f"{row['p50_ms'][m]:9.2f} ({base / row['p50_ms'][m]:5.2f}×)" for m in mechs]
        print(f"{row['model']:22} {row['precision']:7} " + " ".join(f"{c:>22}" for c in cells))
    print()
    print("ulayer with the measured fallback against the best single processor (≥ 0.98× is the target),")
    print("and the plans' cooperative efficiency (T_ideal / T_plan; 1/T_ideal = 1/T_cpu + 1/T_gpu):")
    print(f"{'network':22} {'prec':7} {'ulayer/best':>12} {'u+b/best':>10} {'eff ulayer':>11} {'eff u+b':>9}"
          f" {'layers ≤2×':>11} {'median eff':>11} {'≥80%':>6}  executed (ulayer)")
    for row in rows:
        med = row["layer_efficiency_median"]
        print(f"{row['model']:22} {row['precision']:7} {row['ulayer vs best single']:11.2f}× "
              f"{row['ulayer+branch vs best single']:9.2f}× {row['ulayer (plan) efficiency']:10.0%} "
              f"{row['ulayer+branch (plan) efficiency']:8.0%} {row['layers_within_2x']:11d} "
              f"{'-' if med is None else format(med, '.0%'):>11} {row['layers_at_80pct']:6d}  "
              f"{(row['executed']['ulayer'] or '').split(' (measured')[0]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"networks": rows, "layers": layer_rows}, f, indent=1)


if __name__ == "__main__":
    main()
