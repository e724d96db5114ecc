#!/usr/bin/env bash
# Installs Autobahn|Testsuite (Python 2.7) into a project-local directory.
#
#   tests/autobahn/install.sh [DIR]      (default: build/autobahn/py27)
#
# Prints the python2.7 to use on stdout. Exits 3 when no Python 2.7 is found
# (the caller decides whether that is fatal); any other failure exits 1.
# A stamp file holding the pins makes a second run a no-op.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${1:-$ROOT/build/autobahn/py27}

# Known-good pins: autobahntestsuite 25.10.1 needs these old versions under
# Python 2.7 (newer ones dropped 2.7 or changed APIs it uses).
PINS=(
    autobahntestsuite==25.10.1 txaio==2.1.0 incremental==16.10.1
    pyOpenSSL==19.1.0 cryptography==3.3.2 Twisted==19.10.0
    zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1 Werkzeug==1.0.1
    klein==17.10.0 service_identity==18.1.0 unittest2==1.1.0 six==1.16.0
    'autobahn[twisted]==0.10.9'
)
# Optional: the C masking and UTF-8 validation that autobahn uses when it
# can import them (the suite's own Docker image has them). Pure Python
# unmasks every byte the client sends: with wsaccel 9.* takes ~5 s instead
# of ~40 s, and 12.*/13.* ~6x less. It is a source package that needs a C
# compiler; without one the suite runs as is, only slower.
ACCEL=wsaccel==0.6.2

find_python27() {
    if [ -n "${PYTHON27:-}" ]; then
        command -v "$PYTHON27" && return 0
        return 1
    fi
    local root
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for p in "$root"/versions/2.7*/bin/python2.7 "$(command -v python2.7 || true)" "$(command -v python2 || true)"; do
        # A pyenv shim exists even when no 2.7 is installed: ask it to run.
        if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

if ! PY=$(find_python27); then
    exit 3
fi

STAMP=$DIR/.installed
WANT="$("$PY" --version 2>&1) ${PINS[*]} $ACCEL"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "$PY"
    exit 0
fi

echo "autobahn: installing autobahntestsuite into ${DIR#$ROOT/} (once)" >&2
rm -rf "$DIR"
mkdir -p "$DIR"
start=$(date +%s)
if ! "$PY" -m pip install --disable-pip-version-check --no-warn-script-location \
        --quiet --target "$DIR" "${PINS[@]}" >&2; then
    echo "autobahn: pip install failed (see above)" >&2
    exit 1
fi
if ! "$PY" -m pip install --disable-pip-version-check --quiet --target "$DIR" "$ACCEL" >&2; then
    echo "autobahn: $ACCEL not installed (no C compiler?): the suite runs in pure Python, several times slower" >&2
fi
echo "$WANT" > "$STAMP"
echo "autobahn: installed in $(( $(date +%s) - start )) s" >&2
echo "$PY"
