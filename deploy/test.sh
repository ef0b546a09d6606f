#!/usr/bin/env bash
# The project's test command (README, .ci/run): as root,
#   bash deploy/test.sh
# 1. deploy/setup.sh: packages + cargo build --release --workspace
# 2. cargo fmt --check and cargo clippy -D warnings, then
#    cargo test --workspace --release (unit + integration), then
#    deploy/bench.sh --smoke (a few seconds of every benchmark), then the
#    Debian package built (deploy/package.sh) and installed with apt-get
# 3. the README's lab command (deploy/lab.sh --no-setup: traffic through every
#    service of deploy/lab.json), then the end-to-end suite in network
#    namespaces:
#      python3 -m unittest discover -s tests/e2e -v
# The topology is always taken down at the end. Exits non-zero if any step
# failed (both test stages run even if the first one fails).
#   RVS_SKIP_E2E=1   run only steps 1-2 (e.g. on a machine without netns)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
readonly SCRIPT_DIR REPO_ROOT

log() { echo "test: $*" >&2; }
die() { echo "test: error: $*" >&2; exit 1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    bash "$SCRIPT_DIR/topology.sh" down >/dev/null 2>&1 || true
    exit "$rc"
}

ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found"
}

main() {
    [[ $EUID -eq 0 ]] || die "must run as root (apt-get, network namespaces, DPDK)"
    cd "$REPO_ROOT"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    bash "$SCRIPT_DIR/setup.sh"
    ensure_cargo

    local failed=()
    # Style and lints as the project's rules state them (rustfmt.toml, [workspace.lints]).
    log "cargo fmt --all --check"
    cargo fmt --all --check || failed+=("cargo fmt")
    log "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings || failed+=("cargo clippy")

    log "cargo test --workspace --release --no-fail-fast"
    cargo test --workspace --release --no-fail-fast || failed+=("cargo test")

    # The benchmark suite in its short form, so it never rots (issue 6).
    log "benchmark smoke run (deploy/bench.sh --smoke)"
    bash "$SCRIPT_DIR/bench.sh" --smoke || failed+=("bench smoke")

    # The Debian package, built and installed as an operator would (issue 12);
    # tests/e2e/test_62_package.py checks what it installed.
    log "Debian package (deploy/package.sh) and apt-get install"
    if bash "$SCRIPT_DIR/package.sh"; then
        apt-get install -y -q --reinstall "$(ls -t "$REPO_ROOT"/target/debian/rvs_*.deb | head -n1)" \
            || failed+=("package install")
    else
        failed+=("package build")
    fi

    if [[ "${RVS_SKIP_E2E:-0}" == 1 ]]; then
        log "RVS_SKIP_E2E=1: skipping the end-to-end suite"
    else
        # The lab the README tells an operator to run first: CI catches it
        # breaking (it sets up and takes down its own topology).
        log "the lab (deploy/lab.sh --no-setup)"
        bash "$SCRIPT_DIR/topology.sh" down
        bash "$SCRIPT_DIR/lab.sh" --no-setup || failed+=("lab")
        log "end-to-end suite (tests/e2e)"
        # Leftovers from an interrupted earlier run would confuse the suite.
        bash "$SCRIPT_DIR/topology.sh" down
        # No __pycache__ litter in the source tree.
        PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tests/e2e -v || failed+=("e2e")
    fi

    if ((${#failed[@]})); then
        log "FAILED: ${failed[*]}"
        exit 1
    fi
    log "all tests passed"
}

main "$@"
