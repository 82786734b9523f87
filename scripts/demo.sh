#!/usr/bin/env bash
# The main job on the built-in default data (creating .venv first when needed).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec mmtalker demo "$@"
