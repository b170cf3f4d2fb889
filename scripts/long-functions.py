#!/usr/bin/env python3
"""Lists the product functions longer than a limit (default 60 lines): `scripts/long-functions.py [limit]`.

Counted: every `func`, `init`, `deinit` and `subscript` with a body in the shipped modules (BSON, RESP, RSInitSupport,
RedisClient, MongoCWrapper, RSInitCore, rsinit), from its declaration's first line to its closing brace, inclusive
(doc comments and attributes on lines of their own not counted). Braces are matched outside string literals and `//`
comments; a declaration without a body (a protocol requirement) is skipped. A report, not a gate.
"""
import glob
import re
import sys

MODULES = ["BSON", "RESP", "RSInitSupport", "RedisClient", "MongoCWrapper", "RSInitCore", "rsinit"]
MODIFIERS = (r"public|private|fileprivate|internal|package|open|static|class|final|override|mutating|nonmutating"
             r"|nonisolated|convenience|required|@inlinable|@usableFromInline|@discardableResult")
DECLARATION = re.compile(
    r"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:" + MODIFIERS + r")\s+)*(func\s+[^\s(<]+|init[?!]?|deinit|subscript)\b")


def code_only(lines):
    """The lines without string literals, `//` comments and multi-line string bodies (enough to match braces)."""
    result, in_multiline = [], False
    for line in lines:
        if '"""' in line:
            if line.count('"""') % 2 == 1:
                in_multiline = not in_multiline
            result.append("")
            continue
        if in_multiline:
            result.append("")
            continue
        line = re.sub(r'"(?:\\.|[^"\\])*"', '""', line)
        comment = line.find("//")
        result.append(line if comment < 0 else line[:comment])
    return result


def long_functions(limit):
    found = []
    for module in MODULES:
        for path in sorted(glob.glob(f"Sources/{module}/**/*.swift", recursive=True)):
            code = code_only(open(path, encoding="utf-8").read().split("\n"))
            for start, line in enumerate(code):
                match = DECLARATION.match(line)
                if not match:
                    continue
                depth, opened, end = 0, False, None
                for index in range(start, len(code)):
                    if index > start and not opened and DECLARATION.match(code[index]):
                        break  # no body: a requirement
                    for character in code[index]:
                        if character == "{":
                            depth, opened = depth + 1, True
                        elif character == "}":
                            depth -= 1
                    if opened and depth == 0:
                        end = index
                        break
                if end is not None and end - start + 1 > limit:
                    name = match.group(1).replace("func", "").strip()
                    found.append((end - start + 1, path, start + 1, name))
    return sorted(found, reverse=True)


if __name__ == "__main__":
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    rows = long_functions(limit)
    for length, path, line, name in rows:
        print(f"{length:4d} {path}:{line} {name}")
    print(f"{len(rows)} product functions over {limit} lines")
