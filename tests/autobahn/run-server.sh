#!/usr/bin/env bash
# Runs the Autobahn|Testsuite server cases (its fuzzingclient) against the
# echo-server plugin behind `wsgate serve`, on loopback, and checks the
# report against the expected results kept here. run.sh is the client side.
#
#   tests/autobahn/run-server.sh [--full] [--wsgate BIN] [--plugin WASM] [--out DIR]
#
#   --full     cases 1.* to 10.*, 12.* and 13.* (the fuzzingclient offers
#              permessage-deflate in 12.* and 13.*) (default: 1.* to 10.*)
#   --wsgate   the wsgate binary (default: $WSGATE, else target/debug/wsgate)
#   --plugin   echo_server.wasm (default: $WSGATE_PLUGIN_DIR/echo_server.wasm,
#              else target/wasm32-wasip2/plugin/echo_server.wasm)
#   --out      where the config, logs and reports go (default: target/autobahn/server-MODE)
#
# Without Python 2.7 (the suite needs it) the step prints a banner on
# stderr and is skipped with status 0, except under CI=true where it fails.
# AUTOBAHN_TIMEOUT bounds the fuzzingclient's run in seconds (default 1200;
# 3600 with --full, which took 32 min on 2 busy cores, 12.* and 13.* 31 of
# them).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/autobahn
MODE=1-10
WSGATE=${WSGATE:-$ROOT/target/debug/wsgate}
PLUGIN=${WSGATE_PLUGIN_DIR:-$ROOT/target/wasm32-wasip2/plugin}/echo_server.wasm
OUT=
while [ $# -gt 0 ]; do
    case $1 in
        --full) MODE=full ;;
        --wsgate) WSGATE=$2; shift ;;
        --plugin) PLUGIN=$2; shift ;;
        --out) OUT=$2; shift ;;
        *) echo "usage: $0 [--full] [--wsgate BIN] [--plugin WASM] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
if [ "$MODE" = full ]; then
    CONFIG=$HERE/fuzzingclient-full.json EXPECTED=$HERE/expected-server-full.json LIMIT=${AUTOBAHN_TIMEOUT:-3600}
else
    CONFIG=$HERE/fuzzingclient.json EXPECTED=$HERE/expected-server-1-10.json LIMIT=${AUTOBAHN_TIMEOUT:-1200}
fi
OUT=${OUT:-$ROOT/target/autobahn/server-$MODE}
AGENT=wsgate-serve
# How long the gateway may take to listen: the first run compiles the
# plugin (a debug wsgate is slow at it); later ones read --cache-dir.
READY_LIMIT=180

for f in "$WSGATE" "$PLUGIN"; do
    [ -f "$f" ] || { echo "autobahn: $f is missing (make conformance builds it)" >&2; exit 1; }
done

# --- Python 2.7 and the suite ---------------------------------------------
t0=$(date +%s)
. "$HERE/lib.sh"
autobahn_python

# --- the gateway ----------------------------------------------------------------
# On a port of its own choosing, read back from its "listening on" line.
# 9.* sends messages of up to 16 MiB: echo-server accepts 17 MiB and needs
# about three times that (--memory). No bound on time: the fuzzingclient's
# run is bounded below, and some cases wait for the server on purpose.
mkdir -p "$OUT"
rm -rf "$OUT/reports" "$OUT/gateway.log" "$OUT/client.log" "$OUT/fuzzingclient.json"
detach "$OUT/gateway.log" "$WSGATE" serve "$PLUGIN" --listen 127.0.0.1:0 \
    --cache-dir "$ROOT/target/autobahn/wsgate-cache" \
    --memory 256 --cpu-time 0 --run-time 0 --idle-timeout 0
GATEWAY=$!
CLIENT=
stop_all() {
    [ -z "$CLIENT" ] || stop_group "$CLIENT"
    stop_group "$GATEWAY"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

PORT=
for _ in $(seq $((READY_LIMIT * 10))); do
    kill -0 "$GATEWAY" 2>/dev/null || break
    PORT=$(sed -n 's/^wsgate: listening on 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$OUT/gateway.log" | head -1)
    [ -z "$PORT" ] || break
    sleep 0.1
done
if [ -z "$PORT" ]; then
    if kill -0 "$GATEWAY" 2>/dev/null; then
        echo "autobahn: wsgate serve did not start listening within $READY_LIMIT s:" >&2
    else
        echo "autobahn: wsgate serve exited before listening:" >&2
    fi
    tail -20 "$OUT/gateway.log" >&2
    exit 1
fi
t1=$(date +%s)
echo "autobahn: wsgate serve ${PLUGIN##*/} on 127.0.0.1:$PORT (setup $((t1 - t0)) s), cases $(cases_of "$CONFIG")"

# --- the fuzzingclient -------------------------------------------------------------
# In the background, so that a signal to this script runs its traps at once.
write_spec "$CONFIG" "$OUT/fuzzingclient.json" "$PORT" "$OUT/reports"
detach "$OUT/client.log" timeout --kill-after=10 "$LIMIT" \
    "${WSTEST[@]}" -m fuzzingclient -s "$OUT/fuzzingclient.json"
CLIENT=$!
status=0
wait "$CLIENT" || status=$?
CLIENT=
t2=$(date +%s)
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "autobahn: the fuzzingclient ran longer than $LIMIT s (AUTOBAHN_TIMEOUT); logs in ${OUT#$ROOT/}" >&2
    exit 1
elif [ "$status" != 0 ] || [ ! -f "$OUT/reports/index.json" ]; then
    echo "autobahn: the fuzzingclient failed (exit $status):" >&2
    tail -20 "$OUT/client.log" >&2
    exit 1
fi
# A gateway that died on the way shows as cases missing from the report;
# say so first.
if ! kill -0 "$GATEWAY" 2>/dev/null; then
    echo "autobahn: wsgate serve exited during the run; its log: ${OUT#$ROOT/}/gateway.log" >&2
    tail -5 "$OUT/gateway.log" >&2
fi
echo "autobahn: fuzzingclient run $((t2 - t1)) s; report: ${OUT#$ROOT/}/reports/index.html"
stop_all
trap - EXIT

# --- the verdict -------------------------------------------------------------------
exec python3 "$HERE/check.py" "$OUT/reports/index.json" "$EXPECTED" --agent "$AGENT"
