#!/usr/bin/env bash
# RSInitCore's API documentation with the toolchain's own tools (no swift-docc-plugin): extracts the symbol graph
# from the debug build's module, then `docc convert`s Sources/RSInitCore/RSInitCore.docc with it.
#   scripts/docs.sh            -> .build/docs/RSInitCore.doccarchive
#   scripts/docs.sh preview    -> the same, served by `docc preview` on http://localhost:8080
set -euo pipefail
cd "$(dirname "$0")/.."

swift build --target RSInitCore
bin_dir=$(swift build --show-bin-path)
graphs=.build/docs/symbol-graphs
rm -rf "$graphs" && mkdir -p "$graphs"

# The C modules the Swift modules were built against: ours (libmongoc via pkg-config) and the packages' C targets.
clang_flags=(-Xcc -fmodule-map-file="$PWD/Sources/CLibMongoC/module.modulemap")
for flag in $(pkg-config --cflags-only-I libmongoc-1.0); do clang_flags+=(-Xcc "$flag"); done
for map in "$bin_dir"/*.build/module.modulemap; do clang_flags+=(-Xcc -fmodule-map-file="$map"); done
for include in .build/checkouts/*/Sources/*/include; do clang_flags+=(-Xcc -I"$PWD/$include"); done

swift symbolgraph-extract -module-name RSInitCore -target "$(uname -m)-unknown-linux-gnu" \
    -I "$bin_dir/Modules" "${clang_flags[@]}" -minimum-access-level public -output-dir "$graphs"

command=convert
[ "${1:-}" = "preview" ] && command=preview
docc "$command" Sources/RSInitCore/RSInitCore.docc --additional-symbol-graph-dir "$graphs" \
    --fallback-display-name RSInitCore --fallback-bundle-identifier rsinit.RSInitCore \
    --output-path .build/docs/RSInitCore.doccarchive
