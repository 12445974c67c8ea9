# Proctor's pytest plugin, run as `python -c <this file> MODE IDFILE [pytest arguments]` so that nothing has to be
# installed where the tests run (a lab agent, an ssh host): pytest.main() gets the plugin object.
#
# MODE `collect`: prints one JSON line per collected item, {"id", "group"}, and one per collection error,
# {"id": <the file's node id>, "error": <the report>}; `group` is the module's node id when a test of the module
# uses a fixture of class, module or package scope, so the module's tests stay in one process.
# MODE `run`: runs the node ids listed in IDFILE and writes each test's events to standard output as subunit v2
# (written here, so the project needs no python-subunit): inprogress, then the final status with the captured
# output and the failure's long representation as attachments. Anything else printed to standard output goes to
# standard error, so the stream stays pure.
import json
import os
import struct
import sys
import time
import zlib

import pytest

MODE = sys.argv[1]
IDFILE = sys.argv[2]
ARGS = sys.argv[3:]

# Subunit v2 status codes (2 is inprogress).
INPROGRESS, SUCCESS, SKIP, FAIL, XFAIL = 2, 3, 5, 6, 7


def number(value):
    if value < 0x40:
        return struct.pack(">B", value)
    if value < 0x4000:
        return struct.pack(">H", value | 0x4000)
    if value < 0x400000:
        return struct.pack(">I", value | 0x800000)[1:]
    return struct.pack(">I", value | 0xC0000000)


def string(text):
    data = text.encode("utf-8", "replace").replace(b"\0", b"\\0")
    return number(len(data)) + data


def packet(test_id, status=0, name=None, data=b"", eof=False, mime=None):
    flags = 0x2000 | 0x0800 | 0x0200 | 0x0100 | status
    now = time.time()
    body = struct.pack(">I", int(now)) + number(int((now % 1) * 1e6) * 1000)
    body += string(test_id)
    if mime is not None:
        flags |= 0x0020
        body += string(mime)
    if name is not None:
        flags |= 0x0040
        body += string(name) + number(len(data)) + data
    if eof:
        flags |= 0x0010
    # The length counts the whole packet, its own bytes included: the shortest form that can hold that.
    rest = 1 + 2 + len(body) + 4
    total = rest + 1 if rest + 1 <= 0x3F else rest + 2 if rest + 2 <= 0x3FFF else rest + 3
    head = b"\xb3" + struct.pack(">H", flags) + number(total)
    return head + body + struct.pack(">I", zlib.crc32(head + body) & 0xFFFFFFFF)


def text_file(test_id, name, text):
    """A text attachment, in chunks well under a packet's 4 MiB."""
    data = text.encode("utf-8", "replace")
    chunk = 1 << 20
    pieces = [data[at:at + chunk] for at in range(0, len(data), chunk)] or [b""]
    return [packet(test_id, 0, name, piece, at == len(pieces) - 1, "text/plain;charset=utf8")
            for at, piece in enumerate(pieces)]


class Collector:
    def __init__(self):
        self.lines = []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_collectreport(self, report):
        yield
        if report.failed:
            self.lines.append({"id": report.nodeid, "error": str(report.longrepr)})

    def pytest_collection_modifyitems(self, session, config, items):
        wide = set()
        for item in items:
            info = getattr(item, "_fixtureinfo", None)
            for definitions in getattr(info, "name2fixturedefs", {}).values():
                if any(getattr(d, "scope", "function") in ("class", "module", "package") for d in definitions):
                    wide.add(module_of(item))
        for item in items:
            module = module_of(item)
            self.lines.append({"id": item.nodeid, "group": module if module in wide else None})
        items[:] = []


def module_of(item):
    return item.nodeid.split("::", 1)[0]


class Reporter:
    """Reports each test once it has finished (setup, call and teardown): a failure in any phase fails it."""

    def __init__(self, out):
        self.out = out
        self.tests = {}

    def emit(self, packets):
        self.out.write(b"".join(packets))
        self.out.flush()

    def pytest_runtest_logstart(self, nodeid, location):
        self.tests[nodeid] = {"status": None, "tracebacks": [], "sections": [], "reason": None}
        self.emit([packet(nodeid, INPROGRESS)])

    def pytest_runtest_logreport(self, report):
        test = self.tests.setdefault(report.nodeid, {"status": None, "tracebacks": [], "sections": [],
                                                     "reason": None})
        xfail = hasattr(report, "wasxfail")
        status = None
        if report.failed:
            # A strict xfail that passed is reported failed by pytest itself, without `wasxfail`.
            status = FAIL
        elif report.when == "call":
            if xfail and report.skipped:
                status = XFAIL
            elif xfail:
                # A non-strict xfail that passed: pytest counts it apart ("xpassed"), never as a failure.
                status = SUCCESS
                test["xpass"] = True
            else:
                status = SKIP if report.skipped else SUCCESS
        elif report.skipped:
            status = XFAIL if xfail else SKIP
        expected = getattr(report, "wasxfail", "")
        if report.skipped and isinstance(report.longrepr, tuple):
            test["reason"] = report.longrepr[2]
        elif expected:
            test["reason"] = expected
        if test.get("xpass") and report.when == "call":
            test["reason"] = "XPASS: expected to fail" + (": " + expected if expected else "")
        if report.failed or status == XFAIL:
            if report.longrepr is not None:
                test["tracebacks"].append(str(report.longrepr))
        # Each phase's report carries the output captured so far: the last one has it all.
        test["sections"] = list(report.sections)
        if status is not None and (test["status"] is None or status == FAIL):
            test["status"] = status

    def pytest_runtest_logfinish(self, nodeid, location):
        test = self.tests.pop(nodeid, None) or {"status": None, "tracebacks": [], "sections": [], "reason": None}
        packets = []
        for name, text in test["sections"]:
            packets += text_file(nodeid, name, text)
        if test["tracebacks"]:
            packets += text_file(nodeid, "traceback", "\n".join(test["tracebacks"]))
        if test["reason"]:
            packets += text_file(nodeid, "reason", test["reason"])
        packets.append(packet(nodeid, test["status"] or SUCCESS))
        self.emit(packets)

    def pytest_collectreport(self, report):
        if report.failed:
            self.emit([packet(report.nodeid, INPROGRESS), *text_file(report.nodeid, "traceback",
                                                                     str(report.longrepr)),
                       packet(report.nodeid, FAIL)])


def main():
    with open(IDFILE, encoding="utf-8") as listed:
        ids = [line.rstrip("\n") for line in listed if line.strip()]
    if MODE == "collect":
        collector = Collector()
        code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
                            *ARGS, *ids], plugins=[collector])
        for line in collector.lines:
            print(json.dumps(line))
        sys.stdout.flush()
        # 5: no tests collected, which is a listing of nothing.
        return 0 if code in (0, 5) or collector.lines else code
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reporter = Reporter(out)
    code = pytest.main(["-p", "no:cacheprovider", "-q", "--continue-on-collection-errors", *ARGS, *ids],
                       plugins=[reporter])
    return 0 if code in (0, 1, 5) else code


sys.exit(main())
