#!/usr/bin/env bash
# Every GPU check and benchmark in one call, for the lent device (see shared/docs/gpu-device.md): the device image
# has torch/transformers/peft but no dspy, so dspy and its pure-Python needs travel as wheels in .whl/.
#   run: bash bench/gpu.sh            (carry .whl)      locally, to check the script: bash bench/gpu.sh --smoke
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
PY=${PY:-python3}
OUT=${OUT:-artifacts/gpu}; mkdir -p "$OUT"
if [ "${1:-}" = "--smoke" ]; then
  $PY bench/engine.py --gpu --smoke | tee "$OUT/engine_smoke.jsonl"
  $PY bench/finetune.py --gpu --smoke | tee "$OUT/finetune_smoke.jsonl"
  $PY bench/multi_lora.py --gpu --smoke | tee "$OUT/multi_lora_smoke.jsonl"
  exit
fi
nvidia-smi -L | tee "$OUT/device.txt"
timeout 180 $PY -m pytest -q -m gpu tests/lm/test_gpu.py -p no:cacheprovider 2>&1 | tail -20 | tee "$OUT/pytest_gpu.txt"
timeout 400 $PY bench/engine.py --gpu 2>&1 | tee "$OUT/engine_gpu.jsonl"
timeout 120 $PY -m pytest -q -m gpu tests/tune/test_serving.py -p no:cacheprovider 2>&1 | tail -20 | tee "$OUT/pytest_tune_gpu.txt"
timeout 300 $PY bench/finetune.py --gpu 2>&1 | tee "$OUT/finetune_gpu.jsonl"
timeout 200 $PY bench/multi_lora.py --gpu 2>&1 | tee "$OUT/multi_lora_gpu.jsonl"
