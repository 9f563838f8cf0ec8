#!/bin/bash
# The 8-bit 3x3 layers at the GPU host's 16 threads, three q8_layer_bench builds interleaved
# (tools/ab_layers.py): .vkbin/qlb_old (per-task packing), .vkbin/qlb_mid (columns packed once
# when m is cut, planned as per-task), .vkbin/qlb_new (planned as packed once). Whole layers
# and a quarter of their channels (a cooperative CPU slice). About a minute.
#
# Here, first: build `cargo build --release -p ulayer --example q8_layer_bench` at each commit
# and copy the binaries to those names; then run `bash tools/gpu_host_layers.sh` with carry
# [".vkbin"].
set -u
T=${THREADS:-16}
nproc; lscpu | grep 'Model name'
for f in 1 0.25; do
    echo "== fraction $f, $T threads: old -> mid"
    timeout 100 python3 tools/ab_layers.py .vkbin/qlb_old,.vkbin/qlb_mid 5 "$T" conv3x3 30 "$f"
    echo "== fraction $f, $T threads: mid -> new"
    timeout 100 python3 tools/ab_layers.py .vkbin/qlb_mid,.vkbin/qlb_new 5 "$T" conv3x3 30 "$f"
done
