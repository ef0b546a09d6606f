#!/usr/bin/env python3
"""Writes the golden listings of control/tests/rvsadm.rs.

The text comes from ipvsadm.c's printf format strings (print_title,
print_service_entry, print_largenum, list_conn/print_conn, list_timeout, the
-S rules) and DPVS's -G listing, applied with Python's % operator (C printf
semantics) to the data the tests set up. It does not use rvsadm. rvs's
documented extensions: the version in the header, `FullNat`/`-b`, `-P ... -z`
lines and `-x`/`-y` in -S output (ipvsadm's -S leaves thresholds out).
Run it from this directory: python3 generate.py
"""

VER = "IP Virtual Server version %s (size=%d)\n" % ("@VERSION@", 131072)


def largenum(i, exact=False):
    if exact:
        n = len(str(i))
        return "%*d" % (9 if n <= 8 else n + 1, i)
    if i < 100000000:
        return "%9d" % i
    if i < 1000000000:
        return "%8dK" % (i // 1000)
    if i < 100000000000:
        return "%8dM" % (i // 1000000)
    if i < 100000000000000:
        return "%8dG" % (i // 1000000000)
    return "%8dT" % (i // 1000000000000)


def real(a, p, pn, fwd, sw, w, act=0, inact=0, traffic=(0,) * 5, rates=(0,) * 5, u=0, l=0, pc=0):
    return dict(a=a, p=p, pn=pn, fwd=fwd, sw=sw, w=w, act=act, inact=inact, traffic=traffic, rates=rates, u=u, l=l, pc=pc)


def svc(proto, vip, port, pname, sched, reals, flags="", pers=None, mask=None, traffic=(0,) * 5, rates=(0,) * 5, laddrs=()):
    return dict(proto=proto, opt="-t" if proto == "TCP" else "-u", vip=vip, port=port, pname=pname, sched=sched,
                flags=flags, pers=pers, mask=mask, traffic=traffic, rates=rates, laddrs=list(laddrs), reals=reals)


GOLDEN = [
    svc("TCP", "10.0.0.100", 80, "http", "rr", traffic=(1239, 56839, 0, 123461789, 0), rates=(12, 3400, 0, 2500000, 0), reals=[
        real("10.1.0.11", 80, "http", "Route", "-g", 1, 3, 12, (1234, 56789, 0, 123456789, 0), (11, 3000, 0, 2400000, 0)),
        real("10.1.0.12", 80, "http", "Route", "-g", 2, 0, 1, (5, 50, 0, 5000, 0), (1, 400, 0, 100000, 0))]),
    svc("TCP", "10.0.0.100", 443, "https", "sh", flags="sh-port", pers=300, mask="255.255.255.0",
        laddrs=["10.0.0.5", "10.0.0.6"], reals=[
            real("10.1.0.31", 443, "https", "Tunnel", "-i", 1, u=100, l=50, pc=4),
            real("10.1.0.32", 8443, "8443", "FullNat", "-b", 0)]),
    svc("UDP", "10.0.0.53", 53, "domain", "wlc", pers=600, reals=[real("10.1.0.21", 5353, "5353", "Masq", "-m", 3)]),
]

FIXTURE = [
    svc("TCP", "203.0.113.10", 80, "http", "wlc", pers=300, reals=[
        real("10.1.20.11", 80, "", "Route", "-g", 100), real("10.1.20.12", 80, "", "Route", "-g", 100),
        real("10.1.20.13", 80, "", "Route", "-g", 0)]),
    svc("TCP", "203.0.113.10", 443, "https", "wlc", pers=300, reals=[
        real("10.1.20.11", 443, "", "Route", "-g", 100), real("10.1.20.12", 443, "", "Route", "-g", 100)]),
    svc("TCP", "203.0.113.20", 3306, "", "wrr", reals=[
        real("10.1.21.21", 3306, "", "Masq", "-m", 3), real("10.1.21.22", 3307, "", "Masq", "-m", 1)]),
    svc("TCP", "203.0.113.25", 25, "", "lc", pers=1800, mask="255.255.255.0", reals=[
        real("10.1.23.41", 25, "", "Tunnel", "-i", 1), real("10.1.23.42", 25, "", "Tunnel", "-i", 1)]),
    svc("TCP", "203.0.113.30", 8080, "", "sh", flags="sh-fallback,sh-port", reals=[
        real("10.1.24.51", 8080, "", "Route", "-g", 1), real("10.1.24.52", 8080, "", "Route", "-g", 1)]),
    svc("UDP", "203.0.113.53", 53, "", "rr", reals=[
        real("10.1.22.31", 53, "", "Masq", "-m", 1), real("10.1.22.32", 53, "", "Masq", "-m", 1)]),
]


def title(fmt):
    if fmt == "stats":
        return "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
    if fmt == "rate":
        return "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
    if fmt == "thresholds":
        return "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
    if fmt == "pc":
        return "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn")
    if fmt == "tun":
        return ("Prot LocalAddress:Port Scheduler Flags\n"
                "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n")
    if fmt == "rule":
        return ""
    return ("Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def entry(s, fmt, numeric=True, exact=False):
    o = ""
    vname = "%s:%s" % (s["vip"], s["port"] if numeric else s["pname"])
    if fmt == "rule":
        svc_name = "%s %s" % (s["opt"], vname)
        o += "-A %s -s %s" % (svc_name, s["sched"])
        if s["pers"]:
            o += " -p %u" % s["pers"]
            if s["mask"]:
                o += " -M %s" % s["mask"]
        if s["flags"]:
            o += " -b %s" % s["flags"]
        o += "\n"
        for lip in s["laddrs"]:
            o += "-P %s -z %s\n" % (svc_name, lip)
    else:
        svc_name = ("%-4s %s" % (s["proto"], vname))[:33]
        if fmt == "stats":
            o += "%-33s" % svc_name + "".join(largenum(v, exact) for v in s["traffic"])
        elif fmt == "rate":
            o += "%-33s" % svc_name + "".join(largenum(v, exact) for v in s["rates"])
        else:
            o += "%s %s" % (svc_name, s["sched"])
            if s["flags"]:
                o += " (%s)" % s["flags"]
            if s["pers"]:
                o += " persistent %u" % s["pers"]
                if s["mask"]:
                    o += " mask %s" % s["mask"]
        o += "\n"
    for r in sorted(s["reals"], key=lambda r: (tuple(int(x) for x in r["a"].split(".")), r["p"])):
        dname = "%s:%s" % (r["a"], r["p"] if numeric else r["pn"])
        if fmt == "rule":
            o += "-a %s -r %s %s -w %d" % (svc_name, dname, r["sw"], r["w"])
            if r["sw"] == "-i":
                o += " --tun-type %s" % "ipip"
            if r["u"]:
                o += " -x %d" % r["u"]
            if r["l"]:
                o += " -y %d" % r["l"]
            o += "\n"
            continue
        dname = dname[:28]
        if fmt == "stats":
            o += "  -> %-28s" % dname + "".join(largenum(v, exact) for v in r["traffic"]) + "\n"
        elif fmt == "rate":
            o += "  -> %-28s %8d %8d %8d" % (dname, r["rates"][0], r["rates"][1], r["rates"][2])
            o += largenum(r["rates"][3], exact) + largenum(r["rates"][4], exact) + "\n"
        elif fmt == "thresholds":
            o += "  -> %-28s %-10u %-10u %-10u %-10u\n" % (dname, r["u"], r["l"], r["act"], r["inact"])
        elif fmt == "pc":
            o += "  -> %-28s %-9u %-11u %-10u %-10u\n" % (dname, r["w"], r["pc"], r["act"], r["inact"])
        elif fmt == "tun":
            ti = "ipip" if r["fwd"] == "Tunnel" else "n/a"
            o += "  -> %-28s %-7s %-13s %-6d %-10u %-10u\n" % (dname, r["fwd"], ti, r["w"], r["act"], r["inact"])
        else:
            o += "  -> %-28s %-7s %-6d %-10u %-10u\n" % (dname, r["fwd"], r["w"], r["act"], r["inact"])
    return o


def list_all(services, fmt, numeric=True, exact=False, version=VER):
    o = "" if fmt == "rule" else version
    o += title(fmt)
    for s in services:
        o += entry(s, fmt, numeric, exact)
    return o


def main():
    out = {
        "list_numeric": list_all(GOLDEN, "default"),
        "list_names": list_all(GOLDEN, "default", numeric=False),
        "list_stats": list_all(GOLDEN, "stats"),
        "list_stats_exact": list_all(GOLDEN, "stats", exact=True),
        "list_rate": list_all(GOLDEN, "rate"),
        "list_rate_exact": list_all(GOLDEN, "rate", exact=True),
        "list_thresholds": list_all(GOLDEN, "thresholds"),
        "list_persistent_conn": list_all(GOLDEN, "pc"),
        "list_tun_info": list_all(GOLDEN, "tun"),
        "save_numeric": list_all(GOLDEN, "rule"),
        "list_one_service": title("default") + entry(GOLDEN[1], "default"),
        "timeout": "Timeout (tcp tcpfin udp): %d %d %d\n" % (900, 120, 300),
        "fixture_list": list_all(FIXTURE, "default",
                                 version="IP Virtual Server version %s (size=%d)\n" % ("@VERSION@", 131072)),
    }
    conns = [("TCP", 899, "ESTABLISHED", "192.168.1.10:40000", "10.0.0.100:80", "10.1.0.11:80"),
             ("UDP", 65, "UDP", "192.168.1.11:5000", "10.0.0.53:53", "10.1.0.21:5353"),
             ("TCP", 300, "NONE", "192.168.1.0:0", "10.0.0.100:443", "10.1.0.31:443"),
             ("TCP", 100, "ESTABLISHED", "192.168.1.12:40001", "10.0.0.100:443", "10.1.0.32:8443")]
    c = "IPVS connection entries\n" + "pro expire %-11s %-18s %-18s %s\n" % ("state", "source", "virtual", "destination")
    cp = "IPVS connection entries\n" + "pro expire %-11s %-18s %-18s %-18s %-16s %s\n" % (
        "state", "source", "virtual", "destination", "pe name", "pe_data")
    for (p, e, st, cn, vn, dn) in conns:
        line = "%-3s %-6s %-11s %-18s %-18s %s\n" % (p, "%02d:%02d" % (e // 60, e % 60), st, cn, vn, dn)
        c += line
        cp += line
    out["connections"] = c
    out["connections_persistent"] = cp
    g = "%-20s %-8s %-20s %-10s %-10s\n" % ("VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS")
    for s in GOLDEN:
        g += "%-20s %-8u \n" % ("%s:%d" % (s["vip"], s["port"]), len(s["laddrs"]))
        for lip in s["laddrs"]:
            g += "%-20s %-8s %-20s %-10u %-10u\n" % ("", "", lip, 0, 1 if lip == "10.0.0.5" else 0)
    out["laddrs"] = g
    for name, text in out.items():
        with open(name + ".txt", "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
