#!/usr/bin/env bash
# A booted Debian with systemd as PID 1, to run the rvs package under a real
# systemd on a machine whose own PID 1 is not systemd (a CI VM, a container
# host without a booted systemd). tests/e2e/test_66_systemd.py uses it.
#
#   deploy/systemd-container.sh check            are the tools here? (exit 3 and what is missing if not)
#   deploy/systemd-container.sh root [DEB]       build the cached root filesystem if needed; print its path
#   deploy/systemd-container.sh boot NAME DEB    boot a container NAME and install DEB in it (apt-get)
#   deploy/systemd-container.sh exec NAME CMD..  run CMD inside NAME (all its namespaces, a clean environment)
#   deploy/systemd-container.sh leader NAME      print the host PID of NAME's systemd (PID 1 inside)
#   deploy/systemd-container.sh stop NAME        power NAME off; remove its overlay and network namespace
#
# The root filesystem: mmdebstrap, variant minbase, of the host's Debian suite
# (the package is built against the host's DPDK libraries) from the mirror the
# host's apt uses, with systemd, dbus, curl, iproute2, procps and whatever
# DEB depends on (Debian's DPDK runtime packages), so that the package
# installs offline. Cached in $RVS_SYSTEMD_ROOT (default
# /var/cache/rvs/systemd-root) and rebuilt only when missing or when that
# package list changed (the list is kept in ROOT.stamp).
#
# A container: an overlay on the cached root (the cache is never written),
# booted by systemd-nspawn --boot. Without a booted systemd on the host there
# is no machined and no system bus, hence --register=no --keep-unit. Its
# network: --network-veth, the container's end is `host0`, the host's end
# `ve-NAME` lives in a network namespace NAME of its own, so nothing reaches
# the host's network. --bind-ro=/sys/module: nspawn shows a container only
# part of sysfs, and DPDK's EAL refuses to start without /sys/module
# ("Cannot init VFIO"); a real host always has it.
#
# Needs root, systemd-nspawn (Debian: systemd-container), mmdebstrap, nsenter;
# deploy/setup.sh installs them. NAME: 1-12 of [a-z0-9-] (the veth's name).
set -Eeuo pipefail
trap 'echo "systemd-container: error: line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR

readonly ROOT="${RVS_SYSTEMD_ROOT:-/var/cache/rvs/systemd-root}"
readonly STATE="${RVS_SYSTEMD_STATE:-/run/rvs-systemd}"
# What the root needs besides minbase and the package's dependencies.
readonly BASE_PACKAGES=(systemd systemd-sysv dbus curl iproute2 procps)
readonly PATH_INSIDE="/usr/sbin:/usr/bin:/sbin:/bin"

log() { echo "systemd-container: $*" >&2; }
die() { echo "systemd-container: error: $*" >&2; exit 1; }

check_tools() {
    local missing=() tool
    for tool in systemd-nspawn mmdebstrap nsenter ip dpkg-deb flock; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        echo "systemd-container: missing ${missing[*]} (deploy/setup.sh installs systemd-container and mmdebstrap)" >&2
        exit 3
    fi
    [[ $EUID -eq 0 ]] || { echo "systemd-container: must run as root" >&2; exit 3; }
}

valid_name() {
    [[ "$1" =~ ^[a-z0-9][a-z0-9-]{0,11}$ ]] || die "container name '$1': 1-12 of [a-z0-9-]"
}

# The host's Debian suite (the package links the host's DPDK libraries).
host_suite() {
    local codename
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [[ -n "$codename" ]] || die "cannot tell the host's Debian suite (VERSION_CODENAME in /etc/os-release)"
    echo "${RVS_SYSTEMD_SUITE:-$codename}"
}

# mmdebstrap's MIRROR arguments: the host's Debian sources (deb822) when
# there, else Debian's mirror.
mirrors() {
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        echo /etc/apt/sources.list.d/debian.sources
    else
        echo "http://deb.debian.org/debian"
    fi
}

# The package names DEB depends on (first alternative, versions dropped).
deb_depends() {
    dpkg-deb -f "$1" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g' | grep -v '^$'
}

# Builds ROOT unless it exists with the same stamp; prints ROOT.
ensure_root() {
    local deb="${1:-}" suite packages stamp mirror
    suite="$(host_suite)"
    mirror="$(mirrors)"
    packages="$({ printf '%s\n' "${BASE_PACKAGES[@]}"; [[ -z "$deb" ]] || deb_depends "$deb"; } | sort -u | paste -sd, -)"
    stamp="rvs systemd root 1; suite $suite; mirror $mirror"
    [[ ! -f "$mirror" ]] || stamp+=" $(sha256sum "$mirror" | cut -c1-16)"
    stamp+="; packages $packages"
    mkdir -p "$(dirname "$ROOT")"
    (
        flock 9
        if [[ -f "$ROOT/usr/lib/os-release" && "$(cat "$ROOT.stamp" 2>/dev/null)" == "$stamp" ]]; then
            log "root filesystem: $ROOT (cached)"
            exit 0
        fi
        if grep -qF "lowerdir=$ROOT" /proc/self/mountinfo; then
            die "$ROOT must be rebuilt but a container runs on it: stop it first"
        fi
        log "root filesystem: building $ROOT ($suite, minbase + $packages)"
        local started=$SECONDS
        rm -rf "$ROOT.new" "$ROOT.stamp"
        # Dated snapshot mirrors (what this machine's apt reads) serve Release
        # files past their Valid-Until; the host's apt is told to accept them.
        mmdebstrap --variant=minbase --include="$packages" \
            --aptopt='Acquire::Check-Valid-Until "false"' \
            --customize-hook='echo rvs-systemd >"$1/etc/hostname"' \
            --customize-hook='chroot "$1" systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service' \
            "$suite" "$ROOT.new" "$mirror" >"$ROOT.log" 2>&1 \
            || { tail -n 30 "$ROOT.log" >&2; rm -rf "$ROOT.new"; die "mmdebstrap failed (log: $ROOT.log)"; }
        rm -rf "$ROOT"
        mv "$ROOT.new" "$ROOT"
        echo "$stamp" >"$ROOT.stamp"
        log "root filesystem built in $((SECONDS - started)) s ($(du -sh "$ROOT" | cut -f1))"
    ) 9>"$ROOT.lock"
    echo "$ROOT"
}

nspawn_pid() {
    local pid
    pid="$(cat "$STATE/$1/nspawn.pid" 2>/dev/null)" || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == systemd-nspawn ]] || return 1
    echo "$pid"
}

leader_pid() {
    local pid
    pid="$(cat "$STATE/$1/leader.pid" 2>/dev/null)" || return 1
    [[ -d "/proc/$pid" ]] || return 1
    echo "$pid"
}

exec_in() {
    local name="$1" leader
    shift
    leader="$(leader_pid "$name")" || die "container $name is not running"
    nsenter --target "$leader" --all -- env -i PATH="$PATH_INSIDE" LANG=C.UTF-8 TERM=dumb SYSTEMD_COLORS=0 SYSTEMD_PAGER= "$@"
}

boot() {
    local name="$1" deb="$2" dir pid leader state started child
    valid_name "$name"
    [[ -f "$deb" ]] || die "no package at $deb (bash deploy/package.sh builds it)"
    deb="$(realpath "$deb")"
    stop "$name"    # what an interrupted run left
    ensure_root "$deb" >/dev/null
    started=$SECONDS
    dir="$STATE/$name"
    mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
    mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged"
    ip netns add "$name"
    nsenter --net="/run/netns/$name" systemd-nspawn --boot --register=no --keep-unit --machine="$name" \
        --directory="$dir/merged" --network-veth --bind-ro=/sys/module --console=passive \
        </dev/null >"$dir/boot.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/nspawn.pid"
    # The container's systemd: nspawn's child that is PID 1 of its own PID
    # namespace (nspawn first forks a helper that is not).
    for _ in $(seq 100); do
        leader=""
        for child in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true); do
            if [[ "$(awk '/^NSpid:/ {print $NF}' "/proc/$child/status" 2>/dev/null || true)" == 1 ]]; then
                leader="$child"
            fi
        done
        [[ -n "$leader" ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$dir/boot.log" >&2; die "systemd-nspawn exited"; }
        sleep 0.1
    done
    [[ -n "$leader" ]] || die "systemd-nspawn started no container"
    echo "$leader" >"$dir/leader.pid"
    for _ in $(seq 600); do
        state="$(nsenter --target "$leader" --all -- systemctl is-system-running 2>/dev/null || true)"
        [[ "$state" == running || "$state" == degraded ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$dir/boot.log" >&2; die "the container stopped while booting"; }
        sleep 0.1
    done
    case "$state" in
        running) ;;
        degraded) log "booted degraded: $(exec_in "$name" systemctl --failed --plain --no-legend | tr '\n' ' ')" ;;
        *) cat "$dir/boot.log" >&2; die "the container did not finish booting (state: ${state:-none})" ;;
    esac
    log "booted $name in $((SECONDS - started)) s (systemd PID $leader on the host)"
    cp "$deb" "$dir/merged/root/"
    exec_in "$name" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "/root/$(basename "$deb")" >"$dir/install.log" 2>&1 \
        || { cat "$dir/install.log" >&2; die "apt-get install $(basename "$deb") failed in $name"; }
    ip -n "$name" link set "ve-$name" up
    log "installed $(basename "$deb") in $name"
    echo "$leader"
}

stop() {
    local name="$1" dir pid leader i
    valid_name "$name"
    dir="$STATE/$name"
    if pid="$(nspawn_pid "$name")"; then
        # nspawn passes SIGTERM on as a clean poweroff of the container; again
        # every 5 s, as one that came before systemd set up its handlers is lost.
        for i in $(seq 300); do
            ((i % 50 != 1)) || kill -TERM "$pid" 2>/dev/null || true
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name did not power off in 30 s: killing it"
            if leader="$(leader_pid "$name")"; then kill -KILL "$leader" 2>/dev/null || true; fi
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    if mountpoint -q "$dir/merged" 2>/dev/null; then
        umount "$dir/merged" 2>/dev/null || umount --lazy "$dir/merged"
    fi
    if ip netns list | grep -qx "$name\( (id: [0-9]*)\)\?"; then ip netns del "$name"; fi
    rm -rf "$dir"
}

main() {
    local cmd="${1:-}"
    shift || true
    case "$cmd" in
        check) check_tools ;;
        root) check_tools; ensure_root "${1:-}" ;;
        boot) [[ $# -eq 2 ]] || die "usage: $0 boot NAME DEB"; check_tools; boot "$1" "$2" ;;
        exec) [[ $# -ge 2 ]] || die "usage: $0 exec NAME CMD..."; exec_in "$@" ;;
        leader) [[ $# -eq 1 ]] || die "usage: $0 leader NAME"; leader_pid "$1" || die "container $1 is not running" ;;
        stop) [[ $# -eq 1 ]] || die "usage: $0 stop NAME"; stop "$1" ;;
        *) die "usage: $0 check | root [DEB] | boot NAME DEB | exec NAME CMD... | leader NAME | stop NAME" ;;
    esac
}

main "$@"
