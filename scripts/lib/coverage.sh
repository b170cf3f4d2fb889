#!/usr/bin/env bash
# Per-module line coverage of the product modules, read from what `swift test --enable-code-coverage` left behind
# (the merged profdata beside `swift test --show-codecov-path`). Uses llvm-cov from the Swift toolchain.
#   scripts/lib/coverage.sh [swift build options such as --scratch-path .build-cov]
# Product modules: BSON, RESP, RSInitSupport, MongoCWrapper, RedisClient, RSInitCore and the rsinit executable (its
# lines count when the CLI tests run the binary, which writes its own profile into the same directory). Test support
# (RSInitTestUtils), the benchmarks and the demo's writer are not product code and are not counted.
set -euo pipefail
cd "$(dirname "$0")/../.."

toolchain_bin=$(dirname "$(readlink -f "$(command -v swift)")")
llvm_cov="$toolchain_bin/llvm-cov"
[ -x "$llvm_cov" ] || llvm_cov=$(command -v llvm-cov) || { echo "coverage: llvm-cov not found" >&2; exit 1; }

codecov_dir=$(dirname "$(swift test --show-codecov-path "$@")")
bin_dir=$(swift build --show-bin-path "$@")
profdata="$codecov_dir/default.profdata"
bundle="$bin_dir/rsinitPackageTests.xctest"
[ -f "$profdata" ] || { echo "coverage: no $profdata (run swift test --enable-code-coverage first)" >&2; exit 1; }
objects=("$bundle")
[ -x "$bin_dir/rsinit" ] && objects+=(-object "$bin_dir/rsinit")

summary=$("$llvm_cov" export -summary-only -instr-profile="$profdata" "${objects[@]}" \
    -ignore-filename-regex='/(\.build[^/]*|Tests|checkouts)/') || {
    echo "coverage: $llvm_cov could not read $profdata (llvm-cov must come from the toolchain that built it)" >&2
    exit 1
}
printf '%s' "$summary" | python3 -c '
import json, os, sys
root = os.getcwd() + "/Sources/"
modules = ["BSON", "RESP", "RSInitSupport", "MongoCWrapper", "RedisClient", "RSInitCore", "rsinit"]
totals = {m: [0, 0] for m in modules}
for entry in json.load(sys.stdin)["data"]:
    for file in entry["files"]:
        name = file["filename"]
        if not name.startswith(root):
            continue
        module = name[len(root):].split("/")[0]
        if module in totals:
            lines = file["summary"]["lines"]
            totals[module][0] += lines["covered"]
            totals[module][1] += lines["count"]
print("==> line coverage (product modules)")
covered = sum(c for c, _ in totals.values())
count = sum(n for _, n in totals.values())
for module in modules + ["total"]:
    c, n = (covered, count) if module == "total" else totals[module]
    share = 100.0 * c / n if n else 0.0
    print(f"    {module:<14} {c:>6} / {n:<6} lines  {share:5.1f} %")
'
