#!/usr/bin/env python3
"""A TCP client that does its own handshake with scapy (the SYN proxy's view).

Run inside the client namespace with a Python that has scapy:

  ip netns exec rvs-client /usr/bin/python3 synproxy_client.py --src 192.0.2.7 \
      --dst-mac 02:00:00:00:00:01 --vip 10.0.0.101 --port 9100 --wscale 6 --segments 10

The source address is not the namespace's own: the director reaches it
through its default route (the client namespace's MAC), and the namespace's
kernel drops those frames without answering (not its address, no
forwarding), so no firewall is needed to keep its RSTs out of the way.

1. SYN with MSS 1460, window scale --wscale, SACK-permitted and timestamps.
2. The SYN-ACK's options are recorded.
3. The ACK of the SYN-ACK carries the first data (--first-bytes).
4. --segments more data segments follow, each once the previous data came
   back; every segment received is ACKed in order.
5. RST at the end (or as soon as the peer sent an RST).

Prints JSON: the SYN-ACK (seq, window, options), every segment received
(flags, seq, window, payload length and the first 16 payload bytes in hex),
all the payload bytes received (hex), the bytes sent (hex), whether an RST
arrived.
"""
import argparse
import json
import os
import queue
import random
import sys
import time

from scapy.all import AsyncSniffer, Ether, IP, TCP, Raw, conf  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--wscale", type=int, default=6)
    ap.add_argument("--first-bytes", type=int, default=1000)
    ap.add_argument("--segments", type=int, default=10)
    ap.add_argument("--segment-bytes", type=int, default=1000)
    ap.add_argument("--expect-banner", type=int, default=4, help="bytes the server sends first")
    ap.add_argument("--timeout", type=float, default=10)
    a = ap.parse_args()
    conf.verb = 0

    sport = random.randrange(20000, 60000)
    isn = random.getrandbits(32)
    rx: "queue.Queue" = queue.Queue()
    started = queue.Queue()
    sniffer = AsyncSniffer(
        iface=a.iface, store=False, prn=rx.put, started_callback=lambda: started.put(True),
        filter=f"tcp and src host {a.vip} and src port {a.port} and dst host {a.src} and dst port {sport}")
    sniffer.start()
    started.get(timeout=10)
    sock = conf.L2socket(iface=a.iface)
    base = Ether(dst=a.dst_mac) / IP(src=a.src, dst=a.vip)
    out = {"sport": sport, "segments": [], "rst": False, "sent": "", "received": ""}

    def send(flags: str, seq: int, ack: int, payload: bytes = b"", options=None):
        t = TCP(sport=sport, dport=a.port, flags=flags, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
                window=65535, options=options or [])
        sock.send(base / t / Raw(payload) if payload else base / t)

    def next_segment(deadline: float):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                p = rx.get(timeout=left)
            except queue.Empty:
                return None
            if TCP in p:
                return p

    send("S", isn, 0, options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (12345, 0)),
                               ("WScale", a.wscale), ("NOP", None)])
    deadline = time.monotonic() + a.timeout
    synack = None
    while synack is None:
        p = next_segment(deadline)
        if p is None:
            break
        if p[TCP].flags & 0x04:
            out["rst"] = True
            break
        if p[TCP].flags & 0x12 == 0x12:
            synack = p
    if synack is None:
        out["error"] = "no SYN-ACK" if not out["rst"] else "RST instead of a SYN-ACK"
        print(json.dumps(out))
        return 0
    t = synack[TCP]
    out["synack"] = {"seq": t.seq, "ack": t.ack, "window": t.window,
                     "options": [[k, v if isinstance(v, (int, list, tuple)) else
                                  (v.hex() if isinstance(v, bytes) else str(v))] for k, v in t.options]}
    rcv_nxt = (t.seq + 1) & 0xFFFFFFFF
    snd_nxt = isn + 1
    sent = b""
    received = b""

    def pump(until_len: int, deadline: float) -> bool:
        """Receive (and ACK in order) until `until_len` bytes have arrived."""
        nonlocal rcv_nxt, received
        while len(received) < until_len:
            p = next_segment(deadline)
            if p is None:
                return False
            tt = p[TCP]
            payload = bytes(tt.payload) if tt.payload else b""
            # Ethernet padding on short frames is not TCP payload.
            payload = payload[:max(0, p[IP].len - p[IP].ihl * 4 - tt.dataofs * 4)]
            out["segments"].append({"flags": str(tt.flags), "seq": tt.seq, "window": tt.window,
                                    "len": len(payload), "head": payload[:16].hex()})
            if tt.flags & 0x04:
                out["rst"] = True
                return False
            if payload and tt.seq == rcv_nxt:
                received += payload
                rcv_nxt = (rcv_nxt + len(payload)) & 0xFFFFFFFF
                send("A", snd_nxt, rcv_nxt)
            elif payload:
                send("A", snd_nxt, rcv_nxt)         # out of order / again: duplicate ACK
        return True

    first = os.urandom(a.first_bytes)
    send("PA", snd_nxt, rcv_nxt, first)         # the handshake's ACK carries data
    snd_nxt += len(first)
    sent += first
    ok = pump(a.expect_banner + len(sent), time.monotonic() + a.timeout)
    for _ in range(a.segments if ok else 0):
        chunk = os.urandom(a.segment_bytes)
        send("PA", snd_nxt, rcv_nxt, chunk)
        snd_nxt += len(chunk)
        sent += chunk
        if not pump(a.expect_banner + len(sent), time.monotonic() + a.timeout):
            break
    if not out["rst"]:
        send("R", snd_nxt, 0)
    out["sent"], out["received"] = sent.hex(), received.hex()
    sniffer.stop()
    sock.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
