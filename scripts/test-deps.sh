#!/usr/bin/env bash
# make test's first step: find what the tests need, install what Debian's
# packages can give when running as root, or say in one line what is missing.
#   Go (the toolchain running make), headless Chromium (status page test),
#   Docker with Compose (container tests).
set -uo pipefail

missing=()
command -v go >/dev/null || missing+=("go (1.26, https://go.dev/dl)")

chromium_found() {
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null
}
if ! chromium_found; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test-deps: installing chromium (Debian's package) for the status page test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1
  fi
  chromium_found || missing+=("chromium (apt-get install chromium)")
fi

if ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker daemon (the container tests)")
elif ! docker compose version >/dev/null 2>&1 && ! docker-compose version >/dev/null 2>&1; then
  missing+=("Docker Compose (apt-get install docker-compose)")
fi

if [ ${#missing[@]} -gt 0 ]; then
  (IFS=';'; echo "make test needs: ${missing[*]}" | sed 's/;/; /g') >&2
  exit 1
fi
