#!/usr/bin/env python3
"""Spoofed SYN flood for the e2e suite (hping3 `--rand-source -S` in Python).

Run inside the sending namespace:

  ip netns exec rvs-client python3 synflood.py --dst-mac 02:00:00:00:00:01 \
      --vip 10.0.0.101 --port 9001 --count 41000 --rate 10000

Every frame is a TCP SYN (with an MSS option, as a real stack sends) from a
random unicast source address outside 10.0.0.0/8 (so the lab's own clients
and their /24 never share a source prefix with the flood) and a random source
port and sequence number, sent on an AF_PACKET socket at a paced rate.
Checksums are computed here (stdlib only; nothing from rvs). Prints a JSON
summary: frames sent, seconds, achieved rate.
"""
import argparse
import json
import random
import socket
import struct
import sys
import time

from labutil import inet_checksum as checksum


def random_source(rng: random.Random) -> bytes:
    """A random unicast address: not 0/8, 10/8, 127/8, 169.254/16, multicast or above."""
    while True:
        a = rng.randrange(1, 224)
        if a in (10, 127):
            continue
        addr = struct.pack("!I", (a << 24) | rng.getrandbits(24))
        if addr[:2] == b"\xa9\xfe" or addr[3] in (0, 255):
            continue
        return addr


def syn_frame(eth: bytes, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ident: int) -> bytes:
    opts = struct.pack("!BBH", 2, 4, 1460)                     # MSS 1460
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + len(opts) // 4) << 4, 0x02, 64240, 0, 0) + opts
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ident, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return eth + ip + tcp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--dst-mac", required=True, help="the director's MAC")
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="frames per second")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()

    rng = random.Random(a.seed)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    src_mac = s.getsockname()[4]
    eth = bytes.fromhex(a.dst_mac.replace(":", "")) + src_mac + b"\x08\x00"
    dst = socket.inet_aton(a.vip)
    # Built before the clock starts, so the rate is the sending rate.
    frames = [syn_frame(eth, random_source(rng), dst, rng.randrange(1024, 65536), a.port,
                        rng.getrandbits(32), rng.getrandbits(16)) for _ in range(a.count)]
    burst = 32
    t0 = time.monotonic()
    sent = errors = 0
    for i in range(0, len(frames), burst):
        for f in frames[i:i + burst]:
            try:
                s.send(f)
                sent += 1
            except OSError:             # a full qdisc/ring: counted, not retried
                errors += 1
        ahead = t0 + (i + burst) / a.rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    secs = time.monotonic() - t0
    json.dump({"sent": sent, "send_errors": errors, "seconds": round(secs, 3),
               "rate_pps": round(sent / secs) if secs > 0 else 0}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
