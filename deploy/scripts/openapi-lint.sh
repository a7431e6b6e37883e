#!/usr/bin/env bash
# Lints Obol's OpenAPI documents (the merged merchant document and each
# service's) with Redocly CLI's recommended rules; any error fails. Redocly
# CLI is installed pinned with npm into
# ${XDG_CACHE_HOME:-$HOME/.cache}/obol/node/ the first time (needs node and
# npm: Debian's nodejs and npm packages; test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=2.77.0
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
dir="${XDG_CACHE_HOME:-$HOME/.cache}/obol/node/redocly-cli-$version"
if [ ! -x "$dir/node_modules/.bin/redocly" ]; then
  command -v npm >/dev/null || { echo "openapi-lint: npm is missing (apt-get install nodejs npm)" >&2; exit 1; }
  echo "installing @redocly/cli@$version into $dir"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --no-save --silent "@redocly/cli@$version"
fi
"$dir/node_modules/.bin/redocly" lint --extends=recommended --format=stylish \
  proto/openapi/obol.openapi.json proto/obol/*/v1/*.openapi.json
