#!/usr/bin/env bash
# Obol's whole test suite: unit, conformance, integration (real HashiCorp
# Vault, PostgreSQL and Redis), leak scans, the PCI boundary and a check
# that generated code is fresh. On a fresh Debian machine with only Go it
# installs what is missing:
#   - postgresql, redis-server, gcc (for -race), chromium (the hosted
#     card fields' browser tests, driven headless), curl and jq (the README
#     walk-through), haproxy (the reference topology) from Debian (apt-get; needs root or sudo);
#   - the vault binary, built once from the Go module proxy into
#     ${XDG_CACHE_HOME:-$HOME/.cache}/obol/ (about 15 minutes and 4.5 GB of
#     module downloads the first time; cached after that);
#   - buf and the protoc-gen-* plugins (pinned) with `go install`;
#   - stripe-mock (pinned; the stripe connector's integration tests) and
#     grpcurl (pinned; the README walk-through) with `go install`.
#   - node and npm from Debian, and @redocly/cli (pinned, npm, into the
#     cache dir) for the OpenAPI lint, and standardwebhooks (pinned, npm,
#     into the cache dir: deploy/scripts/standardwebhooks.sh) for the
#     webhook receiver test; TestGeneratedClient fetches
#     oapi-codegen (pinned) from the Go module proxy.
# Services are started by the tests themselves on free loopback ports, unless
# OBOL_TEST_POSTGRES_URL / OBOL_TEST_REDIS_URL / OBOL_TEST_VAULT_ADDR are set.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:$(go env GOPATH)/bin"
say() { printf '\n==> %s\n' "$*"; }

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v gcc >/dev/null || missing+=(gcc)   # the race detector needs cgo
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)   # the README walk-through (TestREADMEWalkthrough)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)   # the reference topology (deploy/topology)
command -v jq >/dev/null || missing+=(jq)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
command -v node >/dev/null || missing+=(nodejs)    # OpenAPI lint (deploy/scripts/openapi-lint.sh), webhook receiver test
command -v npm >/dev/null || missing+=(npm)
[ -n "${OBOL_TEST_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (Debian packages)"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

vault_bin="${XDG_CACHE_HOME:-$HOME/.cache}/obol/vault-v1.21.0"
if [ -z "${OBOL_VAULT_BIN:-}" ] && [ ! -x "$vault_bin" ]; then
  say "building HashiCorp Vault v1.21.0 from the Go module proxy (first time only, ~15 min)"
  mkdir -p "$(dirname "$vault_bin")"
  # Under the lock internal/testenv takes, so a test started meanwhile waits
  # for this build instead of starting its own into the same file.
  flock "$vault_bin.lock" sh -c '[ -x "$1" ] || (cd internal/testenv/vaultbin && GOFLAGS=-mod=mod GOWORK=off go build -trimpath -o "$1.tmp" . && mv "$1.tmp" "$1")' sh "$vault_bin"
fi

if ! command -v grpcurl >/dev/null && [ ! -x "$(go env GOPATH)/bin/grpcurl" ]; then
  say "installing grpcurl v1.9.3 (go install; the README walk-through calls it)"
  go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3
fi

if [ -z "${OBOL_TEST_STRIPE_MOCK_URL:-}" ] && ! command -v stripe-mock >/dev/null; then
  say "installing stripe-mock v0.203.0 (go install)"
  go install github.com/stripe/stripe-mock@v0.203.0
fi

say "repository hygiene: go.mod tidy, no tracked file over 1 MB outside testdata/"
go mod tidy -diff
big=$(git ls-files -z | xargs -0 -r stat -c '%s %n' | awk '$1 > 1048576 && $2 !~ /(^|\/)testdata\// {print $2}')
if [ -n "$big" ]; then echo "tracked files over 1 MB (binaries?), remove them from git:"; echo "$big"; exit 1; fi

say "checking generated code is fresh"
deploy/scripts/generate.sh --check

say "OpenAPI documents: redocly lint (recommended rules, 0 errors)"
deploy/scripts/openapi-lint.sh

say "gofmt, go vet and staticcheck"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '\.pb\.' ) || true)
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; exit 1; fi
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...

say "go test -race (unit + integration)"
go test -race -count=1 -timeout 30m "$@" ./...
