#!/usr/bin/env python3
"""Echo daemon for a real server of the rvs lab (stdlib only, one thread).

  echod.py --name rs1 [--tcp 9001] [--udp 9053]

TCP: every connection first gets the banner "<name>\\n", then everything the
client sends is echoed back; when the client half-closes, the rest is flushed
and the connection closed (like `socat ... SYSTEM:'echo rsN; exec cat'`, but
thousands of connections at once cost one process, not thousands).

UDP: every datagram is answered with "<name>\\n" + the datagram, sent *from
the address it was sent to* (IP_PKTINFO), so DR and TUN replies leave from
the VIP held on lo and NAT/FULLNAT replies from the real server's address.

--ipv6: the same on IPv6 only (:: with IPV6_V6ONLY, replies from the address
the datagram was sent to through IPV6_PKTINFO), next to an IPv4 instance on
the same ports (deploy/topology.sh up6 starts one per real server).
"""
import argparse
import errno
import resource
import selectors
import signal
import socket
import struct
import sys

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 65536), want), hard))


class Conn:
    __slots__ = ("sock", "out", "eof")

    def __init__(self, sock: socket.socket, banner: bytes):
        self.sock, self.out, self.eof = sock, bytearray(banner), False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--tcp", type=int, default=0, help="TCP banner+echo port (0 = none)")
    ap.add_argument("--udp", type=int, default=0, help="UDP echo port (0 = none)")
    ap.add_argument("--ipv6", action="store_true", help="listen on IPv6 (::, v6 only) instead of IPv4")
    args = ap.parse_args()
    raise_nofile()
    banner = (args.name + "\n").encode()
    sel = selectors.DefaultSelector()
    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET
    any_addr = "::" if args.ipv6 else "0.0.0.0"

    if args.tcp:
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if args.ipv6:
            lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        lsock.bind((any_addr, args.tcp))
        lsock.listen(8192)
        lsock.setblocking(False)
        sel.register(lsock, selectors.EVENT_READ, "listen")
    if args.udp:
        usock = socket.socket(family, socket.SOCK_DGRAM)
        usock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if args.ipv6:
            usock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            usock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        else:
            usock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        usock.bind((any_addr, args.udp))
        usock.setblocking(False)
        sel.register(usock, selectors.EVENT_READ, "udp")

    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def close(c: Conn):
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    def update(c: Conn):
        ev = 0 if c.eof else selectors.EVENT_READ
        if c.out:
            ev |= selectors.EVENT_WRITE
        if ev == 0:             # client done and everything sent
            close(c)
            return
        sel.modify(c.sock, ev, c)

    while running[0]:
        try:
            events = sel.select(1.0)
        except InterruptedError:
            continue
        for key, mask in events:
            data = key.data
            if data == "listen":
                for _ in range(256):
                    try:
                        s, _addr = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:          # EMFILE and friends: try later
                        if e.errno in (errno.EMFILE, errno.ENFILE):
                            print(f"echod: accept: {e}", file=sys.stderr, flush=True)
                        break
                    s.setblocking(False)
                    c = Conn(s, banner)
                    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            elif data == "udp":
                for _ in range(256):
                    try:
                        msg, anc, _flags, addr = key.fileobj.recvmsg(65535, socket.CMSG_SPACE(20))
                    except (BlockingIOError, InterruptedError):
                        break
                    if args.ipv6:
                        local6 = bytes(16)
                        for level, typ, cdata in anc:
                            if level == socket.IPPROTO_IPV6 and typ == IPV6_PKTINFO and len(cdata) >= 20:
                                local6 = cdata[:16]
                        cmsg = (socket.IPPROTO_IPV6, IPV6_PKTINFO, struct.pack("16sI", local6, 0))
                    else:
                        local = b"\0\0\0\0"
                        for level, typ, cdata in anc:
                            if level == socket.IPPROTO_IP and typ == IP_PKTINFO and len(cdata) >= 12:
                                _ifindex, _spec, local = struct.unpack("I4s4s", cdata[:12])
                        cmsg = (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("I4s4s", 0, local, b"\0\0\0\0"))
                    try:
                        key.fileobj.sendmsg([banner + msg], [cmsg], 0, addr)
                    except OSError as e:
                        print(f"echod: udp reply to {addr}: {e}", file=sys.stderr, flush=True)
            else:
                c: Conn = data
                try:
                    if mask & selectors.EVENT_READ:
                        chunk = c.sock.recv(65536)
                        if chunk:
                            c.out += chunk
                        else:
                            c.eof = True
                    if c.out:
                        n = c.sock.send(c.out)
                        del c.out[:n]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    close(c)
                    continue
                update(c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
