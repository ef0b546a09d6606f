#!/usr/bin/env bash
# rvs build prerequisites + release build. Idempotent: installs only missing
# Debian packages (apt-get update only when something is missing), reserves
# 2 MB hugepages for the lab and the tests when the kernel allows (else they
# run with --no-huge), then runs `cargo build --release --workspace` (a no-op
# when up to date). It does not bind NICs: see deploy/rvs-nic and
# deploy/docs/bare-metal.md for real hardware.
#
#   deploy/setup.sh            install packages + hugepages + build
#   RVS_SKIP_BUILD=1 deploy/setup.sh   packages + hugepages only
#   RVS_HUGEPAGES=N            2 MB pages to reserve (default 1536 = 3 GB: the
#                              HA suites run 3 rvsd at once, -m 512 at most;
#                              0 = leave the reservation alone)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT
readonly HUGEPAGES="${RVS_HUGEPAGES:-1536}"
readonly HUGEPAGES_2M=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

# Build deps (DPDK 22.11 from Debian, bindgen's libclang, libpcap for the REST
# capture's BPF filters; `dpdk` brings dpdk-dumpcap) and lab tools (tshark
# reads the captures in tests/e2e/test_72_capture.py);
# systemd-container (systemd-nspawn) and mmdebstrap boot the package under a
# real systemd (deploy/systemd-container.sh, tests/e2e/test_66_systemd.py);
# bird2 is the BGP speaker of the cluster lab (deploy/cluster-lab.sh, test_80).
# python3-scapy forges packets in the e2e suite (test_42, test_45; test_74's
# SYN-proxy client doing its own handshake, tests/e2e/synproxy_client.py).
readonly PACKAGES=(
    dpdk dpdk-dev libdpdk-dev libclang-dev clang pkg-config libpcap-dev
    iproute2 ethtool tcpdump tshark socat curl python3 python3-pip iputils-ping python3-scapy
    systemd-container mmdebstrap
    bird2
)
# Test tools installed without their recommends (keeps the install small):
# promtool (Debian's prometheus package; its service is not started) for the
# metrics and alert-rule checks, Debian's headless browser and its driver for
# the status-page test (tests/e2e/test_68_metrics.py, test_70_status_page.py),
# Debian's nginx as an IPv4 real server behind NAT64 (test_76_ipv6; the tests
# run their own nginx in the lab's namespaces).
readonly LEAN_PACKAGES=(prometheus chromium chromium-driver fonts-dejavu-core nginx-light)

log() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

require_root() {
    [[ $EUID -eq 0 ]] || die "must run as root (apt-get install, network namespaces); try: sudo $0"
}

# Print the packages from the lists named (default PACKAGES) that are not installed.
missing_packages() {
    local pkg status
    local -n list="${1:-PACKAGES}"
    for pkg in "${list[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [[ "$status" == "install ok installed" ]] || echo "$pkg"
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "packages: all present"
        return 0
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark must not ask whether non-root users may capture.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
    mapfile -t missing < <(missing_packages)
    [[ ${#missing[@]} -eq 0 ]] || die "still missing after install: ${missing[*]}"
}

install_lean_packages() {
    local missing
    mapfile -t missing < <(missing_packages LEAN_PACKAGES)
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "test tools (promtool, chromium): all present"
        return 0
    fi
    log "installing without recommends: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    # Only promtool is wanted: no Prometheus server on a machine that runs systemd.
    if [[ -d /run/systemd/system ]]; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
    mapfile -t missing < <(missing_packages LEAN_PACKAGES)
    [[ ${#missing[@]} -eq 0 ]] || die "still missing after install: ${missing[*]}"
}

# Reserve HUGEPAGES 2 MB pages (never fewer than already reserved) and mount
# hugetlbfs on /dev/hugepages through deploy/rvs-nic. The kernel may give
# fewer (fragmented memory) or none (no hugetlb support): the lab and the
# tests then use what is free or --no-huge, and say which.
reserve_hugepages() {
    [[ "$HUGEPAGES" =~ ^[0-9]+$ ]] || die "RVS_HUGEPAGES must be a number of 2 MB pages"
    if [[ "$HUGEPAGES" == 0 ]]; then
        log "RVS_HUGEPAGES=0: hugepage reservation left alone"
    elif [[ ! -e "$HUGEPAGES_2M" ]]; then
        log "hugepages: this kernel offers no 2 MB hugepages"
    else
        local have
        have="$(cat "$HUGEPAGES_2M")"
        python3 "$SCRIPT_DIR/rvs-nic" hugepages "$((have > HUGEPAGES ? have : HUGEPAGES))" >&2 \
            || log "hugepages: fewer than $HUGEPAGES reserved"
    fi
    python3 "$SCRIPT_DIR/rvs-nic" memory --megabytes 512 --processes 3 2>&1 >/dev/null | sed 's/^/setup: /' >&2
}

ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 \
        || die "cargo not found (not on PATH, not in \$HOME/.cargo/bin); install a Rust toolchain >= 1.88"
}

build() {
    ensure_cargo
    log "cargo build --release --workspace"
    (cd "$REPO_ROOT" && cargo build --release --workspace)
}

# Python test dependencies of the e2e suite, for the python3 that runs the
# tests, from PyPI: openapi-spec-validator (test_05_openapi.py) and selenium
# (test_70_status_page.py, driving Debian's chromium through chromedriver).
install_python_test_deps() {
    local module package
    for module in openapi_spec_validator:openapi-spec-validator selenium:selenium; do
        package="${module#*:}"
        module="${module%%:*}"
        if python3 -c "import $module" 2>/dev/null; then
            log "$package: present"
            continue
        fi
        log "installing $package (pip)"
        python3 -m pip install --quiet "$package" \
            || python3 -m pip install --quiet --break-system-packages "$package" \
            || die "cannot install $package for $(command -v python3)"
    done
}

main() {
    require_root
    install_packages
    install_lean_packages
    install_python_test_deps
    reserve_hugepages
    if [[ "${RVS_SKIP_BUILD:-0}" == 1 ]]; then
        log "RVS_SKIP_BUILD=1: not building"
    else
        build
    fi
    log "done"
}

main "$@"
