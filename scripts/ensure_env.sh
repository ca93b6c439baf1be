#!/usr/bin/env bash
# Creates or updates the project's Python environment and prints the python to use.
#
#   XINTERP_VENV=path     where the virtual environment lives (default: .venv in the repo)
#   XINTERP_VENV=none     use the python already on PATH (a conda env from environment.yml)
#   XINTERP_TORCH_SPEC=…  what to install for torch when none is present
#                         (default torch==2.13.0; on a GPU server pick your CUDA build)
#
# torch is installed first, on its own, so that no other package pulls in an
# unpinned (multi-GB CUDA) build before it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${XINTERP_VENV:-$root/.venv}
base_python=${PYTHON:-python3}

if [ "$venv" = none ]; then
    py=$(command -v python3 || command -v python)
else
    if [ ! -x "$venv/bin/python" ]; then
        "$base_python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
            echo "ensure_env: Python >= 3.11 is required ($base_python is $("$base_python" --version 2>&1))" >&2
            exit 1
        }
        echo "ensure_env: creating $venv" >&2
        "$base_python" -m venv "$venv"
    fi
    py=$venv/bin/python
fi

stamp_file=$("$py" -c 'import sys; print(sys.prefix)')/.xinterp-installed
want=$(cat "$root/pyproject.toml" "$root/scripts/ensure_env.sh" | sha256sum | cut -c1-16)
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$want" ]; then
    if ! "$py" -c 'import torch' 2>/dev/null; then
        echo "ensure_env: installing ${XINTERP_TORCH_SPEC:-torch==2.13.0}" >&2
        "$py" -m pip install --quiet "${XINTERP_TORCH_SPEC:-torch==2.13.0}" >&2
    fi
    echo "ensure_env: installing xinterp[dev] (editable)" >&2
    "$py" -m pip install --quiet -e "$root[dev]" >&2
    "$py" -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
    echo "$want" >"$stamp_file"
fi
echo "$py"
