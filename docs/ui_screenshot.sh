#!/usr/bin/env bash
# Screenshot of the MLflow UI on this project's store (docs/mlflow_ui.png), as `make ui` serves
# it: the experiment's runs, sweeps as parent runs with their trials nested. Run it after a sweep:
#   make sweep && bash docs/ui_screenshot.sh
# Installs Debian's chromium when missing (root), starts the UI on a free port, lets the page's
# JavaScript load the runs (virtual time), writes the PNG and stops the UI.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/mlflow_ui.png}
STORE=${MLFLOW_TRACKING_URI:-sqlite:///mlruns/mlflow.db}
if ! command -v chromium >/dev/null; then
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
PORT=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
LINK=$(MLFLOW_TRACKING_URI="$STORE" .venv/bin/python -c "
from src.train.tracking import ui_link
print(ui_link('http://127.0.0.1:$PORT'))")
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow ui --host 127.0.0.1 --port "$PORT" \
  --backend-store-uri "$STORE" --workers 1 >/dev/null 2>&1 &
UI=$!
trap 'kill $UI 2>/dev/null || true' EXIT
for _ in $(seq 90); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 1; done
# The flags keep headless Chromium off the network it cannot reach here (see the env notes).
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$(mktemp -d)" --window-size=1600,1000 --virtual-time-budget=20000 \
  --screenshot="$OUT" "$LINK" 2>/dev/null
echo "wrote $OUT"
