#!/usr/bin/env bash
# The GPU session of the torch-backend work (issues 6 and 8): every measurement, each part guarded
# and time-boxed, so one failure or overrun keeps the others' results.  Tables go to $OUT.
#
#   benchmarks/generation_gpu.sh prepare      here, once: wheels and the chest CR into .whl/ (git-ignored)
#   benchmarks/gpu_check.sh                   on the GPU machine, repository root, .whl carried;
#                                             about 4.5 min, at most 6 min 40 s (the budgets below)
#   benchmarks/gpu_check.sh --smoke           here, on the CPU: the same parts at toy sizes (a dry run)
#
# Parts (budget in seconds):
#   0 setup        40   wheels into /tmp/site, versions, nvidia-smi, which optional modules import
#   1 checkpoint   50   a random checkpoint shaped like Qwen2-VL-2B, bfloat16, built on the GPU
#   2 decode-step  75   benchmarks/decode_step.py: ms per decoding step at batch 1, 4 and 8: the earlier
#                       loop (with and without cuDNN attention), ours eager, ours with CUDA graphs;
#                       CUDA graphs against uncaptured greedy outputs; torch.profiler op tables
#   3 generation  175   benchmarks/generation.py: naive HF eager generate per prompt vs optimised torch,
#                       4 and 8 sentences (the >= 2x target), float32 equality check on the same weights
#   4 engines      60   benchmarks/engines.py: hf-generate, torch and (if it imports) tensorrt side by side,
#                       per-image latency, images/s, peak GPU memory
# (The ONNX Runtime CPU part of the first session is not repeated.)
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT="${OUT:-/tmp/gazex-gpu-check}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1

part() {  # part NAME BUDGET COMMAND...: runs COMMAND with a time limit, output to $OUT/NAME.txt
    local name=$1 budget=$2 started rc
    shift 2
    started=$(date +%s)
    timeout --kill-after=10 "$budget" "$@" > "$OUT/$name.txt" 2>&1
    rc=$?
    local verdict="ok"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && verdict="TIMED OUT after ${budget}s"
    [ "$rc" -ne 0 ] && [ "$verdict" = "ok" ] && verdict="FAILED (exit $rc)"
    echo "$name: $verdict in $(( $(date +%s) - started ))s" | tee -a "$SUMMARY"
    return 0
}

if [ "$SMOKE" -eq 1 ]; then
    PY="${PYTHON:-.venv/bin/python}"
    DEVICE=cpu; DTYPE=float32
    SHAPE_OVERRIDES='{"num_hidden_layers": 1, "vision_depth": 1, "model_vocab_size": 1024}'
    MAX_PIXELS=3136; IMAGE=""
    STEP_ARGS=(--batches 1,2 --steps 4 --repeats 1 --threads 2)
    GEN_ARGS=(--sentences 2 --tokens-per-sentence 2 --attention-tokens 4 --repeats 1 --threads 2)
    ENG_ARGS=(--sentences 2 --tokens-per-sentence 2 --attention-tokens 4 --repeats 1 --threads 2)
else
    PY=python3
    DEVICE=cuda; DTYPE=bfloat16
    SHAPE_OVERRIDES='{}'
    MAX_PIXELS=$((768 * 768)); IMAGE=.whl/RG1_UNCR.dcm
    STEP_ARGS=(--batches 1,4,8 --steps 32 --repeats 3 --image "$IMAGE")
    GEN_ARGS=(--sentences 4,8 --attention-tokens 128 --repeats 2 --check-tokens 16 --image "$IMAGE")
    ENG_ARGS=(--sentences 4 --attention-tokens 64 --repeats 1 --image "$IMAGE")
    export PYTHONPATH="/tmp/site:$PWD"
fi
CHECKPOINT=/tmp/gazex-gpu-check-2b
export SMOKE PY DEVICE DTYPE SHAPE_OVERRIDES MAX_PIXELS CHECKPOINT

setup() {
    if [ "$SMOKE" -eq 0 ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
    fi
    "$PY" - <<'PYTHON'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "transformers", "onnx", "onnxruntime", "tensorrt", "tritonclient"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as exc:  # noqa: BLE001 - a report of what imports
        print(name, "does not import:", type(exc).__name__, exc)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PYTHON
}

build_checkpoint() {
    rm -rf "$CHECKPOINT"
    "$PY" - "$CHECKPOINT" "$DEVICE" "$DTYPE" "$MAX_PIXELS" "$SHAPE_OVERRIDES" <<'PYTHON'
import dataclasses, json, sys, time
from inference.config import ImageSettings
from inference.testing import QWEN2_VL_2B_SHAPE, TinyCheckpointOptions, make_tiny_checkpoint
target, device, dtype, pixels, overrides = sys.argv[1:]
shape = dataclasses.replace(QWEN2_VL_2B_SHAPE, **json.loads(overrides))
started = time.perf_counter()
options = TinyCheckpointOptions(name="random-qwen2-vl-2b", image=ImageSettings(min_pixels=3136, max_pixels=int(pixels)))
make_tiny_checkpoint(target, shape=shape, options=options, dtype=dtype, device=device)
print(f"built {shape} in {dtype} on {device} in {time.perf_counter() - started:.0f} s")
PYTHON
}

export -f setup build_checkpoint
backends="hf-generate,torch"
tensorrt_imports() { "$PY" -c 'import tensorrt' > /dev/null 2>&1; }

part 0-setup 40 bash -c setup
part 1-checkpoint 50 bash -c build_checkpoint
part 2-decode-step 75 "$PY" -m benchmarks.decode_step --checkpoint "$CHECKPOINT" --device "$DEVICE" --dtype "$DTYPE" \
    --profile "${STEP_ARGS[@]}"
part 3-generation 175 "$PY" -m benchmarks.generation --checkpoint "$CHECKPOINT" --device "$DEVICE" --dtype "$DTYPE" \
    "${GEN_ARGS[@]}"
if tensorrt_imports; then
    backends="$backends,tensorrt"
else
    echo "tensorrt: does not import here; the TensorRT path was not run" | tee -a "$SUMMARY"
fi
part 4-engines 60 "$PY" -m benchmarks.engines --checkpoint "$CHECKPOINT" --device "$DEVICE" --dtype "$DTYPE" \
    --backends "$backends" --cache-dir /tmp/gazex-gpu-check-cache "${ENG_ARGS[@]}"
rm -rf "$CHECKPOINT" /tmp/gazex-gpu-check-cache
echo "tables: $OUT/2-decode-step.txt $OUT/3-generation.txt $OUT/4-engines.txt" | tee -a "$SUMMARY"
