#!/usr/bin/env bash
# Installs the official Standard Webhooks JavaScript library, pinned, into
# ${XDG_CACHE_HOME:-$HOME/.cache}/obol/node/ the first time, and prints the
# directory whose node_modules holds it. The events tests verify eventsd's
# webhooks with it (needs node and npm: Debian's nodejs and npm packages;
# test.sh installs them).
set -euo pipefail
version=1.1.1
dir="${XDG_CACHE_HOME:-$HOME/.cache}/obol/node/standardwebhooks-$version"
if [ ! -f "$dir/node_modules/standardwebhooks/package.json" ]; then
  command -v npm >/dev/null || { echo "standardwebhooks: npm is missing (apt-get install nodejs npm)" >&2; exit 1; }
  echo "installing standardwebhooks@$version into $dir" >&2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --no-save --silent "standardwebhooks@$version" >&2
fi
echo "$dir"
