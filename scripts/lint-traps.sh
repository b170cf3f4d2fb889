#!/usr/bin/env bash
# Trap lint (issues 13, 18): no unchecked conversion, force unwrap, try!, precondition or fatalError in any product
# module (BSON, RESP, RSInitSupport, RedisClient, MongoCWrapper, RSInitCore, the CLI). Such a line traps the process
# on a value it did not expect; the bridge must skip and count, the CLI must print an error, instead.
#
# Flagged, outside comments:
#   - integer conversions `Int(`, `Int8/16/32/64(`, `UInt…(` not spelled `(exactly:`, `(clamping:`,
#     `(truncatingIfNeeded:`, `(bitPattern:`, `(littleEndian:`, `(bigEndian:` or `(ascii:`;
#   - force unwraps (`x!`, `)!`, `]!`), `try!`, `precondition`, `fatalError`, `unsafelyUnwrapped`.
# A reviewed line that cannot trap (a widening conversion, an index known to be in range) carries the marker
# `// trap-checked: <why>` at its end, or alone on the line above. Exit status 1 lists the offending lines.
set -euo pipefail
cd "$(dirname "$0")/.."

files=(
    Sources/BSON/*.swift
    Sources/RESP/*.swift
    Sources/RSInitSupport/*.swift
    Sources/RedisClient/*.swift
    Sources/MongoCWrapper/*.swift
    Sources/MongoCWrapper/LibMongoC/*.swift
    Sources/RSInitCore/*.swift
    Sources/RSInitCore/*/*.swift
    Sources/rsinit/*.swift
)
pattern='\b(U?Int(8|16|32|64)?)\((?!truncatingIfNeeded:|clamping:|exactly:|bitPattern:|littleEndian:|bigEndian:|ascii:)'
pattern+='|[A-Za-z0-9_)\]]!(?!=)|\btry!|\bprecondition(Failure)?\(|\bfatalError\(|unsafelyUnwrapped'
# A marker on the flagged line, or alone on the line just above it (when the line would get too long).
offending=$(grep -nP "$pattern" "${files[@]}" | grep -vP '^[^:]+:\d+:\s*//' | grep -v 'trap-checked:' |
    while IFS=: read -r file line rest; do
        sed -n "$((line - 1))p" "$file" | grep -qP '^\s*// trap-checked:' || echo "$file:$line:$rest"
    done || true)
if [ -n "$offending" ]; then
    echo "unchecked conversions or traps in code that parses outside data (fix, or mark a reviewed line with"
    echo "// trap-checked: <why>):"
    echo "$offending"
    exit 1
fi
echo "trap lint: ${#files[@]} file groups clean"
