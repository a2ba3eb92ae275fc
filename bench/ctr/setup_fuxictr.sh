#!/usr/bin/env bash
# FuxiCTR 2.3.10 in its own venv outside the repo, for bench/ctr/_fuxictr_runner.py (the WWW2025 MMCTR
# challenge's DIN baseline as the reference of the DIN parity benchmark). Never installed into the
# project's environment. Usage: bash bench/ctr/setup_fuxictr.sh [VENV_DIR]   (default /work/fuxictr-venv)
# torch goes in first, pinned to the local CPU wheel, so that pip never pulls the CUDA build;
# torchvision is not needed and never installed. The fuxictr 2.3.10 wheel on PyPI imports ray at
# module level (fuxictr.preprocess, fuxictr.pytorch.dataloaders) and so requires ray[data] (~250 MB);
# the runner never starts ray (rebuild_dataset=False). The scientific stack is pinned to the versions
# the runner was verified with (fuxictr 2.3.10 targets numpy 2 / pandas 3 / polars >= 1.40 /
# scikit-learn >= 1.8; nothing older is needed). The venv takes about 1.9 GB.
# The runner also needs the challenge code: extract it outside the repo with
#   mkdir -p /work/qin-checkout && git --git-dir=/work/.mirror/salmon1802+QIN/repo archive HEAD | tar -x -C /work/qin-checkout
set -euo pipefail
VENV="${1:-/work/fuxictr-venv}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import fuxictr, torch" 2>/dev/null; then
  echo "FuxiCTR venv ready at $VENV"; exit 0
fi
python3 -m venv "$VENV"
P="$VENV/bin/pip"
"$P" install -q torch==2.13.0
"$P" install -q fuxictr==2.3.10 torch==2.13.0 numpy==2.4.6 pandas==3.1.1 scipy==1.17.1 \
  scikit-learn==1.9.1 polars==2.1.0 pyarrow==26.0.1 "ray[data]==2.60.0" pyyaml tqdm h5py
"$VENV/bin/python" -c "import fuxictr, torch, fuxictr.preprocess, fuxictr.pytorch.layers; print('fuxictr', fuxictr.__version__, 'torch', torch.__version__)"
