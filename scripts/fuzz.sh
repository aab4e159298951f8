#!/usr/bin/env bash
# fuzz.sh PKG TARGET [go test flags…]: one fuzz target for FUZZTIME.
# Go's fuzzer sometimes ends a run that found nothing with "context deadline
# exceeded" when its time runs out while a worker is minimizing a new
# corpus entry (no failing input is written): that run is tried once more.
# A real failure (a failing input written to testdata) is never retried.
set -uo pipefail
pkg=$1 target=$2
shift 2
GO=${GO:-go}
for attempt in 1 2; do
  out=$(mktemp)
  "$GO" test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-10s}" "$@" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then rm -f "$out"; exit 0; fi
  if [ "$attempt" = 1 ] && grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
    echo "fuzz.sh: $target ended on the fuzzer's own deadline without a failing input; running it once more"
    rm -f "$out"
    continue
  fi
  rm -f "$out"
  exit "$rc"
done
