#!/usr/bin/env bash
# The checks a session with a lent NVIDIA GPU should run first, in one go (device time is short):
# `effnet train --backend wgpu` end to end on the digits data (the quickstart recipe, 3 epochs) in
# f32 and in f16 mixed precision, `eval` on wgpu, then scripts/bench_gpu.sh's rows.
#
#   scripts/gpu_check.sh EFFNET OUTDIR
#
# EFFNET: an effnet built with `--features wgpu` (a dev build from `scripts/test.sh` will do:
# ~/.cache/effnet-target/debug/effnet; strip it and xz it to carry it). Where the machine has no
# Vulkan loader, unpack Debian's libvulkan1 first; NVIDIA's ICD may need VK_DRIVER_FILES (below).
set -uo pipefail
E=$(readlink -f "$1")
OUT=$2
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -z "${VK_DRIVER_FILES:-}" ] && [ -e "$icd" ] && export VK_DRIVER_FILES=$icd
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
for p in f32 f16; do  # bf16: refused on wgpu (no bf16 in cubecl-wgpu)
    sed -e 's/^epochs = 15/epochs = 3/' -e 's|^path = "../datasets/digits"|path = "'"$PWD"'/datasets/digits"|' \
        -e "s|^run_dir = .*|run_dir = \"$OUT/run-$p\"\nprecision = \"$p\"|" configs/quickstart.toml >"$OUT/q-$p.toml"
    t0=$(date +%s)
    timeout "${LIMIT:-120}" "$E" train --config "$OUT/q-$p.toml" --backend wgpu >"$OUT/train-$p.log" 2>&1
    echo "== train $p on wgpu: rc $?, $(($(date +%s) - t0)) s"
    tail -n 3 "$OUT/train-$p.log" | cut -c1-300
    cat "$OUT/run-$p/metrics.csv" 2>/dev/null
done
timeout 60 "$E" eval --config "$OUT/q-f32.toml" --checkpoint "$OUT/run-f32" --backend wgpu 2>&1 | tail -n 3
ROWS="${ROWS:-effnet_train_wgpu torch_train_f32 torch_train_amp_bf16_cl effnet_train_wgpu_f16 effnet_eval_wgpu torch_eval_f32}" \
    WARMUP=${WARMUP:-3} RUNS=${RUNS:-10} LIMIT=${LIMIT:-60} scripts/bench_gpu.sh "$E" "$OUT/bench" "${BATCH:-64}"
