#!/usr/bin/env bash
# FuxiCTR in its own venv outside the repo, never in the project's environment.
# Usage: bash bench/ctr/setup_fuxictr.sh [VENV_DIR] [VERSION]
#   2.3.10 (default, VENV /work/fuxictr-venv): the reference of the DIN parity benchmark
#          (bench/ctr/_fuxictr_runner.py, the WWW2025 MMCTR challenge's DIN baseline on FuxiCTR 2.3.10).
#   2.3.7  (VENV e.g. /work/fuxictr237-venv): the challenge's own pin, for bench/ctr/challenge_stack_check.py
#          (the challenge's run_expid.py, unmodified, on our export).
# torch goes in first, pinned to the local CPU wheel, so that pip never pulls the CUDA build;
# torchvision is not needed and never installed.
# 2.3.10: the PyPI wheel imports ray at module level (fuxictr.preprocess, fuxictr.pytorch.dataloaders) and so
#   requires ray[data] (~250 MB); the runner never starts ray (rebuild_dataset=False). The scientific stack is
#   pinned to the versions the runner was verified with (numpy 2 / pandas 3 / polars >= 1.40 / scikit-learn
#   >= 1.8; nothing older is needed). The venv takes about 1.9 GB.
# 2.3.7: the challenge repositories pin fuxictr==2.3.7 and polars<=1.0.0 (salmon1802/QIN requirements.txt);
#   2.3.7 needs numpy < 2 and scikit-learn < 1.5 (it was released against them). Verified with numpy 1.26.4,
#   pandas 2.2.3, scikit-learn 1.4.2, polars 1.0.0, pyarrow 19.0.1 (pyarrow >= 20 needs numpy 2), torch 2.13.0 (the challenge used torch 2.0 / 1.13 on CUDA).
# Both need the challenge code: extract it outside the repo with
#   mkdir -p /work/qin-checkout && git --git-dir=/work/.mirror/salmon1802+QIN/repo archive HEAD | tar -x -C /work/qin-checkout
set -euo pipefail
VENV="${1:-/work/fuxictr-venv}"
VERSION="${2:-2.3.10}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import fuxictr, torch, sys; sys.exit(fuxictr.__version__ != '$VERSION')" 2>/dev/null; then
  echo "FuxiCTR $VERSION venv ready at $VENV"; exit 0
fi
python3 -m venv "$VENV"
P="$VENV/bin/pip"
"$P" install -q torch==2.13.0
case "$VERSION" in
  2.3.10)
    "$P" install -q fuxictr==2.3.10 torch==2.13.0 numpy==2.4.6 pandas==3.1.1 scipy==1.17.1 \
      scikit-learn==1.9.1 polars==2.1.0 pyarrow==26.0.1 "ray[data]==2.60.0" pyyaml tqdm h5py ;;
  2.3.7)
    "$P" install -q fuxictr==2.3.7 torch==2.13.0 numpy==1.26.4 pandas==2.2.3 scikit-learn==1.4.2 \
      polars==1.0.0 pyarrow==19.0.1 pyyaml tqdm h5py keras_preprocessing ;;
  *) echo "unsupported FuxiCTR version $VERSION (2.3.10 or 2.3.7)" >&2; exit 2 ;;
esac
"$VENV/bin/python" -c "import fuxictr, torch, numpy, sklearn, fuxictr.preprocess, fuxictr.pytorch.layers; print('fuxictr', fuxictr.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__, 'sklearn', sklearn.__version__)"
