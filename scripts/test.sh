#!/usr/bin/env bash
# Runs the test suite (creating .venv first when needed). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec python -m pytest -q "$@"
