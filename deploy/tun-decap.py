#!/usr/bin/env python3
"""Userspace IPIP decapsulator for a TUN-mode real server.

rvs's TUN mode wraps client packets in IPIP (IP protocol 4) towards the real
server. A real LVS real server decapsulates them with the kernel's `ipip`
module; the kernel on this machine has none, so this program does the same in
user space: it receives IPIP packets with a raw socket (the kernel reassembles
outer fragments first), strips the outer header and writes the inner packet,
unchanged, into a TUN device. The kernel then delivers it like any packet that
arrived on that device: to the VIP held on `lo`, so real TCP/UDP servers answer
the client directly.

With --ipv6 it decapsulates tunnels over IPv6 instead (what the `ip6_tunnel`
module does): IPv6-in-IPv6 (next header 41) and IPv4-in-IPv6 (next header 4),
as IPVS's TUN mode sends them to an IPv6 real server. An IPv6 raw socket hands
over the payload after the outer IPv6 header (and its extension headers), so
that payload is the inner packet.

Usage: tun-decap.py [--ipv6] [TUN-NAME]   (default ipip0; run as root inside
the real server's network namespace; then `ip link set TUN-NAME up` and
disable rp_filter on it, since the client is not routed through it).
"""
import fcntl
import os
import select
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPIP = 4
IPPROTO_IPV6 = 41


def inner_ok(inner: bytes, proto: int) -> bool:
    """A plausible inner packet for the outer protocol: IPv4 (>= 20 bytes)
    inside protocol 4, IPv6 (>= 40 bytes) inside next header 41."""
    if proto == IPPROTO_IPIP:
        return len(inner) >= 20 and inner[0] >> 4 == 4
    return len(inner) >= 40 and inner[0] >> 4 == 6


def main() -> None:
    args = sys.argv[1:]
    ipv6 = "--ipv6" in args
    args = [a for a in args if a != "--ipv6"]
    name = args[0] if args else "ipip0"
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    if ipv6:
        # IPv6 raw sockets return the payload only: it is the inner packet.
        socks = {socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto): (False, proto)
                 for proto in (IPPROTO_IPV6, IPPROTO_IPIP)}
        print(f"tun-decap: decapsulating IPv6-in-IPv6 and IPv4-in-IPv6 into {name}", flush=True)
    else:
        # IPv4 raw sockets return the outer header too: strip it.
        socks = {socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP): (True, IPPROTO_IPIP)}
        print(f"tun-decap: decapsulating IPIP into {name}", flush=True)
    while True:
        ready, _, _ = select.select(list(socks), [], [])
        for raw in ready:
            packet = raw.recv(65535)
            strip, proto = socks[raw]
            if strip:
                if len(packet) < 20:
                    continue
                packet = packet[(packet[0] & 0x0F) * 4:]
            if inner_ok(packet, proto):
                os.write(tun, packet)


if __name__ == "__main__":
    main()
