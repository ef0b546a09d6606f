"""Long-lived TCP streams through a VIP, checked byte for byte (stdlib only).

Run in the client's namespace:
  python3 ecmp_streams.py VIP PORT COUNT FIRST_SPORT STATE_DIR

Opens COUNT connections from source ports FIRST_SPORT.. to VIP:PORT (an echo
service that first sends a one-line banner naming its real server), writes
STATE_DIR/ready (JSON: sport -> banner) once every banner arrived, then every
100 ms sends each stream the next 256 bytes of its own pattern and checks what
comes back against it. When STATE_DIR/stop appears it stops sending, waits up
to 40 s for every byte sent to come back, and writes STATE_DIR/report.json:
per stream the bytes sent and received intact and the first error (reset,
end of stream, wrong byte, connect failure), with its time.
"""
from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import sys
import time

CHUNK = 256
MAX_OUTSTANDING = 8192


def pattern(stream: int, offset: int, n: int) -> bytes:
    return bytes((k * 7 + stream * 13) % 251 for k in range(offset, offset + n))


class Stream:
    def __init__(self, i: int, sport: int, vip: str, port: int):
        self.i, self.sport = i, sport
        self.sent = self.received = 0
        self.banner: str | None = None
        self.buf = b""
        self.error: str | None = None
        self.error_at: float | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", sport))
        self.sock.settimeout(10)
        try:
            self.sock.connect((vip, port))
        except OSError as e:
            self.fail(f"connect: {e}")
        self.sock.setblocking(False)

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error, self.error_at = why, time.time()

    def send(self) -> None:
        if self.error or self.banner is None or self.sent - self.received >= MAX_OUTSTANDING:
            return
        data = pattern(self.i, self.sent, CHUNK)
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail(f"send: {e}")
            return
        self.sent += n

    def read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail(f"recv: {errno.errorcode.get(e.errno, e)}")
            return
        if not data:
            self.fail("end of stream")
            return
        if self.banner is None:
            self.buf += data
            if b"\n" not in self.buf:
                return
            line, data = self.buf.split(b"\n", 1)
            self.banner = line.decode(errors="replace")
        if data:
            if data != pattern(self.i, self.received, len(data)):
                self.fail(f"wrong bytes at offset {self.received}")
            self.received += len(data)


def main() -> None:
    vip, port, count, first, state = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    streams = [Stream(i, first + i, vip, port) for i in range(count)]
    sel = selectors.DefaultSelector()
    for s in streams:
        if s.error is None:
            sel.register(s.sock, selectors.EVENT_READ, s)
    ready_written = False
    stop_at: float | None = None
    next_send = time.monotonic()
    while True:
        now = time.monotonic()
        if stop_at is None and os.path.exists(os.path.join(state, "stop")):
            stop_at = now
        if stop_at is None and now >= next_send:
            for s in streams:
                s.send()
            next_send = now + 0.1
        for key, _ in sel.select(timeout=0.02):
            s = key.data
            s.read()
            if s.error:
                sel.unregister(s.sock)
        if not ready_written and all(s.banner is not None or s.error for s in streams):
            with open(os.path.join(state, "ready.tmp"), "w") as f:
                json.dump({str(s.sport): s.banner for s in streams}, f)
            os.rename(os.path.join(state, "ready.tmp"), os.path.join(state, "ready"))
            ready_written = True
        if stop_at is not None:
            pending = [s for s in streams if not s.error and s.received < s.sent]
            if not pending or now - stop_at > 40:
                break
    report = [{"sport": s.sport, "banner": s.banner, "sent": s.sent, "received": s.received,
               "error": s.error, "error_at": s.error_at} for s in streams]
    with open(os.path.join(state, "report.tmp"), "w") as f:
        json.dump(report, f)
    os.rename(os.path.join(state, "report.tmp"), os.path.join(state, "report.json"))
    for s in streams:
        s.sock.close()


if __name__ == "__main__":
    main()
