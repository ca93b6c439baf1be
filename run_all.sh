#!/usr/bin/env bash
# Usage: ./run_all.sh [PROFILE] [key=value ...]
#
# Creates/updates the environment, builds the profile's encoders, writes Table 1, then
# executes the notebooks 01..06 headless with papermill, the profile and overrides as
# parameters. PROFILE is paper, repro, demo or smoke; without one, paper where a GPU and
# the Hugging Face hub are available, else demo. Overrides are YAML values, e.g.
# ./run_all.sh demo seeds=[1,2] pairs=[en-de,en-ru].
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

profile=
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then
    profile=$1
    shift
fi

py=$(scripts/ensure_env.sh)
if [ -z "$profile" ]; then
    profile=$("$py" -m xinterp_utils default-profile)
fi
export TOKENIZERS_PARALLELISM=false
echo "run_all: profile $profile $*"
"$py" -m xinterp_utils prepare "$profile" "$@"
"$py" -m xinterp_utils.notebooks run "$profile" "$@"
