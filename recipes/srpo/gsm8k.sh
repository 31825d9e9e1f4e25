#!/usr/bin/env bash
# SRPO on gsm8k with the paper hyperparameters (see gream_verl/srpo/recipes.yaml); extra key=value overrides are appended.
exec "$(dirname "$0")/run.sh" gsm8k "$@"
