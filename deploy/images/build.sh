#!/usr/bin/env bash
# Builds Obol's container images (deploy/images/README.md): one static
# binary per daemon, built on the host (CGO_ENABLED=0, -trimpath, VCS
# stamped) into bin/images/, then `docker build` onto FROM scratch. Nothing
# is pulled from a registry. Tags: obolpay/<daemon>:<version> and :dev.
#
#   deploy/images/build.sh [daemon...]     # default: every image
#
# VERSION (default: git describe --always --dirty), REVISION (default: git
# rev-parse HEAD), SOURCE_DATE_EPOCH (the created label; default: now) and
# LICENSES (an SPDX expression; default NOASSERTION: the project has no
# license file yet)
# can be set. DOCKER (default: docker) is the client.
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf '==> %s\n' "$*"; }

all=(vaultd gatewayd riskd ledgerd eventsd acquirer-sim)
if [ $# -gt 0 ]; then daemons=("$@"); else daemons=("${all[@]}"); fi
for d in "${daemons[@]}"; do
  [ -f "deploy/images/$d.Dockerfile" ] || { echo "build.sh: no image named $d (want one of: ${all[*]})" >&2; exit 2; }
done

docker=${DOCKER:-docker}
command -v "$docker" >/dev/null || { echo "build.sh: $docker not found (apt-get install docker.io)" >&2; exit 1; }
"$docker" info >/dev/null 2>&1 || { echo "build.sh: the Docker daemon does not answer (start dockerd as root: dockerd --iptables=false --bridge=none)" >&2; exit 1; }
cabundle=/etc/ssl/certs/ca-certificates.crt
[ -s "$cabundle" ] || { echo "build.sh: $cabundle is missing (apt-get install ca-certificates)" >&2; exit 1; }

version=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
revision=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
created=$(date -u ${SOURCE_DATE_EPOCH:+-d "@$SOURCE_DATE_EPOCH"} +%Y-%m-%dT%H:%M:%SZ)
out=bin/images

say "go build (static, -trimpath) ${daemons[*]} into $out/ (version $version)"
pkgs=()
for d in "${daemons[@]}"; do pkgs+=("./cmd/$d"); done
mkdir -p "$out"
# -buildvcs=auto overrides a GOFLAGS=-buildvcs=false: the binaries carry
# vcs.revision/vcs.time/vcs.modified when built in a git checkout.
CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=auto -ldflags='-s -w' -o "$out/" "${pkgs[@]}"

if [ ! -d .git ] && git rev-parse --git-dir >/dev/null 2>&1; then
  # The go command stamps VCS information only when .git is a directory
  # (a clone), not in a git worktree, where .git is a file.
  echo "build.sh: note: a git worktree: the binaries carry no vcs.revision (the images' revision label does)" >&2
fi

# The root filesystem every image shares: the CA bundle, a passwd/group
# naming the non-root user 65532, and an empty /tmp (a mount point for an
# emptyDir or --tmpfs; the root filesystem is meant to run read-only).
root=$out/rootfs
rm -rf "$root"
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
cp "$cabundle" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
chmod 1777 "$root/tmp"

for d in "${daemons[@]}"; do
  # One small build context per image: the binary and the shared rootfs
  # (hard links where the filesystem allows, so nothing is copied twice).
  ctx=$out/context/$d
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -al "$root" "$ctx/rootfs" 2>/dev/null || cp -a "$root" "$ctx/rootfs"
  ln "$out/$d" "$ctx/$d" 2>/dev/null || cp "$out/$d" "$ctx/$d"
  say "docker build obolpay/$d:$version (and :dev)"
  # The classic builder: it ships with every Docker engine (BuildKit needs
  # the buildx plugin, which Debian's docker.io lacks). Its output is shown
  # only when the build fails.
  if ! log=$(DOCKER_BUILDKIT=0 "$docker" build -f "deploy/images/$d.Dockerfile" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "CREATED=$created" \
    ${LICENSES:+--build-arg "LICENSES=$LICENSES"} \
    -t "obolpay/$d:$version" -t "obolpay/$d:dev" "$ctx" 2>&1); then
    echo "$log" >&2
    exit 1
  fi
done
say "built: ${daemons[*]} as obolpay/<daemon>:$version and obolpay/<daemon>:dev"
