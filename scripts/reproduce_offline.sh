#!/usr/bin/env bash
# The offline reproduction behind REPRODUCTION.md: the `repro` profile, one seed at a
# time, so that a cut run leaves complete figures for the seeds done so far. Every stage
# skips the work whose results exist, so rerunning this script continues where it stopped.
#   scripts/reproduce_offline.sh [key=value ...]   (overrides go to every stage)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./run_all.sh repro seeds=[1] "$@"
./run_all.sh repro seeds=[1,2] "$@"
./run_all.sh repro "$@"
