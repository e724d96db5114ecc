# Shared by run.sh (the client cases, against the fuzzingserver) and
# run-server.sh (the server cases, from the fuzzingclient): sourced, not run.
# Needs ROOT and HERE set, and `set -euo pipefail` in the caller.

# autobahn_python: installs the suite (install.sh) and sets PY (python2.7),
# SITE (where the suite is) and WSTEST (below). Without Python 2.7 it
# prints a banner on stderr and exits the caller: with 0 (skipped), or 1
# under CI=true.
autobahn_python() {
    local status=0
    PY=$("$HERE/install.sh") || status=$?
    if [ "$status" = 3 ]; then
        {
            echo "################################################################"
            echo "##  AUTOBAHN CONFORMANCE NOT RUN: no Python 2.7 found.         ##"
            echo "##  The Autobahn|Testsuite needs python2.7 (pyenv install      ##"
            echo "##  2.7.18, or set PYTHON27=/path/to/python2.7).               ##"
            if [ "${CI:-}" = true ]; then
            echo "##  CI=true: this is a failure.                                ##"
            else
            echo "##  Skipped locally; under CI=true this step fails.            ##"
            fi
            echo "################################################################"
        } >&2
        [ "${CI:-}" = true ] && exit 1
        exit 0
    elif [ "$status" != 0 ]; then
        exit 1
    fi
    SITE=$ROOT/build/autobahn/py27
    export AUTOBAHN_SITE=$SITE
    WSTEST=("$PY" -u -c "$WSTEST_PY")
}

# write_spec SRC DST PORT OUTDIR: the suite's spec file SRC as DST, without
# its _comment, with `outdir` set and the port of `url` (fuzzingserver) or
# of every `servers[].url` (fuzzingclient) replaced by PORT.
write_spec() {
    python3 - "$@" <<'PY'
import json, re, sys
src, dst, port, outdir = sys.argv[1:]
spec = json.load(open(src))
spec.pop("_comment", None)
def with_port(url):
    return re.sub(r":\d+(?=/|$)", ":" + port, url, count=1)
if "url" in spec:
    spec["url"] = with_port(spec["url"])
for server in spec.get("servers", []):
    server["url"] = with_port(server["url"])
spec["outdir"] = outdir
json.dump(spec, open(dst, "w"), indent=2)
PY
}

# cases_of SPEC: the spec's case patterns, on one line.
cases_of() {
    python3 -c "import json, sys; print(' '.join(json.load(open(sys.argv[1]))['cases']))" "$1"
}

# WSTEST: the command line of the suite's wstest under $PY (set by
# autobahn_python). The zope namespace package needs its .pth processed:
# addsitedir. A listening wstest is bound to loopback (listenWS binds every
# interface otherwise). Should the script die without stopping it
# (SIGKILL), wstest stops itself once its parent is gone.
WSTEST_PY="
import os, site, sys
site.addsitedir(os.environ['AUTOBAHN_SITE'])
import autobahntestsuite.fuzzing as fuzzing
listen = fuzzing.listenWS
fuzzing.listenWS = lambda factory, ctx=None: listen(factory, ctx, interface='127.0.0.1')
from twisted.internet import reactor, task
parent = os.getppid()
def orphaned():
    if os.getppid() != parent:
        reactor.stop()
task.LoopingCall(orphaned).start(1.0)
from autobahntestsuite.wstest import run
sys.argv = ['wstest'] + sys.argv[1:]
sys.exit(run())
"

# detach LOG CMD...: starts CMD in the background in a session (and process
# group) of its own, output to LOG; $! is its pid and group. Whatever
# happens to this script, SIGKILL included, CMD gets SIGTERM when the
# script is gone (Linux's parent-death signal, set before CMD starts).
DETACH_PY='
import ctypes, os, signal, sys
os.setsid()
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except AttributeError:
    pass  # not Linux: the traps and timeouts still stop it
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)  # the script is already gone
os.execvp(sys.argv[2], sys.argv[2:])
'
detach() {
    local log=$1
    shift
    python3 -c "$DETACH_PY" "$$" "$@" >"$log" 2>&1 </dev/null &
}

# stop_group PGID: SIGTERM to the process group PGID, SIGKILL after 5 s.
stop_group() {
    kill -TERM -- "-$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL -- "-$1" 2>/dev/null || true
}
