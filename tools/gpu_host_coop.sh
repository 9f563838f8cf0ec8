#!/bin/bash
# #7 on the GPU host, in one `device` call (about 8 minutes): two profiles of the host (their
# repeatability and the predictors are then scored here with `profile --evaluate [--repeat]`),
# then every mechanism on the zoo networks with per-layer cooperative efficiency.
#
# Here, first: cp target/release/ulayer-agent .vkbin/agent, and the loaders' .debs in .gl
# (libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2; see the device README). Then run `bash tools/gpu_host_coop.sh` with carry
# [".vkbin", ".gl", ".cache/datasets"]; the profiles and the tables come back in $OUT.
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json PYTHONUNBUFFERED=1
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
A=.vkbin/agent
nproc; nvidia-smi -L; lscpu | grep 'Model name'
# No GPU, no point spending the call: stop here (an H100 image needed libglvnd's .debs in .gl
# besides libvulkan1, as the device README lists).
$A devices 2>&1 | tail -3; $A devices >/dev/null 2>&1 || exit 1
date -u +%T; timeout 170 $A profile --out "$OUT/p1.json" --max-mmacs 400 2>&1 | tail -4
date -u +%T; timeout 170 $A profile --out "$OUT/p2.json" --max-mmacs 400 2>&1 | tail -4
export ULAYER_PROFILE=$OUT/p1.json
date -u +%T
timeout 200 python3 tools/coop_efficiency.py --agent $A --precisions quint8 --iterations 20 \
    --warmup 3 --json "$OUT/coop_q8.json" 2>&1 | tee "$OUT/coop_q8.txt" | tail -80
date -u +%T
