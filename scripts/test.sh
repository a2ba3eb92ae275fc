#!/usr/bin/env bash
# Set up (if needed, with the test extras: scripts/setup.sh test) and run the test suite. Extra arguments go
# to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
