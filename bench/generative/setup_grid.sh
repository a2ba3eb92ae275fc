#!/usr/bin/env bash
# snap-research/GRID (the reference TIGER of bench/generative/grid_tiger.py) in its own checkout and venv, both
# outside the repo and never in the project's environment. Usage:
#   bash bench/generative/setup_grid.sh [VENV_DIR] [CHECKOUT_DIR]     (defaults /work/grid-venv, /work/grid-ref)
# Idempotent: each step checks its own result first and says what it does; a second run changes nothing.
#
# 1. Checkout: a git worktree of the mirrored GRID (HEAD of $GRID_MIRROR, default
#    /work/.mirror/snap-research+GRID/repo). The mirror lacks one blob (notices.txt, a license notice that no code
#    reads), so a plain `git worktree add` stops; we add the worktree without checkout, check out every file
#    whose blob is present and mark the missing ones skip-worktree (`git status` stays clean).
#    rootutils.setup_root() in src/train.py looks for a `.project-root` marker that the repository does not
#    commit (lightning-hydra-template's convention): we create the empty, untracked file.
# 2. Patches (two lines, source otherwise unchanged; `git -C $CHECKOUT diff` shows them):
#    a. src/utils/restart_job.py imports `_copy_time_dependent_args` from src/utils/restart_job_utils.py, which
#       does not define it (nothing uses it either): `python -m src.train` stops at import with ImportError at
#       GRID's HEAD (63e19a8). The patch deletes that one name from the import list.
#    b. Constrained beam search (model.should_check_prefix=true) crashes at the first code level in
#       src/models/modules/semantic_id/tiger_generation_model.py, _beam_search_one_step: the second masking line
#           candidate_logits[~valid_prefix_mask] = float("-inf")
#       is meant for the later levels only (there the mask is [beams, codes] like the logits) but is indented at
#       the level of the `if generated_ids is None:` / `else:` pair, so it also runs at level 0, where the mask
#       is [codes] and the logits [batch, codes]: IndexError unless batch == codebook size. The patch moves that
#       line into the `else:` branch (4 more spaces), as the first branch's own masking line implies. GRID's
#       default (should_check_prefix false, unconstrained beams) never reaches it.
# 3. Venv: torch pinned to the CPU wheel of 2.13.0 first (GRID pins torch==2.6.0+cu124, which is not on PyPI;
#    PyPI's Linux torch wheels are CUDA builds of several GB), then only what `python -m src.train
#    experiment=tiger_train_flat` imports, at GRID's requirements.txt pins: transformers 4.47.0 (T5 blocks,
#    EncoderDecoderCache), lightning 2.5.0, hydra-core 1.3.2 + hydra-colorlog 1.2.0 (configs/hydra/default.yaml
#    uses the colorlog launcher logging), omegaconf 2.3.0, torchmetrics 1.0.3, rootutils 1.0.7, tensorflow-cpu
#    2.18.0 (the TFRecord reader), numpy 2.0.2, pyarrow 20.0.0, fsspec 2024.9.0, psutil 6.1.1, rich 13.7.1,
#    python-dotenv 1.0.1, tokenizers 0.21.0. Left out: torchrec, torchvision/torchaudio, pytorch-lightning
#    (only the clustering / custom-loop modules import it), google-cloud-bigquery (inference writers),
#    optuna sweeper and the rest of requirements.txt. The venv takes about 2.5 GB (tensorflow-cpu is most of it).
set -euo pipefail
VENV="${1:-/work/grid-venv}"
REF="${2:-/work/grid-ref}"
MIRROR="${GRID_MIRROR:-/work/.mirror/snap-research+GRID/repo}"
PY="${PYTHON:-python3.11}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
say() { echo "[setup_grid] $*" >&2; }

# ------------------------------------------------------------------ 1. checkout
if [ -e "$REF/.git" ]; then
  say "checkout present: $REF ($(git -C "$REF" rev-parse --short HEAD))"
else
  [ -e "$REF" ] && { say "$REF exists and is not a git worktree: move it away first"; exit 2; }
  [ -d "$MIRROR" ] || { say "no GRID mirror at $MIRROR (fetch github:snap-research/GRID first)"; exit 2; }
  say "adding worktree $REF of $MIRROR at HEAD"
  git --git-dir="$MIRROR" worktree prune
  git --git-dir="$MIRROR" worktree add -f --no-checkout "$REF" HEAD >&2
  git -C "$REF" read-tree HEAD
  missing=()
  while read -r _mode _type sha path; do
    git -C "$REF" cat-file -e "$sha" 2>/dev/null || missing+=("$path")
  done < <(git -C "$REF" ls-tree -r HEAD)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "blobs absent from the mirror (left out, marked skip-worktree): ${missing[*]}"
    git -C "$REF" update-index --skip-worktree -- "${missing[@]}"
  fi
  git -C "$REF" checkout-index -a
fi
[ -e "$REF/.project-root" ] || { say "creating the rootutils marker $REF/.project-root (untracked, empty)"; : > "$REF/.project-root"; }

# ------------------------------------------------------------------ 2. patches
RJ="$REF/src/utils/restart_job.py"
if grep -q '^    _copy_time_dependent_args,$' "$RJ"; then
  say "patching $RJ: drop the import of _copy_time_dependent_args (undefined, unused; ImportError at HEAD)"
  sed -i '/^    _copy_time_dependent_args,$/d' "$RJ"
else
  say "patch a present (or not applicable): $RJ imports no _copy_time_dependent_args"
fi
TGM="$REF/src/models/modules/semantic_id/tiger_generation_model.py"
BAD='^            candidate_logits\[~valid_prefix_mask\] = float("-inf")$'
if grep -q "$BAD" "$TGM"; then
  say "patching $TGM: level-0 crash of the prefix-constrained beam search (see this script's header)"
  sed -i "s/$BAD/                candidate_logits[~valid_prefix_mask] = float(\"-inf\")  # grid_tiger patch: else-branch only/" "$TGM"
else
  say "patch b present (or not applicable): $(grep -c 'grid_tiger patch' "$TGM") patched line in $TGM"
fi

# ------------------------------------------------------------------ 3. venv
check() {
  "$VENV/bin/python" - <<'PY'
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import torch, transformers, lightning, hydra, omegaconf, torchmetrics, rootutils, tensorflow as tf, numpy, pyarrow
import hydra_plugins.hydra_colorlog  # noqa: F401
assert torch.__version__.startswith("2.13.0") and "+cpu" in torch.__version__, torch.__version__
assert transformers.__version__ == "4.47.0", transformers.__version__
assert lightning.__version__ == "2.5.0", lightning.__version__
print(f"[setup_grid] venv ready: torch {torch.__version__}, transformers {transformers.__version__}, lightning "
      f"{lightning.__version__}, hydra {hydra.__version__}, torchmetrics {torchmetrics.__version__}, tensorflow "
      f"{tf.__version__}, numpy {numpy.__version__}", file=sys.stderr)
PY
}
if [ -x "$VENV/bin/python" ] && ready=$(check 2>&1); then
  echo "$ready" | tail -1 >&2
  exit 0
fi
say "creating $VENV and installing GRID's TIGER dependencies (first run: a few minutes, ~2.5 GB)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip's notices about this machine's local index folders without the package are dropped; its errors are kept
pipq() { nice -n 10 "$VENV/bin/pip" install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; }
pipq "torch==2.13.0"
pipq "torch==2.13.0" "transformers==4.47.0" "tokenizers==0.21.0" "lightning==2.5.0" \
  "torchmetrics==1.0.3" "hydra-core==1.3.2" "hydra-colorlog==1.2.0" "omegaconf==2.3.0" "rootutils==1.0.7" \
  "tensorflow-cpu==2.18.0" "numpy==2.0.2" "pyarrow==20.0.0" "fsspec==2024.9.0" "psutil==6.1.1" "rich==13.7.1" \
  "python-dotenv==1.0.1"
check
