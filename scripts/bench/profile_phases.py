#!/usr/bin/env python3
"""Attributes `perf script` samples of rsinit's threads to the bridge's phases (scripts/profile-bridge.sh).

Each sample goes to the first phase whose pattern a frame of its call stack matches, leaf first; the double's
(`mongod-double*`) and the subscriber's (`bench-sub`) threads are counted apart. Reads `perf script` on stdin."""
import collections
import re
import sys

PHASES = [
    ("document id lookup", r"OplogEntryV10documentID"),
    ("oplog entry fields (OplogEntry.init: BSON walk, op/ns strings)", r"OplogEntryV"),
    ("changed fields (keys)", r"BSONDocumentV4keys|BSONDocumentV7hasKeys"),
    ("mapping, rest (mapOperation, ChangeEvent)", r"OplogEventMapper"),
    ("batch from the reply (cursor.nextBatch to [BSONValue])", r"TailSession"),
    ("message JSON (RedisOplogFormat)", r"RedisOplogFormat"),
    ("PUBLISH encoding (channels, RESP)", r"EventCommandEncoder|RESP9RESPCodecO6append|RESPCodecO12appendDigits"),
    ("publisher, rest (send/confirm)", r"RedisEventPublisher"),
    ("reply BSON validation (Swift)", r"BSONValidator"),
    ("libmongoc/libbson (wire, reply)", r"mongoc_|bson_|libmongoc|libbson|MongoClient"),
    ("Redis replies (RESP decode, matching)", r"RESPFrameDecoder|RedisChannelHandler|RESPCodecO6decode|RESPCodecO11decode"),
    ("bridge loop, metrics, health", r"OplogBridge|BridgeMetrics|BridgeHealth"),
    ("NIO (socket writes/reads, event loop)", r"NIOPosix|NIOCore"),
    ("Swift concurrency, dispatch (task switches)", r"swift_task_|swift_job|swift::runJob|swift_continuation|_dispatch_|AsyncAlgorithms|Continuation|futex"),
]
compiled = [(name, re.compile(pattern)) for name, pattern in PHASES]

counts = collections.Counter()
threads = collections.Counter()
comm = None
stack = []


def flush():
    if comm is None:
        return
    if comm.startswith("mongod-double") or comm.startswith("bench-sub"):
        threads["(not rsinit) " + comm.split("-")[0]] += 1
        return
    threads["rsinit"] += 1
    for frame in stack:
        for name, pattern in compiled:
            if pattern.search(frame):
                counts[name] += 1
                return
    counts["other: " + (comm or "?") + (" kernel" if stack and "[kernel" in stack[0] else "")] += 1


for line in sys.stdin:
    if not line.strip():
        flush()
        comm, stack = None, []
    elif not line.startswith((" ", "\t")):
        comm = line.split()[0]
        # Thread names may hold a space; the pid/tid field follows the name.
        match = re.match(r"^(.*?)\s+\d+(/\d+)?\s", line)
        comm = match.group(1).strip() if match else comm
    else:
        stack.append(line.strip())
flush()

total = sum(threads.values())
rsinit = threads["rsinit"]
for name, count in sorted(threads.items(), key=lambda item: -item[1]):
    print(f"{count / total * 100:6.1f}% of samples  {name}")
print(f"rsinit's {rsinit} samples by phase:")
for name, count in counts.most_common():
    print(f"{count / rsinit * 100:6.1f}%  {name}")
