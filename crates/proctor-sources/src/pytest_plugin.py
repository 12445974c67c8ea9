# Proctor's pytest plugin, run as `python -c <this file> MODE ARG [pytest arguments]` so that nothing has to be
# installed where the tests run (a lab agent, an ssh host): pytest.main() gets the plugin object.
#
# MODE `serve`, ARG a socket path: collects, prints one JSON line per collected item, {"id", "group"}, and one per
# collection error, {"id": <the file's node id>, "error": <the report>}; `group` is the module's node id when a
# test of the module uses a fixture of class, module or package scope, so the module's tests stay in one process.
# Then it prints {"serving": true}, closes standard output and serves batches at the socket until its standard
# input closes: each batch is a child forked from this collected session, so no batch imports the tests again.
# MODE `run`, ARG a file of node ids: runs those node ids and writes each test's events to standard output as
# subunit v2 (written here, so the project needs no python-subunit): inprogress, then the final status with the
# captured output and the failure's long representation as attachments. Anything else printed to standard output
# goes to standard error, so the stream stays pure. When $PROCTOR_PYTEST_SERVER names a serving socket that
# answers, the batch is handed to it with this process's standard streams, environment, directory and process
# group, and this process waits for the batch's exit status; otherwise (the socket is on another machine, or gone)
# it runs the batch itself. pytest is imported only after that, as the hand-over needs nothing of it.
import json
import os
import socket
import struct
import sys
import time
import zlib

MODE = sys.argv[1]
ARG = sys.argv[2]
ARGS = sys.argv[3:]
SERVER_VARIABLE = "PROCTOR_PYTEST_SERVER"


def send_message(connection, message, fds=()):
    data = json.dumps(message).encode()
    socket.send_fds(connection, [struct.pack(">I", len(data)) + data], list(fds))


def receive_message(connection, maxfds=0):
    """A message and the descriptors sent with it; None when the connection closed first."""
    data, fds, _, _ = socket.recv_fds(connection, 1 << 16, maxfds)
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        more = connection.recv(1 << 16)
        if not more:
            for fd in fds:
                os.close(fd)
            return None, []
        data += more
    return json.loads(data[4:4 + struct.unpack(">I", data[:4])[0]]), fds


def run_through_server(ids):
    """The batch's exit status when the server ran it; None when there is no server to run it."""
    path = os.environ.pop(SERVER_VARIABLE, "")
    if not path:
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        send_message(connection, {"ids": ids, "cwd": os.getcwd(), "env": dict(os.environ), "pid": os.getpid(),
                                  "group": os.getpgrp()}, (0, 1, 2))
        started, _ = receive_message(connection)
    except OSError:
        return None
    if started is None:
        return None
    try:
        ended, _ = receive_message(connection)
    except OSError:
        ended = None
    if ended is None:
        sys.stderr.write("proctor: the pytest server ended during the batch\n")
        return 70
    return ended["status"]


def read_ids(path):
    with open(path, encoding="utf-8") as listed:
        return [line.rstrip("\n") for line in listed if line.strip()]


if MODE == "run":
    STATUS = run_through_server(read_ids(ARG))
    if STATUS is not None and STATUS < 0:
        # The batch was killed by a signal (its memory limit): so is this process, for the supervisor to see.
        os.kill(os.getpid(), -STATUS)
    if STATUS is not None:
        sys.exit(STATUS)

import pytest  # noqa: E402 (after the hand-over, which needs nothing of pytest)

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


class Server:
    """Collects, prints the collection, then serves batches from the collected session (see the top)."""

    def __init__(self, listing, path, lifeline):
        self.listing = listing
        self.path = path
        self.lifeline = lifeline
        self.lines = []
        self.errors = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_collectreport(self, report):
        yield
        if report.failed:
            self.errors[report.nodeid] = str(report.longrepr)
            self.lines.append({"id": report.nodeid, "error": self.errors[report.nodeid]})

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

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        for line in self.lines:
            self.listing.write(json.dumps(line).encode() + b"\n")
        listener = self.listen()
        if listener is not None:
            self.listing.write(json.dumps({"serving": True}).encode() + b"\n")
        self.listing.close()
        if listener is not None:
            serve(session, listener, self.errors, self.lifeline)
        return True

    def listen(self):
        """The socket batches come to; None where children cannot be watched (no pidfd), so batches run alone."""
        if not hasattr(os, "pidfd_open") or not hasattr(socket, "send_fds"):
            return None
        try:
            os.close(os.pidfd_open(os.getpid()))
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.path)
            listener.listen(64)
        except OSError:
            return None
        return listener


def serve(session, listener, errors, lifeline):
    """Forks a child per batch until `lifeline` (standard input, kept from before pytest's capture) closes,
    then kills the children left and exits."""
    import selectors
    import signal

    watch = selectors.DefaultSelector()
    watch.register(listener, selectors.EVENT_READ, ("accept",))
    watch.register(lifeline, selectors.EVENT_READ, ("end",))
    children = {}
    while True:
        for key, _ in watch.select():
            what = key.data
            if what[0] == "end" and not os.read(key.fd, 1 << 12):
                for child in children:
                    os.kill(child, signal.SIGKILL)
                os._exit(0)
            elif what[0] == "accept":
                connection, _ = listener.accept()
                connection.settimeout(10)
                try:
                    request, fds = receive_message(connection, 3)
                except (OSError, ValueError):
                    request, fds = None, []
                if request is None or len(fds) != 3:
                    for fd in fds:
                        os.close(fd)
                    connection.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                child = os.fork()
                if child == 0:
                    run_batch(session, request, fds, errors)
                for fd in fds:
                    os.close(fd)
                children[child] = connection
                watch.register(os.pidfd_open(child), selectors.EVENT_READ, ("exited", child))
                watch.register(connection, selectors.EVENT_READ, ("client", child))
                try:
                    send_message(connection, {"started": child})
                except OSError:
                    pass
            elif what[0] == "client":
                # The batch's own process went (killed for a limit, or interrupted): so does the batch.
                try:
                    gone = not key.fileobj.recv(1 << 12)
                except OSError:
                    gone = True
                if gone:
                    os.kill(what[1], signal.SIGKILL)
                    watch.unregister(key.fileobj)
            elif what[0] == "exited":
                _, status = os.waitpid(what[1], 0)
                watch.unregister(key.fd)
                os.close(key.fd)
                connection = children.pop(what[1])
                try:
                    send_message(connection, {"status": os.waitstatus_to_exitcode(status)})
                except OSError:
                    pass
                try:
                    watch.unregister(connection)
                except KeyError:
                    pass
                connection.close()


def join_batch_process(request):
    """Puts this child where the batch's own process is: its process group, so that a signal to the batch
    reaches the child and whatever it starts, and its control groups, so that the batch's limits count it."""
    try:
        os.setpgid(0, request["group"])
    except OSError:
        pass
    try:
        with open("/proc/%d/cgroup" % request["pid"], encoding="utf-8") as groups:
            lines = groups.read().splitlines()
    except OSError:
        return
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        roots = ["/sys/fs/cgroup"] if hierarchy == "0" else ["/sys/fs/cgroup/" + name
                                                             for name in controllers.split(",") if name]
        for root in roots:
            try:
                with open(root + path + "/cgroup.procs", "w", encoding="utf-8") as procs:
                    procs.write(str(os.getpid()))
            except OSError:
                pass


def run_batch(session, request, fds, errors):
    """In a forked child: runs the batch's tests with the batch process's streams, environment and directory."""
    try:
        join_batch_process(request)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        capture = session.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.stop_global_capturing()
        os.dup2(fds[0], 0)
        os.dup2(fds[2], 1)
        os.dup2(fds[2], 2)
        out = os.fdopen(fds[1], "wb")
        os.close(fds[0])
        os.close(fds[2])
        if capture is not None:
            capture.start_global_capturing()
            capture.suspend_global_capture()
        reporter = Reporter(out)
        session.config.pluginmanager.register(reporter, "proctor-reporter")
        by_id = {item.nodeid: item for item in session.items}
        items = []
        for nodeid in request["ids"]:
            if nodeid in by_id:
                items.append(by_id[nodeid])
            else:
                reporter.collection_error(nodeid, errors.get(nodeid, "not collected: no such test in the "
                                                                     "collected session"))
        for at, item in enumerate(items):
            following = items[at + 1] if at + 1 < len(items) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=following)
        out.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        code = 0
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 3
    os._exit(code)


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
            self.collection_error(report.nodeid, str(report.longrepr))

    def collection_error(self, nodeid, text):
        self.emit([packet(nodeid, INPROGRESS), *text_file(nodeid, "traceback", text), packet(nodeid, FAIL)])


def main():
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if MODE == "serve":
        code = pytest.main(["-p", "no:cacheprovider", "-q", "--continue-on-collection-errors", *ARGS],
                           plugins=[Server(out, ARG, os.dup(0))])
        # Here only when it did not serve. 1: collection errors, which are listed; 5: no tests collected, which
        # is a listing of nothing.
        return 0 if code in (0, 1, 5) else code
    reporter = Reporter(out)
    code = pytest.main(["-p", "no:cacheprovider", "-q", "--continue-on-collection-errors", *ARGS, *read_ids(ARG)],
                       plugins=[reporter])
    return 0 if code in (0, 1, 5) else code


sys.exit(main())
