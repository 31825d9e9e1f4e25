#!/usr/bin/env bash
# SRPO through verl's real trainer on CPU. The recipe ships inside the package
# (gream_verl/verl_cpu/cpu_tiny.sh, so an installed wheel has it too); this runs it from a checkout.
# Usage and environment variables: see that file.
exec bash "$(dirname "$0")/../../gream_verl/verl_cpu/cpu_tiny.sh" "$@"
