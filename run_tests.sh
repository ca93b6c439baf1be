#!/usr/bin/env bash
# Runs the whole test suite (library tests, then notebook tests once notebooks exist),
# creating or updating the environment first. Extra arguments go to pytest.
#
#   XINTERP_DATA=path   offline data folder (manifest.json); default ../shared/data
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
py=$(scripts/ensure_env.sh)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONHASHSEED=0 TOKENIZERS_PARALLELISM=false
exec "$py" -m pytest "$@"
