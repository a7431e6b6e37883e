#!/usr/bin/env bash
# Regenerates the Go code, grpc-gateway handlers and OpenAPI documents from
# proto/ with buf and local, pinned protoc-gen-* plugins (no remote plugins),
# and deploy/CONFIG.md (every binary's settings) from internal/cli/config.
# With --check, fails if the committed generated code or table differs.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$(go env GOPATH)/bin:$PATH"
want() { # binary module@version
  local bin=$1 mod=$2
  if ! command -v "$bin" >/dev/null || [ "$(cat "$(go env GOPATH)/bin/.$bin.version" 2>/dev/null)" != "$mod" ]; then
    echo "installing $mod"
    go install "$mod"
    echo "$mod" > "$(go env GOPATH)/bin/.$bin.version"
  fi
}
want buf github.com/bufbuild/buf/cmd/buf@v1.57.2
want protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.10
want protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
want protoc-gen-grpc-gateway github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.27.3
want protoc-gen-openapiv2 github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.27.3

# gen writes the Go code and the OpenAPI 3 documents: protoc-gen-openapiv2's
# Swagger 2.0 goes to a temporary directory, and deploy/openapigen turns it
# into proto/obol/*/v1/*.openapi.json and proto/openapi/obol.openapi.json.
gen() {
  buf generate --template proto/buf.gen.yaml proto
  local swagger; swagger=$(mktemp -d)
  buf generate --template proto/buf.gen.openapi.yaml -o "$swagger" proto
  go run ./deploy/openapigen -in "$swagger" -out proto
  rm -rf "$swagger"
}

if [ "${1:-}" = "--check" ]; then
  go run ./internal/cli/config/gen -check
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  cp -r proto "$tmp/before"
  gen
  if ! diff -r "$tmp/before" proto >/dev/null; then
    diff -r "$tmp/before" proto | head -40 || true
    echo "generated code in proto/ is stale: run deploy/scripts/generate.sh and commit" >&2
    exit 1
  fi
  buf lint proto
  echo "generated code is fresh"
else
  go run ./internal/cli/config/gen
  gen
  buf lint proto
fi
