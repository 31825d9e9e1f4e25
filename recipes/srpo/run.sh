#!/usr/bin/env bash
# Launch an SRPO recipe with stock verl:  recipes/srpo/run.sh RECIPE [key=value ...]
#   RECIPE: instruments | beauty | sports | instruments_curriculum | gsm8k   (gream_verl/srpo/recipes.yaml)
#   Extra key=value arguments are appended (they win), e.g. trainer.total_epochs=1.
#   Environment: GREAM_MODEL_PATH, GREAM_RL_DATA, GREAM_ROLLOUT (vllm|sglang), GREAM_N_GPUS,
#                GREAM_MAX_RESPONSE_LENGTH, PYTHON (default: python).
# Check first that verl sees the srpo estimator and reward manager:  gream verl-check
set -euo pipefail
recipe=${1:?usage: recipes/srpo/run.sh RECIPE [key=value ...]}
shift
PYTHON=${PYTHON:-python}
overrides_text=$("$PYTHON" -m gream_verl.srpo.recipes "$recipe")
mapfile -t overrides <<< "$overrides_text"
set -x
exec "$PYTHON" -m verl.trainer.main_ppo "${overrides[@]}" "$@"
