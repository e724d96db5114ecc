#!/usr/bin/env bash
# The demo of `make run`: a dual-stack testbed on loopback, echo-client run
# through wsgate on a name that has both addresses, then the gateway
# (`wsgate serve` with ws-proxy) in front of the same testbed and
# echo-client connecting through it.
#
#   examples/demo.sh BIN_DIR PLUGIN_DIR
set -euo pipefail

bin_dir=$(cd "${1:?usage: demo.sh BIN_DIR PLUGIN_DIR}" && pwd)
plugin_dir=$(cd "${2:?usage: demo.sh BIN_DIR PLUGIN_DIR}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-demo.XXXXXX")
testbed_pid=
gateway_pid=

cleanup() {
    if [[ -n $gateway_pid ]] && kill -0 "$gateway_pid" 2>/dev/null; then
        kill -TERM "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
    fi
    if [[ -n $testbed_pid ]] && kill -0 "$testbed_pid" 2>/dev/null; then
        kill -TERM "$testbed_pid" 2>/dev/null || true
        wait "$testbed_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The testbed prints one JSON line when its listeners are up.
"$bin_dir/wsgate-testbed" --v6 ok --v4 ok --cert-dir "$work" >"$work/testbed.out" 2>"$work/testbed.err" &
testbed_pid=$!
for _ in $(seq 1 100); do
    [[ -s $work/testbed.out ]] && break
    kill -0 "$testbed_pid" 2>/dev/null || { cat "$work/testbed.err" >&2; exit 1; }
    sleep 0.1
done
ready=$(head -n 1 "$work/testbed.out")
port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' <<<"$ready")
[[ -n $port ]] || { echo "demo: the testbed did not start: $ready" >&2; exit 1; }

name=wsgate.test
echo "testbed: wss echo on [::1]:$port and 127.0.0.1:$port (both ok); $name resolves to both; its CA is ca.pem"
args=(--allow "$name:$port" --allow-private --resolve "$name:$port:[::1],127.0.0.1" --ca-cert ca.pem --verbose
    -- "wss://$name:$port/" hello "from a plugin" 🦀)
# The command as it would be typed in the testbed's directory.
shell_words() {
    local word words=()
    for word; do
        if [[ $word =~ ^[A-Za-z0-9_./:,@%+=-]+$ ]]; then words+=("$word"); else words+=("'$word'"); fi
    done
    echo "${words[*]}"
}
echo "\$ wsgate run echo-client.wasm $(shell_words "${args[@]}")"
(cd "$work" && "$bin_dir/wsgate" run "$plugin_dir/echo-client.wasm" "${args[@]}") 2>"$work/wsgate.err" || {
    cat "$work/wsgate.err" >&2
    exit 1
}
# The per-connect line: which address won, at which stage, how fast.
grep '^wsgate: connect' "$work/wsgate.err" | sed 's/^wsgate: /summary: /'
grep '^wsgate: start-up' "$work/wsgate.err" | sed 's/^wsgate: /timing:  /'

# The gateway: ws-proxy bridges each client session to the testbed, through
# the same race and policy.
serve_args=(--listen 127.0.0.1:0 --allow "$name:$port" --allow-private --resolve "$name:$port:[::1],127.0.0.1"
    --ca-cert ca.pem -- "wss://$name:$port/")
echo
echo "\$ wsgate serve ws_proxy.wasm $(shell_words "${serve_args[@]}") &"
(cd "$work" && exec "$bin_dir/wsgate" serve "$plugin_dir/ws_proxy.wasm" "${serve_args[@]}") 2>"$work/serve.err" &
gateway_pid=$!
gateway=
for _ in $(seq 1 300); do
    gateway=$(sed -n 's/^wsgate: listening on \([^ ]*\) .*/\1/p' "$work/serve.err")
    [[ -n $gateway ]] && break
    kill -0 "$gateway_pid" 2>/dev/null || { cat "$work/serve.err" >&2; exit 1; }
    sleep 0.1
done
[[ -n $gateway ]] || { echo "demo: the gateway did not start" >&2; cat "$work/serve.err" >&2; exit 1; }
sed 's/^wsgate: /gateway: /' "$work/serve.err"
client_args=(--allow "$gateway" --allow-private -- "ws://$gateway/" hello "through the gateway")
echo "\$ wsgate run echo-client.wasm $(shell_words "${client_args[@]}")"
"$bin_dir/wsgate" run "$plugin_dir/echo-client.wasm" "${client_args[@]}" 2>"$work/client.err" || {
    cat "$work/client.err" "$work/serve.err" >&2
    exit 1
}
# ws-proxy's line for the session: what passed each way.
for _ in $(seq 1 100); do
    grep -q '^ws-proxy:' "$work/serve.err" && break
    sleep 0.1
done
grep '^ws-proxy:' "$work/serve.err" || true
# The gateway's access line for the session, then its drain at SIGTERM.
kill -TERM "$gateway_pid"
wait "$gateway_pid" || true
gateway_pid=
grep -E '^wsgate: (access|drained)' "$work/serve.err" | sed 's/^wsgate: /gateway: /' || true

kill -TERM "$testbed_pid"
wait "$testbed_pid" || true
testbed_pid=
echo "testbed saw: $(tail -n 1 "$work/testbed.out")"
