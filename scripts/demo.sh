#!/usr/bin/env bash
# One command, fresh machine to features: install what it runs (scripts/setup.sh: no test extras), start a
# local Prefect server (SQLite state in .prefect/), serve the deployments, run each deployment given
# (`prefect deployment run D --watch`, in order, against the one server) on the embedded MicroLens sample
# while this terminal shows the run's own log lines (items done and items/s every few seconds, one line
# per feature set), print what they made, and stop everything started: the deployment runner first,
# then the server.
# Usage: bash scripts/demo.sh [deployment ...]   (default: extract-features/microlens)
#   bash scripts/demo.sh extract-features/microlens train-recommender/microlens   # features, then FREEDOM on them
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then DEPLOYMENTS=("$@"); else DEPLOYMENTS=(extract-features/microlens); fi
bash scripts/setup.sh
. .venv/bin/activate

export PREFECT_HOME="$PWD/.prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export MMFEAT_STORE="${MMFEAT_STORE:-$PWD/store}" MMFEAT_RUNS="${MMFEAT_RUNS:-$PWD/runs}"
mkdir -p "$PREFECT_HOME" "$MMFEAT_RUNS"
PORT=${MMFEAT_PREFECT_PORT:-$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"

SERVER_PID="" RUNNER_PID="" FOLLOW_PID=""
# stop_process PID NAME SIGNAL: send SIGNAL, wait up to 10 s, then SIGKILL (said so: nothing is
# stopped by force silently).
stop_process() {
  local pid=$1 name=$2 sig=$3
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "[mmfeat] the $name did not stop within 10 s of SIG$sig; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
# The runner goes first: it talks to the server while it shuts down (stopping both at once left it
# retrying for about a minute to pause its deployments, with httpx.ConnectError in its log). SIGTERM,
# not SIGINT: a background job of a script starts with SIGINT ignored. The runner stops in about
# 0.2 s and does not pause the deployments (see pipelines/flows/deployments.py); the server in about 1 s.
cleanup() {
  stop_process "$FOLLOW_PID" "run log follower" TERM
  stop_process "$RUNNER_PID" "deployment runner" TERM
  stop_process "$SERVER_PID" "Prefect server" TERM
  echo "[mmfeat] stopped the deployment runner and the Prefect server" >&2
}
trap cleanup EXIT

echo "[mmfeat] starting Prefect server on $PREFECT_API_URL (logs: .prefect/server.log)" >&2
prefect server start --host 127.0.0.1 --port "$PORT" > "$PREFECT_HOME/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 180); do
  curl -sf "$PREFECT_API_URL/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$PREFECT_HOME/server.log"; echo "Prefect server died" >&2; exit 1; }
  sleep 1
done
curl -sf "$PREFECT_API_URL/health" >/dev/null || { echo "Prefect server did not come up in 180 s" >&2; exit 1; }

echo "[mmfeat] serving deployments (logs: .prefect/serve.log)" >&2
python -m mmfeat.pipelines.flows.deployments > "$PREFECT_HOME/serve.log" 2>&1 &
RUNNER_PID=$!
# the runner prints "serving N deployments: a, b, ..." once every deployment is registered
for _ in $(seq 1 120); do
  grep -q '^serving ' "$PREFECT_HOME/serve.log" && break
  kill -0 "$RUNNER_PID" 2>/dev/null || { tail -30 "$PREFECT_HOME/serve.log"; echo "deployment runner died" >&2; exit 1; }
  sleep 1
done
served=$(grep -m1 '^serving ' "$PREFECT_HOME/serve.log" || true)
[ -n "$served" ] || { tail -30 "$PREFECT_HOME/serve.log"; echo "deployments not registered in 120 s" >&2; exit 1; }
for dep in "${DEPLOYMENTS[@]}"; do
  case "$served, " in *" $dep, "* | *" $dep "*) ;; *) echo "no deployment $dep; $served" >&2; exit 2 ;; esac
done

started=$(mktemp)  # run records newer than this are the ones the train deployments wrote
for dep in "${DEPLOYMENTS[@]}"; do
  echo "[mmfeat] prefect deployment run $dep --watch (the run's log lines, from .prefect/serve.log, indented)" >&2
  # --watch prints state changes only; the run logs to the runner's output: follow it from its end
  # (mmfeat.pipelines.flows.runlog prints flow-run lines only), and stop following once the run is over.
  python -m mmfeat.pipelines.flows.runlog "$PREFECT_HOME/serve.log" "$(stat -c %s "$PREFECT_HOME/serve.log")" &
  FOLLOW_PID=$!
  status=0
  prefect deployment run "$dep" --watch || status=$?
  stop_process "$FOLLOW_PID" "run log follower" TERM  # it reads the run's last lines, then exits
  FOLLOW_PID=""
  if [ "$status" -ne 0 ]; then
    echo "[mmfeat] flow run of $dep failed; runner log tail:" >&2
    tail -40 "$PREFECT_HOME/serve.log" >&2
    exit "$status"
  fi
done

# What the runs made: store versions per extracted manifest, the run table of the trained ones.
summarized=" "
for dep in "${DEPLOYMENTS[@]}"; do
  manifest=${dep#*/}
  case "$dep" in
    extract-features/*)
      case "$summarized" in *" $manifest "*) continue ;; esac
      summarized="$summarized$manifest "
      echo
      echo "=== feature store: $MMFEAT_STORE ($manifest) ==="
      mmfeat store summary "$manifest" ;;
  esac
done
mapfile -t new_runs < <(find "$MMFEAT_RUNS" -mindepth 2 -maxdepth 2 -name record.json -newer "$started" | sort)
rm -f "$started"
if [ "${#new_runs[@]}" -gt 0 ]; then
  echo
  echo "=== training runs: $MMFEAT_RUNS (curve.png next to each record.json) ==="
  mmfeat compare "${new_runs[@]}"
fi
echo "[mmfeat] done; stopping the deployment runner, then the Prefect server" >&2
