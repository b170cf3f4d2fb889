#!/usr/bin/env bash
# Profiles rsinit's CPU per event in the bridge benchmark (issue 23): `perf` (Debian: linux-perf; for profiling
# only, never needed by the build, the tests or CI) samples one `rsinit-bench bridge-plain|bridge-ha` run from the
# moment the double is filled (RSINIT_BENCH_PAUSE) — rsinit's threads share the process with the double's
# (`mongod-double*`) and the subscriber's (`bench-sub`), which are reported apart — then counts libc malloc calls
# per thread in a second run with a uprobe, and the Swift runtime's reference-count calls per event in a third. Run as
# root (perf probe, perf record on another process).
#   scripts/profile-bridge.sh [plain|ha] [events]     # results in .build/profile-bridge/
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-plain}
events=${2:-1000000}
out=.build/profile-bridge
mkdir -p "$out"
bench=${RSINIT_BENCH:-.build/release/rsinit-bench}  # another build to compare: RSINIT_BENCH=path
[ -x "$bench" ] || swift build -c release --product rsinit-bench
wanted=false
[ "$mode" = ha ] && wanted=true

# Starts one run and returns once it is about to be measured (the double holds its events by then).
start_run() {
    rm -f "$out/pause"
    RSINIT_BENCH_PAUSE=$wanted "$bench" --runs 1 --entries "$events" "bridge-$mode" > "$out/bench-$mode.txt" 2> "$out/pause" &
    pid=$!
    until grep -q measuring "$out/pause" 2> /dev/null; do
        kill -0 "$pid" 2> /dev/null || { cat "$out/pause" "$out/bench-$mode.txt"; exit 1; }
        sleep 0.1
    done
    sleep 1.5
}

if [ "${PROFILE_MALLOCS_ONLY:-0}" != 1 ]; then
# 1. CPU samples (cpu-clock: this VM has no hardware counters), call graphs through frame pointers.
start_run
perf record -e cpu-clock -F 999 -g -o "$out/perf-$mode.data" -p "$pid" 2> "$out/record-$mode.log" || true
wait "$pid"
cat "$out/bench-$mode.txt"
perf report -i "$out/perf-$mode.data" --no-children -g none --sort comm --stdio 2> /dev/null \
    | grep '%' | grep -v '^#' > "$out/threads-$mode.txt" || true
echo "== samples by thread (mongod-double* and bench-sub are not rsinit)"
cat "$out/threads-$mode.txt"
# rsinit's threads: everything but the double's and the subscriber's.
comms=$(awk '{print $2}' "$out/threads-$mode.txt" | { grep -v -e '^mongod-double' -e '^bench-sub' || true; } | paste -sd, -)
echo "== rsinit's threads: top symbols (self)"
perf report -i "$out/perf-$mode.data" --no-children -g none --comms "$comms" --sort dso,sym --stdio 2> /dev/null \
    | grep '%' | grep -v '^#' | head -40 | cut -c1-200 | tee "$out/symbols-$mode.txt" || true
echo "== rsinit's samples by phase of the bridge"
perf script -i "$out/perf-$mode.data" -F comm,tid,ip,sym,dso 2> /dev/null \
    | python3 scripts/bench/profile_phases.py | tee "$out/phases-$mode.txt"
fi

# 2. malloc calls per event and thread (a uprobe on libc's malloc slows the run: a separate one).
libc=$(readlink -f "$(ldd "$bench" 2> /dev/null | awk '$1 == "libc.so.6" {print $3}')")
perf probe -q -d 'probe_libc:malloc' 2> /dev/null || true
perf probe -q -x "$libc" malloc
start_run
perf stat -e probe_libc:malloc --per-thread -p "$pid" -o "$out/mallocs-$mode.txt" 2> /dev/null || true
wait "$pid"
perf probe -q -d 'probe_libc:malloc'
echo "== malloc calls per event, by thread ($events events)"
awk -v events="$events" '/probe_libc:malloc/ { gsub(",", "", $2); printf "%-28s %10d  %.2f per event\n", $1, $2, $2 / events }' \
    "$out/mallocs-$mode.txt" | sort -k2 -n -r | head -20

# 3. Reference-count calls per event on rsinit's threads (uprobes on the Swift runtime; the run is slower, counts are
# exact): every copy of an event or an entry retains each reference-counted field, and the calls were a quarter of
# rsinit's samples (issue 23, session 27).
swiftcore=$(readlink -f "$(ldd "$bench" 2> /dev/null | awk '$1 == "libswiftCore.so" {print $3}')")
refcounts=(swift_retain swift_release swift_bridgeObjectRetain)
perf probe -q -d 'probe_libswiftCore:*' 2> /dev/null || true
for symbol in "${refcounts[@]}"; do perf probe -q -x "$swiftcore" "$symbol"; done
start_run
perf stat -e "$(printf 'probe_libswiftCore:%s,' "${refcounts[@]}" | sed 's/,$//')" --per-thread -p "$pid" \
    -o "$out/refcounts-$mode.txt" 2> /dev/null || true
wait "$pid"
perf probe -q -d 'probe_libswiftCore:*'
echo "== reference-count calls per event on rsinit's threads ($events events)"
awk -v events="$events" '/probe_libswiftCore/ && $1 !~ /^(mongod-double|bench-sub)/ {
        gsub(",", "", $2); calls[$3] += $2 }
    END { for (name in calls) printf "%-45s %.1f per event\n", name, calls[name] / events }' \
    "$out/refcounts-$mode.txt" | sort
