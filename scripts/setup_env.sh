#!/usr/bin/env bash
# Create (or update) the CPU development environment: verl 0.9.1 + llamafactory 0.9.5 + gream-verl.
#   bash scripts/setup_env.sh [VENV_DIR]        (default .venv)
# Idempotent: a stamp file records the inputs it was built from.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.gream-installed"
INPUTS=$(cat pyproject.toml constraints/cpu.txt scripts/setup_env.sh scripts/cpu_env/torchaudio/__init__.py | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$INPUTS" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip >/dev/null 2>&1 || true
# torch==2.13.0 resolves to the local CPU wheel on our machines; elsewhere pass
# --index-url https://download.pytorch.org/whl/cpu via PIP_EXTRA_INDEX_URL for a CPU build.
$PIP install -q -c constraints/cpu.txt torch==2.13.0 -e ".[rl,sft,dev]"

# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that cannot load beside the CPU torch:
# with torchvision present, transformers (and so verl's trainer) fails at import. Remove them and
# give llamafactory (which imports torchaudio at module level) a stand-in that fails on use.
$PIP uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -rf "$SITE/torchaudio"
cp -r scripts/cpu_env/torchaudio "$SITE/torchaudio"

"$VENV/bin/python" - <<'PY'
import llamafactory, torch, transformers, verl  # noqa: F401  the import check that matters
print(f"environment ready: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"verl {verl.__version__}, llamafactory {llamafactory.__version__}")
PY
echo "$INPUTS" > "$STAMP"
