#!/usr/bin/env bash
# SRPO on sports with the paper hyperparameters (see gream_verl/srpo/recipes.yaml); extra key=value overrides are appended.
exec "$(dirname "$0")/run.sh" sports "$@"
