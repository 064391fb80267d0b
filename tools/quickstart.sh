#!/usr/bin/env bash
# One command from a fresh clone to a running server on the embedded defaults:
# host packages (as root), npm dependencies and build, then `s0 server` in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-host.sh
npm ci --no-audit --no-fund
exec node bin/s0.js server
