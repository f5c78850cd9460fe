#!/usr/bin/env python3
"""Open N keep-alive connections, send one GET on each, read each full response, then hold
them all idle so the caller can read the proxy's RSS.

usage: idle_conns.py PORT [N] [HOLD_SECONDS]

Prints progress to stderr and exactly one line "ready OK FAILED" to stdout once every
connection has either finished its request or failed. Then holds the connections until
stdin reaches EOF (the harness closes it) or HOLD_SECONDS pass - whichever is first - so the
process never outlives the harness. Exit status 0 if all N connections were established.

Non-blocking sockets and one selector: a thread or a blocking socket per connection would
cost more fds/memory in the client than we want next to the proxy under test.
"""
import os
import re
import selectors
import socket
import sys
import time

REQ = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
BATCH = 500            # connects in flight at once: stays well under somaxconn (4096)
SETUP_DEADLINE = 120   # seconds for all connections to finish their one request


class Conn:
    __slots__ = ("sock", "buf", "state")

    def __init__(self, sock):
        self.sock, self.buf, self.state = sock, b"", "connecting"


def response_complete(buf):
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    if not re.match(rb"HTTP/1\.[01] 2\d\d", head):
        raise ConnectionError(head[:40])
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    return len(body) >= (int(m.group(1)) if m else 0)


def main():
    port = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    hold = float(sys.argv[3]) if len(sys.argv) > 3 else 600
    sel = selectors.DefaultSelector()
    conns, ok, failed, pending, started = [], 0, 0, 0, 0
    deadline = time.monotonic() + SETUP_DEADLINE

    def fail(c):
        nonlocal failed, pending
        sel.unregister(c.sock)
        c.sock.close()
        c.state = "failed"
        failed += 1
        pending -= 1

    while (started < n or pending) and time.monotonic() < deadline:
        while started < n and pending < BATCH:
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            c = Conn(s)
            conns.append(c)
            sel.register(s, selectors.EVENT_WRITE, c)
            started += 1
            pending += 1
        for key, ev in sel.select(timeout=1):
            c = key.data
            try:
                if c.state == "connecting":
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise ConnectionError(os.strerror(err))
                    c.sock.send(REQ)  # 34 bytes into an empty send buffer: always whole
                    c.state = "reading"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                elif c.state == "reading":
                    data = c.sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed")
                    c.buf += data
                    if response_complete(c.buf):
                        c.state, c.buf = "idle", b""
                        sel.unregister(c.sock)
                        ok += 1
                        pending -= 1
                        if ok % 2000 == 0:
                            print(f"  idle_conns: {ok}/{n} idle", file=sys.stderr)
            except (OSError, ConnectionError):
                fail(c)
    failed += n - ok - failed  # anything left unfinished at the deadline
    print(f"ready {ok} {failed}", flush=True)

    # Hold: wait for EOF on stdin (harness done reading RSS) or the hold timeout.
    end = time.monotonic() + hold
    stdin_sel = selectors.DefaultSelector()
    stdin_sel.register(sys.stdin, selectors.EVENT_READ)
    while time.monotonic() < end:
        if stdin_sel.select(timeout=1) and not sys.stdin.buffer.read1(4096):
            break
    for c in conns:
        c.sock.close()
    sys.exit(0 if ok == n else 1)


if __name__ == "__main__":
    main()
