#!/usr/bin/env bash
# make images: container images FROM scratch from Conclave's static binaries.
#
#   conclave/conclaved:$TAG   conclaved, /probe (health check), conclavectl when built
#   conclave/agent:$TAG       conclave-agent (only when bin/conclave-agent exists)
#   conclave/fakebbb:$TAG     fakebbb, /probe
#
# BIN (default ./bin) holds binaries built by `make build` (CGO_ENABLED=0);
# a missing or non-static one is built here. Nothing is pulled: every image
# starts FROM scratch. Each image carries the label conclave.binary.sha256
# (its main binary's hash), so callers (the e2e tests) can tell a stale image.
#
# Environment: BIN, TAG (default dev), GO (default go), VERSION.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${BIN:-$ROOT/bin}
TAG=${TAG:-dev}
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}

command -v docker >/dev/null || { echo "images: docker not found" >&2; exit 1; }
docker version >/dev/null 2>&1 || { echo "images: the Docker daemon does not answer (docker version failed)" >&2; exit 1; }

# The legacy builder when buildx (BuildKit's CLI plugin) is missing: with
# DOCKER_BUILDKIT=1 and no buildx, `docker build` refuses to run.
if docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=1
else
  export DOCKER_BUILDKIT=0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/conclave-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

gobuild() { # gobuild PKG OUT
  CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$2" "$1"
}

# binary NAME: the path of a static NAME, from $BIN or built now.
binary() {
  local name=$1 path=$BIN/$1
  if [ -x "$path" ] && "$GO" version -m "$path" 2>/dev/null | grep -q 'CGO_ENABLED=0'; then
    echo "$path"
    return
  fi
  [ -f "cmd/$name/main.go" ] || return 1
  [ -x "$path" ] && echo "images: $path is not a static (CGO_ENABLED=0) build; rebuilding" >&2
  gobuild "./cmd/$name" "$WORK/bin/$name" >&2
  echo "$WORK/bin/$name"
}

mkdir -p "$WORK/bin"
CONCLAVED=$(binary conclaved) || { echo "images: no conclaved (cmd/conclaved/main.go missing?)" >&2; exit 1; }
FAKEBBB=$(binary fakebbb) || { echo "images: no fakebbb" >&2; exit 1; }
CTL=$(binary conclavectl) || CTL=""
AGENT=$(binary conclave-agent) || AGENT=""
gobuild ./deploy/probe "$WORK/bin/probe"

# context NAME: a fresh build context with the common root file system.
context() {
  local dir=$WORK/ctx-$1
  mkdir -p "$dir/rootfs/etc/ssl/certs" "$dir/rootfs/tmp" "$dir/data"
  chmod 1777 "$dir/rootfs/tmp"
  chmod 0755 "$dir/data"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$dir/rootfs/etc/ssl/certs/"
  fi
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$dir/rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/rootfs/etc/group"
  echo "$dir"
}

build() { # build IMAGE DOCKERFILE CONTEXT MAIN_BINARY
  local sum version old
  sum=$(sha256sum "$4" | cut -d' ' -f1)
  version=$("$4" --version 2>/dev/null | awk 'NR == 1 { print $NF }') || true
  old=$(docker image inspect --format '{{.Id}}' "$1:$TAG" 2>/dev/null || true)
  echo "images: building $1:$TAG"
  docker build --quiet -f "$2" -t "$1:$TAG" \
    --label "org.opencontainers.image.title=${1#conclave/}" \
    --label "org.opencontainers.image.version=${version:-$VERSION}" \
    --label "conclave.binary.sha256=$sum" \
    "$3" >/dev/null
  # The image this one replaces, now untagged, goes (unless a container uses it).
  if [ -n "$old" ] && [ "$old" != "$(docker image inspect --format '{{.Id}}' "$1:$TAG")" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
}

ctx=$(context conclaved)
cp "$CONCLAVED" "$ctx/conclaved"
cp "$WORK/bin/probe" "$ctx/probe"
[ -n "$CTL" ] && cp "$CTL" "$ctx/rootfs/conclavectl"
build conclave/conclaved deploy/conclaved.Dockerfile "$ctx" "$CONCLAVED"

ctx=$(context fakebbb)
cp "$FAKEBBB" "$ctx/fakebbb"
cp "$WORK/bin/probe" "$ctx/probe"
build conclave/fakebbb deploy/fakebbb.Dockerfile "$ctx" "$FAKEBBB"

if [ -n "$AGENT" ]; then
  ctx=$(context agent)
  cp "$AGENT" "$ctx/conclave-agent"
  build conclave/agent deploy/agent.Dockerfile "$ctx" "$AGENT"
else
  echo "images: no conclave-agent built; conclave/agent:$TAG skipped"
fi

[ -n "$CTL" ] || echo "images: no conclavectl built; conclave/conclaved:$TAG has none"
docker image ls --filter "reference=conclave/*:$TAG" --format '{{.Repository}}:{{.Tag}}  {{.Size}}'
