#!/usr/bin/env bash
# RecBole 1.2.1 in its own venv outside the repo, for bench/sequential/recbole_seq_parity.py (never installed into
# the project's environment: it needs numpy<2-era pins). Usage: bash bench/sequential/setup_recbole.sh [VENV_DIR]
# ray/plotly/hyperopt are left out on purpose (only recbole.quick_start needs them; the runner does not);
# pip's resolver notice about them is expected.
set -euo pipefail
VENV="${1:-/work/recbole-venv}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import recbole, torch" 2>/dev/null; then
  echo "RecBole venv ready at $VENV"; exit 0
fi
python3 -m venv "$VENV"
P="$VENV/bin/pip"
"$P" install -q torch==2.13.0
"$P" install -q --no-deps recbole==1.2.1 "thop==0.1.1.post2209072238"
"$P" install -q "numpy<2" "pandas<2.2" "scipy<1.13" "scikit-learn<1.6" tqdm colorlog==4.7.2 colorama==0.4.4 \
  pyyaml tabulate texttable psutil tensorboard || true
"$VENV/bin/python" -c "import recbole, torch; print('recbole', recbole.__version__, 'torch', torch.__version__)"
