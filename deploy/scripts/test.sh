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
#   - docker.io from Debian, and a dockerd when none runs (the container
#     images: `make images` and their smoke test; stopped at exit);
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

# Kubernetes manifests (deploy/kubernetes/README.md): a Go module of its own,
# so the Kubernetes libraries stay out of Obol's go.mod and `./...` above does
# not reach it. No cluster: kustomize builds both overlays in process, every
# object decodes strictly into k8s.io/api types, and the NetworkPolicies'
# connectivity (cyclonus) is checked against the PCI reachability matrix.
say "Kubernetes manifests (deploy/kubernetes): tidy, vet, staticcheck, tests"
(
  cd deploy/kubernetes
  go mod tidy -diff
  go vet ./...
  go run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...
  go test -count=1 -timeout 5m "$@" ./...
)

# ---- container images (deploy/images; owner: images) ----------------------
# docker.io from Debian when docker or dockerd is missing; a dockerd started
# here when none answers (--iptables=false --bridge=none: the smoke test runs
# containers on the host network; overlay2, else vfs), stopped at exit;
# `make images` builds the six images; OBOL_TEST_REQUIRE_DOCKER=1 makes the
# smoke test (deploy/images/images_test.go, in `go test ./...` below) fail
# rather than skip when there is no engine.
if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
  say "installing docker.io (Debian package; the container images)"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
obol_dockerd_pid=""
obol_stop_dockerd() {
  if [ -n "$obol_dockerd_pid" ]; then
    sudo_ kill "$obol_dockerd_pid" 2>/dev/null || true
    for _ in $(seq 30); do sudo_ kill -0 "$obol_dockerd_pid" 2>/dev/null || break; sleep 1; done
    obol_dockerd_pid=""
  fi
}
if ! docker info >/dev/null 2>&1; then
  obol_dockerd_log=$(mktemp -t obol-dockerd.XXXXXX.log)
  for driver in overlay2 vfs; do
    say "starting dockerd (storage driver $driver; log: $obol_dockerd_log)"
    # Not through sudo_ (a function: $! would be a subshell's pid, not dockerd's).
    obol_dockerd=(dockerd --iptables=false --bridge=none --ip-forward=false --ip-masq=false --storage-driver="$driver")
    if [ "$(id -u)" = 0 ]; then "${obol_dockerd[@]}" >>"$obol_dockerd_log" 2>&1 &
    else sudo "${obol_dockerd[@]}" >>"$obol_dockerd_log" 2>&1 &
    fi
    obol_dockerd_pid=$!
    for _ in $(seq 60); do
      docker info >/dev/null 2>&1 && break
      kill -0 "$obol_dockerd_pid" 2>/dev/null || break
      sleep 1
    done
    docker info >/dev/null 2>&1 && break
    obol_stop_dockerd
  done
  if ! docker info >/dev/null 2>&1; then echo "dockerd did not start; its log:"; tail -20 "$obol_dockerd_log"; exit 1; fi
  obol_prev_exit_trap=$(trap -p EXIT | sed "s/^trap -- '\(.*\)' EXIT\$/\1/")
  trap "obol_stop_dockerd; ${obol_prev_exit_trap}" EXIT
fi
export OBOL_TEST_REQUIRE_DOCKER=1
say "container images: make images (static binaries on scratch; smoke test in go test below)"
make images
# ---- end of container images ------------------------------------------------

say "go test -race (unit + integration)"
go test -race -count=1 -timeout 30m "$@" ./...
