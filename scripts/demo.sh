#!/usr/bin/env bash
# One command, fresh machine to features: install, start a local Prefect server (SQLite state in
# .prefect/), serve the deployments, run `prefect deployment run extract-features/microlens --watch`
# on the embedded MicroLens sample, print where the new versions are, and stop everything started.
# Usage: bash scripts/demo.sh [deployment]   (default: extract-features/microlens)
set -euo pipefail
cd "$(dirname "$0")/.."
DEPLOYMENT=${1:-extract-features/microlens}
bash scripts/setup.sh
. .venv/bin/activate

export PREFECT_HOME="$PWD/.prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export MMFEAT_STORE="${MMFEAT_STORE:-$PWD/store}"
mkdir -p "$PREFECT_HOME"
PORT=${MMFEAT_PREFECT_PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "[mmfeat] stopped the Prefect server and the deployment runner" >&2
}
trap cleanup EXIT

echo "[mmfeat] starting Prefect server on $PREFECT_API_URL (logs: .prefect/server.log)" >&2
prefect server start --host 127.0.0.1 --port "$PORT" > "$PREFECT_HOME/server.log" 2>&1 &
pids+=($!)
for i in $(seq 1 180); do
  curl -sf "$PREFECT_API_URL/health" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { tail -20 "$PREFECT_HOME/server.log"; echo "Prefect server died" >&2; exit 1; }
  sleep 1
done
curl -sf "$PREFECT_API_URL/health" >/dev/null || { echo "Prefect server did not come up in 180 s" >&2; exit 1; }

echo "[mmfeat] serving deployments (logs: .prefect/serve.log)" >&2
python -m mmfeat.pipelines.deployments > "$PREFECT_HOME/serve.log" 2>&1 &
pids+=($!)
for i in $(seq 1 120); do
  prefect deployment inspect "$DEPLOYMENT" >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { tail -30 "$PREFECT_HOME/serve.log"; echo "deployment runner died" >&2; exit 1; }
  sleep 1
done

echo "[mmfeat] prefect deployment run $DEPLOYMENT --watch" >&2
status=0
prefect deployment run "$DEPLOYMENT" --watch || status=$?
if [ "$status" -ne 0 ]; then
  echo "[mmfeat] flow run failed; runner log tail:" >&2
  tail -40 "$PREFECT_HOME/serve.log" >&2
  exit "$status"
fi
echo
echo "=== feature store: $MMFEAT_STORE ==="
manifest=${DEPLOYMENT#*/}
mmfeat store summary "$manifest"
