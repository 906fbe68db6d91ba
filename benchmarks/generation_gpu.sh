#!/usr/bin/env bash
# The GPU run of benchmarks/generation.py: a random checkpoint shaped like Qwen2-VL-2B in bfloat16.
#
#   benchmarks/generation_gpu.sh prepare     here, in the repository root, once: fetches into .whl/
#                                            (git-ignored) what the GPU machine lacks: transformers
#                                            5.24 and regex for its Python 3.12, pydicom, onnx (with
#                                            ml_dtypes and protobuf, for benchmarks/gpu_check.sh's
#                                            ONNX part), and the NEMA chest CR the benchmark reads
#   benchmarks/generation_gpu.sh run [ARGS]  on the GPU machine, in the repository root, with .whl
#                                            carried: installs those into /tmp/site and runs the
#                                            benchmark; ARGS go to benchmarks/generation.py
#
# The run builds the 2.2 B-parameter checkpoint (4.4 GB in /tmp), loads it through the same path
# as a real checkpoint, and times 1, 4 and 8 sentences twice each: about 4 to 6 minutes on an H100.
set -euo pipefail

case "${1:-}" in
prepare)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl transformers==5.24.0 pydicom==3.0.2 regex==2026.11.19 \
        onnx==1.23.2 ml_dtypes==0.5.4 protobuf==6.33.6
    python=.venv/bin/python
    [ -x "$python" ] || python=python3
    cp "$("$python" -c 'from pydicom.data import get_testdata_file; print(get_testdata_file("RG1_UNCR.dcm"))')" \
        .whl/RG1_UNCR.dcm
    du -sh .whl
    ;;
run)
    shift
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
    python3 -m benchmarks.generation --shape qwen2-vl-2b --device cuda --dtype bfloat16 \
        --image .whl/RG1_UNCR.dcm --repeats 2 "$@"
    ;;
*)
    echo "usage: $0 prepare | run [benchmark arguments]" >&2
    exit 2
    ;;
esac
