"""A straightforward oplog -> Redis bridge, written as a user would with pymongo and redis-py.

The comparison point of `rsinit-bench report` (issue 6): tail local.oplog.rs with a tailable await cursor, publish
each insert/update/delete on the collection channel and the `::<_id>` channel in the redis-oplog JSON format, and
store a checkpoint every 1,000 entries. Prints `<events> <seconds>` once `expected` events were published, timing
from the first entry to the last (start-up excluded).

Usage: python_bridge.py <mongodb-uri> <redis-url> <ts-seconds> <ts-increment> <expected-events>
"""

import json
import sys
import time

import pymongo
import redis
from bson.timestamp import Timestamp
from pymongo import CursorType


def main() -> None:
    mongo_uri, redis_url, seconds, increment, expected = sys.argv[1:6]
    expected = int(expected)
    client = pymongo.MongoClient(mongo_uri)
    publisher = redis.Redis.from_url(redis_url)
    oplog = client.local["oplog.rs"]
    cursor = oplog.find(
        {"ts": {"$gte": Timestamp(int(seconds), int(increment))}},
        cursor_type=CursorType.TAILABLE_AWAIT,
        oplog_replay=True,
    )
    codes = {"i": "i", "u": "u", "d": "r"}
    published = 0
    started = None
    for entry in cursor:
        if started is None:
            started = time.perf_counter()
        op = entry["op"]
        if op not in codes:
            continue
        document_id = entry["o2"]["_id"] if op == "u" else entry["o"]["_id"]
        fields = [] if op == "d" else list(entry["o"].get("$set", entry["o"]).keys())
        message = json.dumps({"e": codes[op], "d": {"_id": str(document_id)}, "f": fields})
        namespace = entry["ns"]
        publisher.publish(namespace, message)
        publisher.publish(f"{namespace}::{document_id}", message)
        published += 1
        if published % 1000 == 0:
            publisher.set("pybridge::checkpoint", f"{entry['ts'].time}.{entry['ts'].inc}")
        if published >= expected:
            break
    print(published, time.perf_counter() - started)


if __name__ == "__main__":
    main()
