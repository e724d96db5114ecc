#!/usr/bin/env bash
# The demo of `make run`: a dual-stack testbed on loopback, and echo-client
# run through wsgate on a name that has both addresses.
#
#   examples/demo.sh BIN_DIR PLUGIN_DIR
set -euo pipefail

bin_dir=$(cd "${1:?usage: demo.sh BIN_DIR PLUGIN_DIR}" && pwd)
plugin_dir=$(cd "${2:?usage: demo.sh BIN_DIR PLUGIN_DIR}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-demo.XXXXXX")
testbed_pid=

cleanup() {
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

kill -TERM "$testbed_pid"
wait "$testbed_pid" || true
testbed_pid=
echo "testbed saw: $(tail -n 1 "$work/testbed.out")"
