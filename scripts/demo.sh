#!/usr/bin/env bash
# make demo: three conclaved peers, three fake BBB nodes (with agents when
# conclave-agent is built), a frontend, all on loopback; Raft and peer
# calls under mutual TLS (a CA and peer certificates made with conclavectl
# tls in the demo dir); recordings shipped to a central directory. Ctrl-C
# stops it.
set -euo pipefail
BIN=${BIN:-$(pwd)/bin}
DIR=${DEMO_DIR:-$(pwd)/demo-data}
rm -rf "$DIR" && mkdir -p "$DIR"
pids=()
cleanup() {
  trap - EXIT INT TERM # once, whichever signal or exit came first
  echo; echo "stopping demo…"; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

export CONCLAVE_LOG_FORMAT=plain CONCLAVE_LOG_LEVEL=${CONCLAVE_LOG_LEVEL:-info}
FRONTEND_SECRET=demo-frontend-secret

# Mutual TLS between the peers: a cluster CA and one certificate per peer.
TLS="$DIR/tls"
"$BIN/conclavectl" tls ca create --dir "$TLS" >/dev/null
for i in 1 2 3; do "$BIN/conclavectl" tls cert create --name peer$i --dir "$TLS" >/dev/null; done

# Central recordings: a shared directory for the peers; each fake node
# publishes its recordings' files under its own published tree, which its
# agent ships.
STORE="$DIR/recordings"
mkdir -p "$STORE"
for i in 1 2 3; do
  mkdir -p "$DIR/bbb$i/published"
  "$BIN/fakebbb" --listen 127.0.0.1:1900$i --secret "node$i-secret" \
    --properties "$DIR/bbb$i.properties" --published-dir "$DIR/bbb$i/published" >"$DIR/fakebbb$i.log" 2>&1 &
  pids+=($!)
done
"$BIN/conclaved" --id peer1 --data-dir "$DIR/peer1" --listen-http 127.0.0.1:42353 \
  --raft-addr 127.0.0.1:42354 --gossip-addr 127.0.0.1:42355 --bootstrap --recordings-store "file://$STORE" \
  --tls-ca "$TLS/ca.pem" --tls-cert "$TLS/peer1.pem" --tls-key "$TLS/peer1-key.pem" >"$DIR/peer1.log" 2>&1 &
pids+=($!)
for i in 2 3; do
  base=$((42353 + (i - 1) * 10)) # peer2: 42363-42365, peer3: 42373-42375
  "$BIN/conclaved" --id peer$i --data-dir "$DIR/peer$i" --listen-http 127.0.0.1:$base \
    --raft-addr 127.0.0.1:$((base + 1)) --gossip-addr 127.0.0.1:$((base + 2)) --join 127.0.0.1:42353 --recordings-store "file://$STORE" \
    --tls-ca "$TLS/ca.pem" --tls-cert "$TLS/peer$i.pem" --tls-key "$TLS/peer$i-key.pem" >"$DIR/peer$i.log" 2>&1 &
  pids+=($!)
done

ctl() { "$BIN/conclavectl" --api http://127.0.0.1:42353 "$@"; }
for _ in $(seq 1 100); do
  ctl show peers >/dev/null 2>&1 && [ "$(ctl show peers -o json 2>/dev/null | grep -o '"reachable": *true' | wc -l)" -eq 3 ] && break
  sleep 0.2
done
ctl show peers

if [ -x "$BIN/conclave-agent" ]; then
  for i in 1 2 3; do
    BBB_CONFIG="$DIR/bbb$i.properties" "$BIN/conclave-agent" --join 127.0.0.1:42355 -a \
      --gossip-addr 127.0.0.1:4700$i --recordings-dir "$DIR/bbb$i/published" --recordings-scan 2s >"$DIR/agent$i.log" 2>&1 &
    pids+=($!)
  done
  sleep 3
  for i in 1 2 3; do ctl enable backend "127.0.0.1:1900$i" >/dev/null 2>&1 || true; done
else
  for i in 1 2 3; do
    ctl add backend "http://127.0.0.1:1900$i/bigbluebutton/api/" --secret "node$i-secret" >/dev/null
    ctl enable backend "127.0.0.1:1900$i" >/dev/null
  done
fi
ctl add frontend demo --secret "$FRONTEND_SECRET" >/dev/null
sleep 2
ctl show backends

Q="name=Demo+Meeting&meetingID=demo-1&attendeePW=ap&moderatorPW=mp&record=true"
SUM=$(printf '%s' "create${Q}${FRONTEND_SECRET}" | sha256sum | cut -d' ' -f1)
J="fullName=Alice&meetingID=demo-1&password=mp"
JSUM=$(printf '%s' "join${J}${FRONTEND_SECRET}" | sha256sum | cut -d' ' -f1)
E="meetingID=demo-1&password=mp"
ESUM=$(printf '%s' "end${E}${FRONTEND_SECRET}" | sha256sum | cut -d' ' -f1)
RSUM=$(printf '%s' "getRecordings${FRONTEND_SECRET}" | sha256sum | cut -d' ' -f1)
cat <<EOT

Conclave demo is running (logs in $DIR).
  BBB API (any peer):   http://127.0.0.1:42353/bigbluebutton/api  (peers on :42353 :42363 :42373)
  Frontend secret:      $FRONTEND_SECRET   (multi-tenant route: /bbb/demo/bigbluebutton/api)
  Peer TLS:             CA and peer certificates in $TLS (Raft and peer calls need them)

Create a meeting on peer 1, then join it through peer 2:
  curl -s 'http://127.0.0.1:42353/bigbluebutton/api/create?${Q}&checksum=${SUM}'
  curl -si 'http://127.0.0.1:42363/bigbluebutton/api/join?${J}&checksum=${JSUM}' | grep -i location

End it (fakebbb publishes a recording at once); its agent ships it to $STORE,
and getRecordings then gives a playback URL on the peer you ask, which plays on every peer:
  curl -s 'http://127.0.0.1:42353/bigbluebutton/api/end?${E}&checksum=${ESUM}'
  curl -s 'http://127.0.0.1:42373/bigbluebutton/api/getRecordings?checksum=${RSUM}' | grep -o '<url>[^<]*'

Operate it:
  $BIN/conclavectl show backends
  $BIN/conclavectl show meetings
  $BIN/conclavectl disable backend 127.0.0.1:19001

Press Ctrl-C to stop.
EOT
wait
