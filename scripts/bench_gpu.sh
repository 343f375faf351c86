#!/usr/bin/env bash
# B0 training (and inference) at 224² on one NVIDIA GPU: effnet on burn's cuda and wgpu
# backends next to timm in PyTorch (f32, and AMP bf16/fp16 with channels-last), with the
# protocol of `effnet bench` / `scripts/bench_peers.py`. One prepared run for a borrowed GPU:
# every measurement has its own time limit, so one failure does not cost the others.
#
#   scripts/bench_gpu.sh EFFNET OUTDIR [BATCH]
#
# EFFNET: an effnet built with `--features wgpu` (and `cuda` where it builds; on a machine
# without nvcc set CUDARC_CUDA_VERSION, e.g. 13000).
# Needs python3 with torch and timm. Writes OUTDIR/results.jsonl (one JSON object per run, with
# `peak_gpu_smi_mb` added) and OUTDIR/log.txt.
#
# Peak device memory is nvidia-smi's memory.used, sampled every 100 ms, minus its value before
# the run: the same yardstick for every implementation (it includes the CUDA context). PyTorch's
# own view (max_memory_reserved/allocated) is in its JSON too.
set -uo pipefail
EFFNET=$(readlink -f "$1")
OUT=$2
BATCH=${3:-128}
WARMUP=${WARMUP:-5}
RUNS=${RUNS:-20}
LIMIT=${LIMIT:-150}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
exec > >(tee -a "$OUT/log.txt") 2>&1

# cubecl compiles its CUDA kernels at run time with NVRTC and the toolkit's headers.
if [ -z "${CUDA_PATH:-}" ] && [ ! -d /usr/local/cuda ] && command -v nvcc >/dev/null; then
    CUDA_PATH=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
    export CUDA_PATH
fi
for lib in $(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' -o -name 'libcuda.so*' 2>/dev/null); do
    LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}"
done
export LD_LIBRARY_PATH
echo "CUDA_PATH=${CUDA_PATH:-/usr/local/cuda} LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__, "cudnn", torch.backends.cudnn.version())'
ldconfig -p | grep -q libvulkan || echo "no libvulkan in ldconfig (wgpu needs the Vulkan loader)"
# NVIDIA's Vulkan driver where a container mounts the driver under /usr/local/nvidia.
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -e "$icd" ]; then
    export VK_DRIVER_FILES=$icd
    echo "VK_DRIVER_FILES=$icd"
fi

used_mb() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }

# bench NAME CMD...: runs CMD under the limit while sampling device memory; appends its JSON.
bench() {
    local name=$1
    shift
    local base
    base=$(used_mb)
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/mem_$name.txt" 2>/dev/null &
    local smi=$!
    local t0=$SECONDS
    timeout "$LIMIT" "$@" >"$OUT/out_$name.json" 2>"$OUT/err_$name.txt"
    local rc=$?
    kill "$smi" 2>/dev/null
    wait "$smi" 2>/dev/null
    local peak
    peak=$(sort -n "$OUT/mem_$name.txt" | tail -1)
    echo "== $name: rc $rc, $((SECONDS - t0)) s, device memory ${base} MB before, peak ${peak:-?} MB"
    if [ "$rc" -eq 0 ]; then
        python3 - "$OUT/out_$name.json" "$name" "$base" "${peak:-0}" >>"$RESULTS" <<'EOF'
import json, sys
path, name, base, peak = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
r = json.loads(open(path).read().strip().splitlines()[-1])
r["run"] = name
r["peak_gpu_smi_mb"] = peak - base
print(json.dumps(r))
print(f"   {r['images_per_sec']:.1f} images/s, median step {r['median_step_s']*1000:.1f} ms, "
      f"device memory +{peak - base:.0f} MB", file=sys.stderr)
EOF
    else
        tail -n 15 "$OUT/err_$name.txt"
    fi
}

PEER="python3 scripts/bench_peers.py --device cuda --model efficientnet_b0 --resolution 224 --warmup $WARMUP --runs $RUNS"
EFF="$EFFNET bench --variant b0 --resolution 224 --json --warmup $WARMUP --runs $RUNS"
T="--mode train --batch $BATCH"
E="--mode eval --batch $((BATCH * 2))"

# Most wanted first: a run cut short by the caller's own limit keeps what it finished. A
# backend the binary was built without fails at once with the reason (see README: the `cuda`
# feature needs to download LLVM while building). ROWS="name ..." runs only those rows.
# effnet's bf16/f16 training rows are mixed precision (f32 master weights, bf16/f16
# convolutions; f16 with dynamic loss scaling), like PyTorch's AMP rows.
row() {
    local name=$1
    shift
    if [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $name "* ]]; then
        bench "$name" "$@"
    fi
}
row torch_train_amp_bf16_cl $PEER $T --amp bf16 --channels-last
row effnet_train_wgpu $EFF $T --backend wgpu
row torch_train_f32 $PEER $T
row effnet_train_wgpu_f16 $EFF $T --backend wgpu --precision f16
# burn's wgpu backend has no bf16 (refused): row effnet_train_wgpu_bf16 $EFF $T --backend wgpu --precision bf16
row torch_train_amp_fp16_cl $PEER $T --amp fp16 --channels-last
row effnet_train_cuda $EFF $T --backend cuda
row effnet_eval_wgpu $EFF $E --backend wgpu
row torch_eval_amp_bf16_cl $PEER $E --amp bf16 --channels-last
row torch_eval_f32 $PEER $E
row effnet_eval_wgpu_f16 $EFF $E --backend wgpu --precision f16
row effnet_eval_cuda $EFF $E --backend cuda
echo "done: $(wc -l <"$RESULTS") results in $RESULTS"
