#!/usr/bin/env bash
# The README's first command: rsinit's main job end to end on this machine, with nothing installed by hand.
#   1. installs what is missing (libmongoc/libbson 1.x, pkg-config, redis-server; as scripts/test.sh does) and builds;
#   2. starts the mongod double (uninitialised, --replSet steedos) and a throw-away redis-server on free loopback ports;
#   3. bootstraps the set with rsinit (progress lines), starts the bridge (rsinit tail) against that Redis;
#   4. inserts, updates and deletes a document in steedos.tasks through libmongoc and prints every message a Redis
#      subscriber receives (channel and payload) as it arrives; prints `rsinit status` and `rsinit doctor`;
#   5. stops everything it started (also on failure or Ctrl-C) and exits 0, or non-zero naming the step that failed.
# Options: --no-install (never call apt-get), --no-build (use the binaries already built), --bin-path DIR (where the
# binaries are; default: swift build's debug directory).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/packages.sh

install=1
build=1
bin_path=""
while [ $# -gt 0 ]; do
    case "$1" in
    --no-install) install=0 ;;
    --no-build) build=0 ;;
    --bin-path)
        [ $# -ge 2 ] || { echo "demo: error: --bin-path needs a directory" >&2; exit 2; }
        bin_path=$2
        shift
        ;;
    -h | --help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "demo: error: unknown option $1" >&2
        echo "demo: fix: use --no-install, --no-build or --bin-path DIR" >&2
        exit 2
        ;;
    esac
    shift
done

step="starting"
work_dir=$(mktemp -d)
pids=()
redis_pid_file="$work_dir/redis.pid"

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # The bridge first (SIGTERM: it finishes its batch and checkpoint), then the subscriber, the double and Redis.
    local pid
    for ((index = ${#pids[@]} - 1; index >= 0; index--)); do
        pid=${pids[$index]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -f "$redis_pid_file" ]; then
        pid=$(cat "$redis_pid_file")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        echo "demo: error: failed while $step (exit $status)" >&2
        for log in "$work_dir"/*.log; do
            [ -s "$log" ] || continue
            echo "--- $(basename "$log") (last lines)" >&2
            tail -n 15 "$log" >&2
        done
        echo "demo: fix: see the lines above; scripts/demo.sh --help lists the options" >&2
    fi
    rm -rf "$work_dir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$install" -eq 1 ]; then
    step="installing packages"
    ensure_packages "${rsinit_packages[@]}"
fi
for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null || { echo "demo: error: $tool not found (fix: drop --no-install)" >&2; exit 1; }
done

if [ "$build" -eq 1 ]; then
    step="building (swift build)"
    echo "==> swift build (a first build takes several minutes)"
    set +e
    swift build 2>&1 | tee "$work_dir/build.log" | grep --line-buffered -E "error:|Build complete|^\[[0-9]+/[0-9]+\]"
    build_status=${PIPESTATUS[0]}
    set -e
    [ "$build_status" -eq 0 ] || exit 1
fi
if [ -z "$bin_path" ]; then bin_path=$(swift build --show-bin-path); fi
for binary in rsinit mongod-double rsinit-demo-writes; do
    [ -x "$bin_path/$binary" ] || {
        echo "demo: error: $bin_path/$binary is missing (fix: run without --no-build, or pass --bin-path)" >&2
        exit 1
    }
done
started=$(date +%s%N)

step="starting redis-server"
# A port found free can be taken before redis binds it: retry, and check that the server answering is ours.
redis_port=""
for _ in 1 2 3 4 5; do
    candidate=$(free_port)
    rm -f "$redis_pid_file"
    redis-server --port "$candidate" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --dir "$work_dir" --pidfile "$redis_pid_file" --logfile "$work_dir/redis.log"
    for _ in $(seq 1 100); do
        [ -s "$redis_pid_file" ] && redis-cli -p "$candidate" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
    answering=$(redis-cli -p "$candidate" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')
    if [ -s "$redis_pid_file" ] && [ "$answering" = "$(cat "$redis_pid_file")" ]; then
        redis_port=$candidate
        break
    fi
done
[ -n "$redis_port" ] || { echo "demo: error: redis-server did not start on a free port" >&2; exit 1; }
redis_url="redis://127.0.0.1:$redis_port"
echo "==> redis-server on $redis_url"

step="starting the mongod double"
# Port 0: the double binds a free port itself and prints it ("mongod-double listening on 127.0.0.1:<port> …").
"$bin_path/mongod-double" --port 0 --scenario uninitialized --set-name steedos --noop-interval 2 \
    >"$work_dir/mongod-double.log" 2>&1 &
pids+=($!)
mongo_port=""
for _ in $(seq 1 200); do
    mongo_port=$(sed -n 's/^mongod-double listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work_dir/mongod-double.log")
    [ -n "$mongo_port" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.05
done
[ -n "$mongo_port" ] || { echo "demo: error: mongod-double did not start" >&2; exit 1; }
echo "==> $(head -n 1 "$work_dir/mongod-double.log")"

step="bootstrapping the replica set (rsinit)"
echo "==> rsinit --host 127.0.0.1 --port $mongo_port --allow-localhost-member"
"$bin_path/rsinit" --host 127.0.0.1 --port "$mongo_port" --allow-localhost-member --timeout 30s 2>&1

step="subscribing to Redis (redis-cli psubscribe)"
# redis-cli prints each element of a pub/sub message on its own line: pmessage, pattern, channel, payload.
(
    echo $BASHPID >"$work_dir/subscriber.pid"
    exec redis-cli -p "$redis_port" psubscribe 'steedos.*'
) 2>"$work_dir/subscriber.log" | (
    field=3 # the subscription's acknowledgement (psubscribe, pattern, count) is not a message
    while IFS= read -r line; do
        if [ "$line" = "pmessage" ]; then
            field=0
            continue
        fi
        field=$((field + 1))
        [ "$field" -eq 2 ] && channel=$line
        [ "$field" -eq 3 ] && printf 'message: %s  %s\n' "$channel" "$line"
    done
) | tee "$work_dir/messages.txt" &
pids+=($!)
for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$redis_port" pubsub numpat)" = "1" ] && break
    sleep 0.05
done
[ "$(redis-cli -p "$redis_port" pubsub numpat)" = "1" ]
pids+=("$(cat "$work_dir/subscriber.pid")")

step="starting the bridge (rsinit tail)"
position=$("$bin_path/rsinit" status --host 127.0.0.1 --port "$mongo_port" --json 2>/dev/null |
    sed -n 's/.*"lastWrite":"\([0-9]*\.[0-9]*\)".*/\1/p')
[ -n "$position" ] || { echo "demo: error: rsinit status reported no lastWrite" >&2; exit 1; }
echo "==> rsinit tail --host 127.0.0.1 --port $mongo_port --redis $redis_url --from $position"
"$bin_path/rsinit" tail --host 127.0.0.1 --port "$mongo_port" --redis "$redis_url" --from "$position" \
    >"$work_dir/tail.log" 2>&1 &
tail_pid=$!
pids+=("$tail_pid")

step="writing to steedos.tasks (insert, update, delete)"
"$bin_path/rsinit-demo-writes" --uri "mongodb://127.0.0.1:$mongo_port/?directConnection=true"

step="waiting for the subscriber to receive the 6 messages"
for _ in $(seq 1 200); do
    [ "$(wc -l <"$work_dir/messages.txt")" -ge 6 ] && break
    kill -0 "$tail_pid" 2>/dev/null || { echo "demo: error: rsinit tail exited" >&2; exit 1; }
    sleep 0.05
done
[ "$(wc -l <"$work_dir/messages.txt")" -ge 6 ]

step="reading the set's state (rsinit status)"
echo "==> rsinit status"
"$bin_path/rsinit" status --host 127.0.0.1 --port "$mongo_port"

step="checking the deployment (rsinit doctor --probe)"
echo "==> rsinit doctor --host 127.0.0.1 --port $mongo_port --redis $redis_url --allow-localhost-member --sample 1s --probe"
# Exit 10 means failures found: this throw-away Redis has no persistence, on purpose. Shown, not a demo failure.
doctor_status=0
"$bin_path/rsinit" doctor --host 127.0.0.1 --port "$mongo_port" --redis "$redis_url" --allow-localhost-member \
    --sample 1s --probe || doctor_status=$?
[ "$doctor_status" -eq 0 ] || [ "$doctor_status" -eq 10 ]

step="stopping"
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
echo "==> demo complete: 3 writes, $(wc -l <"$work_dir/messages.txt") messages received, ${elapsed_ms} ms after the build"
