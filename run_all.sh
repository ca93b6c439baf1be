#!/usr/bin/env bash
# Usage: ./run_all.sh [PROFILE] [key=value ...] [--only NN ...]
#
# Creates/updates the environment, builds the profile's encoders, writes Table 1, then
# executes the notebooks 01..06 headless with papermill, the profile and overrides as
# parameters. PROFILE is paper, repro, demo or smoke; without one, paper where a GPU and
# the Hugging Face hub are available, else demo. Overrides are YAML values, e.g.
# ./run_all.sh demo seeds=[1,2] pairs=[en-de,en-ru]. --only runs just the notebooks whose
# names start with the given prefixes (e.g. --only 04 05), after the same preparation;
# the notebooks it skips must have run before, since each reads what the earlier wrote.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

profile=
if [ $# -gt 0 ] && [[ "$1" != *=* && "$1" != --* ]]; then
    profile=$1
    shift
fi

# key=value overrides go to every step; --only and its prefixes to the notebooks alone
overrides=() only=()
while [ $# -gt 0 ]; do
    case "$1" in
        --only) shift
                while [ $# -gt 0 ] && [[ "$1" != *=* && "$1" != --* ]]; do only+=("$1"); shift; done
                if [ ${#only[@]} -eq 0 ]; then
                    echo "run_all: --only needs notebook prefixes, e.g. --only 04 05" >&2; exit 2
                fi ;;
        --*) echo "run_all: unknown option $1 (options: --only NN ...)" >&2; exit 2 ;;
        *) overrides+=("$1"); shift ;;
    esac
done
set -- ${overrides[@]+"${overrides[@]}"}
# Checked here, before any work, so that a typo does not cost a prepare; the same
# numbered notebooks as notebooks.notebook_paths.
notebooks=(notebooks/0[0-9]_*.ipynb)
for prefix in ${only[@]+"${only[@]}"}; do
    found=
    for path in "${notebooks[@]}"; do [[ "${path#notebooks/}" == "$prefix"* ]] && found=1; done
    if [ -z "$found" ]; then
        echo "run_all: --only $prefix matches no notebook in notebooks/ (${notebooks[*]#notebooks/})" >&2
        exit 2
    fi
done

py=$(scripts/ensure_env.sh)
if [ -z "$profile" ]; then
    profile=$("$py" -m xinterp_utils default-profile)
fi
export TOKENIZERS_PARALLELISM=false
echo "run_all: profile $profile $*"
"$py" -m xinterp_utils prepare "$profile" "$@"
"$py" -m xinterp_utils.notebooks run "$profile" "$@" ${only[@]+--only "${only[@]}"}
