#!/usr/bin/env python3
"""Tiny real-server HTTP daemon for the rvs lab.

Answers every GET/HEAD on each given port with a body of exactly "<name>\\n"
(e.g. "rs1\\n") so a client can tell which real server answered. Listens on
0.0.0.0, so it accepts both the real's own address (NAT) and the VIP on lo
(DR). HTTP/1.0: one request per connection, like `curl` sends.

`--bind ::` listens on IPv6 only (IPV6_V6ONLY), next to an IPv4 instance on
the same ports (deploy/topology.sh up6 starts one per real server).
"""
import argparse
import http.server
import signal
import socket
import sys
import threading


def make_handler(body: bytes):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "rvs-lab-httpd"
        sys_version = ""

        def do_GET(self):  # noqa: N802 (http.server naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, fmt, *args):  # quiet: the lab sends thousands
            pass

    return Handler


class Http6Server(http.server.ThreadingHTTPServer):
    """The threading HTTP server on IPv6 only, so an IPv4 instance can hold
    the same port on 0.0.0.0."""
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True, help="body to send, e.g. rs1")
    ap.add_argument("--ports", default="80,8080", help="comma-separated ports")
    ap.add_argument("--bind", default="0.0.0.0")
    args = ap.parse_args()

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    http.server.ThreadingHTTPServer.daemon_threads = True
    handler = make_handler((args.name + "\n").encode())
    server_class = Http6Server if ":" in args.bind else http.server.ThreadingHTTPServer
    server_class.allow_reuse_address = True
    server_class.daemon_threads = True
    servers = [server_class((args.bind, int(p)), handler)
               for p in args.ports.split(",") if p]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
