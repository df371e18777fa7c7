#!/usr/bin/env bash
# Run oslo.messaging's own functional suite against the rpcmm zmq driver.
#
#   tests/oslo/run_functional.sh              # registries given in the URL: zmq://127.0.0.1:PORT/
#   tests/oslo/run_functional.sh --embedded   # zero configuration: zmq:// (the machine's embedded
#                                             # registry, on [rpcmm] embedded_registry_port)
#   extra arguments go to pytest (e.g. -k CallTestCase)
#   PYTHON=/path/to/venv/bin/python picks the interpreter (default: .venv/bin/python, python3)
#
# In the first form a registry server runs in its own process on a port the OS picks, and is
# stopped on exit. The suite imports oslo_messaging.tests, which monkey-patches the process
# with eventlet: this is also the driver's eventlet test.
set -euo pipefail
# The python that has rpcmm and oslo.messaging: $PYTHON, else the Makefile's .venv, else python3.
repo=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
# Absolute, since the suite runs from a scratch directory (not resolved: a venv's python is a link).
if [[ "$PYTHON" == */* ]]; then PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"; fi
mode=url
if [[ "${1:-}" == "--embedded" ]]; then mode=embedded; shift; fi

suite=$("$PYTHON" -c 'import os, oslo_messaging.tests.functional as f; print(os.path.join(os.path.dirname(f.__file__), "test_functional.py"))')
workdir=$(mktemp -d)
registry_pid=
cleanup() {
    if [[ -n "$registry_pid" ]]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
    rm -rf "$workdir"
}
trap cleanup EXIT

if [[ "$mode" == url ]]; then
    echo '{}' > "$workdir/seed.json"
    mkfifo "$workdir/ready"
    "$PYTHON" -m rpcmm registry --log-level warning --seed "$workdir/seed.json" \
        --endpoint 127.0.0.1:0 > "$workdir/ready" &
    registry_pid=$!
    exec 3< "$workdir/ready"
    line=
    # The registry prints "rpcmm registry: serving on HOST:PORT" once bound.
    if ! read -r -t 15 line <&3; then echo "registry did not start" >&2; exit 1; fi
    endpoint=${line##* }
    url="zmq://$endpoint/"
    cat <&3 > /dev/null &   # keep draining its stdout
else
    url="zmq://"
fi
echo "functional suite against $url" >&2
export RPC_TRANSPORT_URL="$url" NOTIFY_TRANSPORT_URL="$url"
# MetricsTestCase starts "python3 -m oslo_metrics": it must be the python that has it.
export PATH="$(dirname "$PYTHON"):$PATH"
cd "$workdir"
"$PYTHON" -m pytest -p no:cacheprovider -q -rs --timeout 120 "$suite" "$@"
