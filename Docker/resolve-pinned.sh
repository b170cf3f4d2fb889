#!/bin/sh
# Resolves the package's dependencies at exactly the versions of a list ("identity version" per line, # comments), as
# the image build does (Docker/Dockerfile), and fails if the resolved graph differs from the list: a version other
# than the listed one, or a package the list does not name (a new transitive dependency would float otherwise).
#   sh Docker/resolve-pinned.sh Docker/dependency-versions        (from the package root)
set -eu
list=$1
pins=$(grep -v -e '^#' -e '^[[:space:]]*$' "$list")
# A first resolution makes the graph known (`resolve <package> --version` needs it), then each package is pinned.
swift package resolve
echo "$pins" | while read -r identity version; do
    swift package resolve "$identity" --version "$version"
done
echo "$pins" | while read -r identity version; do
    grep -A5 "\"identity\" : \"$identity\"" Package.resolved | grep -q "\"version\" : \"$version\"" || {
        echo "error: $identity did not resolve to $version (Package.resolved):" >&2
        grep -A5 "\"identity\" : \"$identity\"" Package.resolved >&2 || echo "  (not in the graph)" >&2
        exit 1
    }
done
resolved=$(grep -c '"identity"' Package.resolved)
listed=$(echo "$pins" | wc -l)
if [ "$resolved" -ne "$listed" ]; then
    echo "error: the graph has $resolved packages, $list names $listed; pin every package:" >&2
    grep '"identity"' Package.resolved >&2
    exit 1
fi
echo "resolved the $listed packages of $list at their listed versions"
