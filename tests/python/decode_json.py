#!/usr/bin/env python3
"""Decode a subunit v2 stream with the reference implementation, as JSON lines.

Usage: decode_json.py [FILE]          print FILE's events (standard input
                                      when FILE is absent or "-")
       decode_json.py --each FILE...  write each FILE's events to FILE.jsonl
                                      (one Python start-up for many streams)

Reads the stream with python-subunit's ``subunit.v2.ByteStreamToStreamResult``
(non-subunit bytes become ``stdout`` file events, as ``subunit2*`` tools do)
and prints one JSON object per event, every key always present:

    status        "exists" .. "xfail", or null
    test_id       string or null
    route_code    string or null
    timestamp     "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, microseconds), or null
    runnable      bool
    tags          sorted list of strings ([] when the event has none)
    mime_type     string or null
    file_name     string or null
    file_content  base64 of the chunk's bytes, or null
    eof           bool

The reference cuts non-subunit text into chunks at timing-dependent places
(whatever arrived within 1 microsecond), so consecutive text events (file
``stdout`` and nothing else set) are merged into one here; Proctor's tests
merge the same way before comparing.
"""

import base64
import json
import sys

from subunit.v2 import ByteStreamToStreamResult


def timestamp_text(timestamp):
    if timestamp is None:
        return None
    return timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Collector:
    """A StreamResult that records events as JSON-ready dicts."""

    def __init__(self):
        self.events = []

    def status(
        self,
        test_id=None,
        test_status=None,
        test_tags=None,
        runnable=True,
        file_name=None,
        file_bytes=None,
        eof=False,
        mime_type=None,
        route_code=None,
        timestamp=None,
    ):
        content = None if file_bytes is None else bytes(file_bytes)
        event = {
            "status": test_status,
            "test_id": test_id,
            "route_code": route_code,
            "timestamp": timestamp_text(timestamp),
            "runnable": bool(runnable),
            "tags": sorted(test_tags or ()),
            "mime_type": mime_type,
            "file_name": file_name,
            "file_content": content,
            "eof": bool(eof),
        }
        if self.events and is_text(self.events[-1]) and is_text(event):
            self.events[-1]["file_content"] += content
        else:
            self.events.append(event)


def is_text(event):
    """Whether an event is a chunk of non-subunit text (or looks exactly like one)."""
    return (
        event["file_name"] == "stdout"
        and event["status"] is None
        and event["test_id"] is None
        and event["route_code"] is None
        and event["timestamp"] is None
        and event["runnable"]
        and not event["tags"]
        and event["mime_type"] is None
        and not event["eof"]
    )


def decode(source):
    collector = Collector()
    ByteStreamToStreamResult(source, non_subunit_name="stdout").run(collector)
    return collector.events


def write_events(events, out):
    for event in events:
        if event["file_content"] is not None:
            event["file_content"] = base64.b64encode(event["file_content"]).decode("ascii")
        out.write(json.dumps(event, sort_keys=True) + "\n")


def main(argv):
    if len(argv) > 2 and argv[1] == "--each":
        for path in argv[2:]:
            with open(path, "rb") as source:
                events = decode(source)
            with open(path + ".jsonl", "w", encoding="utf-8") as out:
                write_events(events, out)
    elif len(argv) > 2:
        sys.exit(__doc__)
    elif len(argv) == 2 and argv[1] != "-":
        with open(argv[1], "rb") as source:
            write_events(decode(source), sys.stdout)
    else:
        write_events(decode(sys.stdin.buffer), sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
