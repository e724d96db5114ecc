#!/usr/bin/env bash
# Runs the Autobahn|Testsuite client cases against the autobahn-client
# plugin through wsgate, on loopback, and checks the report against the
# expected results kept here.
#
#   tests/autobahn/run.sh [--full] [--wsgate BIN] [--plugin WASM] [--out DIR]
#
#   --full     cases 1.* to 10.*, 12.* and 13.*, the client offering
#              permessage-deflate (default: 1.* to 10.*, no extension)
#   --wsgate   the wsgate binary (default: $WSGATE, else target/debug/wsgate)
#   --plugin   autobahn-client.wasm (default: $WSGATE_PLUGIN_DIR/autobahn-client.wasm,
#              else target/wasm32-wasip2/plugin/autobahn-client.wasm)
#   --out      where the config, logs and reports go (default: target/autobahn/MODE)
#
# Without Python 2.7 (the suite needs it) the step prints a banner on
# stderr and is skipped with status 0, except under CI=true where it fails.
# AUTOBAHN_TIMEOUT bounds the client's run in seconds (default 1200; 2400
# with --full).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/tests/autobahn
MODE=1-10
CLIENT_FLAGS=()
WSGATE=${WSGATE:-$ROOT/target/debug/wsgate}
PLUGIN=${WSGATE_PLUGIN_DIR:-$ROOT/target/wasm32-wasip2/plugin}/autobahn-client.wasm
OUT=
while [ $# -gt 0 ]; do
    case $1 in
        --full) MODE=full CLIENT_FLAGS=(--deflate) ;;
        --wsgate) WSGATE=$2; shift ;;
        --plugin) PLUGIN=$2; shift ;;
        --out) OUT=$2; shift ;;
        *) echo "usage: $0 [--full] [--wsgate BIN] [--plugin WASM] [--out DIR]" >&2; exit 2 ;;
    esac
    shift
done
if [ "$MODE" = full ]; then
    CONFIG=$HERE/fuzzingserver-full.json EXPECTED=$HERE/expected-full.json LIMIT=${AUTOBAHN_TIMEOUT:-2400}
else
    CONFIG=$HERE/fuzzingserver.json EXPECTED=$HERE/expected-1-10.json LIMIT=${AUTOBAHN_TIMEOUT:-1200}
fi
OUT=${OUT:-$ROOT/target/autobahn/$MODE}
AGENT=wsgate

for f in "$WSGATE" "$PLUGIN"; do
    [ -f "$f" ] || { echo "autobahn: $f is missing (make conformance builds it)" >&2; exit 1; }
done

# --- Python 2.7 and the suite ---------------------------------------------
t0=$(date +%s)
. "$HERE/lib.sh"
autobahn_python

# --- the fuzzingserver --------------------------------------------------------
mkdir -p "$OUT"
rm -rf "$OUT/reports" "$OUT/server.log" "$OUT/fuzzingserver.json"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
write_spec "$CONFIG" "$OUT/fuzzingserver.json" "$PORT" "$OUT/reports"
detach "$OUT/server.log" "${WSTEST[@]}" -m fuzzingserver -s "$OUT/fuzzingserver.json" -u 0
SERVER=$!
CLIENT=
stop_server() {
    [ -z "$CLIENT" ] || kill -TERM "$CLIENT" 2>/dev/null || true
    stop_group "$SERVER"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

up=
for _ in $(seq 300); do   # 30 s
    kill -0 "$SERVER" 2>/dev/null || break
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2).close()" 2>/dev/null; then
        up=1; break
    fi
    sleep 0.1
done
if [ -z "$up" ]; then
    echo "autobahn: the fuzzingserver did not start on 127.0.0.1:$PORT:" >&2
    tail -20 "$OUT/server.log" >&2
    exit 1
fi
t1=$(date +%s)
echo "autobahn: fuzzingserver on 127.0.0.1:$PORT (setup $((t1 - t0)) s), cases $(cases_of "$CONFIG")"

# --- the client -------------------------------------------------------------------
# In the background, so that a signal to this script runs its traps at once
# (`timeout` passes the TERM on to wsgate).
timeout --kill-after=10 "$LIMIT" "$WSGATE" run "$PLUGIN" --cache-dir "$ROOT/target/autobahn/wsgate-cache" \
    --allow-private --connects-per-second 0 --cpu-time 0 --run-time 0 \
    -- "${CLIENT_FLAGS[@]}" "ws://127.0.0.1:$PORT" "$AGENT" </dev/null &
CLIENT=$!
status=0
wait "$CLIENT" || status=$?
CLIENT=
t2=$(date +%s)
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "autobahn: the client ran longer than $LIMIT s (AUTOBAHN_TIMEOUT); reports in ${OUT#$ROOT/}" >&2
    exit 1
elif [ "$status" != 0 ]; then
    echo "autobahn: the client failed (exit $status); server log: ${OUT#$ROOT/}/server.log" >&2
    exit 1
fi
echo "autobahn: client run $((t2 - t1)) s; report: ${OUT#$ROOT/}/reports/index.html"
stop_server
trap - EXIT

# --- the verdict -------------------------------------------------------------------
exec python3 "$HERE/check.py" "$OUT/reports/index.json" "$EXPECTED" --agent "$AGENT"
