#!/usr/bin/env bash
# Benchmarks (never part of the tests): builds release binaries, prepares a Python venv with pymongo and redis-py
# for the comparison bridge, and runs rsinit-bench. Loopback only; needs redis-server/redis-benchmark (Debian:
# redis-server) and libmongoc-dev.
#   scripts/bench.sh                 # the bridge report of issue 6: (a) ceilings … (e) memory
#   scripts/bench.sh bootstrap map   # other rsinit-bench modes: bootstrap coldstart serve map fuzz tail bridge
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product rsinit
swift build -c release --product rsinit-bench
venv=.build/bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check pymongo==4.10.1 redis==5.2.1
fi
if [ "$#" -eq 0 ]; then set -- report; fi
exec .build/release/rsinit-bench --python "$venv/bin/python" "$@"
