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

Usage: tun-decap.py [TUN-NAME]   (default ipip0; run as root inside the real
server's network namespace; then `ip link set TUN-NAME up` and disable
rp_filter on it, since the client is not routed through it).
"""
import fcntl
import os
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPIP = 4


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "ipip0"
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
    print(f"tun-decap: decapsulating IPIP into {name}", flush=True)
    while True:
        packet = raw.recv(65535)
        if len(packet) < 20:
            continue
        outer_len = (packet[0] & 0x0F) * 4
        inner = packet[outer_len:]
        if len(inner) >= 20 and inner[0] >> 4 == 4:
            os.write(tun, inner)


if __name__ == "__main__":
    main()
