#!/usr/bin/env bash
# Builds the Debian package of rvs with cargo-deb:
#   bash deploy/package.sh            -> target/debian/rvs_<version>-1_<arch>.deb
# Installs cargo-deb first when missing (cargo install, from crates.io), builds
# the release binaries, writes man pages and completions (rvs-docgen) and
# packages them with the systemd unit, the example config and the docs
# (control/Cargo.toml, [package.metadata.deb]). Install the result with
#   apt-get install ./target/debian/rvs_*.deb
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CARGO_DEB_VERSION="3.8.0"

log() { echo "package: $*" >&2; }

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
cd "$REPO_ROOT"
if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb $CARGO_DEB_VERSION (cargo install)"
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
# dpkg-shlibdeps (dpkg-dev) resolves the librte-* dependencies ($auto).
command -v dpkg-shlibdeps >/dev/null 2>&1 || { log "installing dpkg-dev"; apt-get install -y -q dpkg-dev >/dev/null; }
log "cargo build --release (rvsd, rvsadm, rvs-vrrp, rvs-docgen)"
cargo build --release -p rvsd -p rvs-control --bins
log "man pages and completions (rvs-docgen target/release/docgen)"
rm -rf target/release/docgen
target/release/rvs-docgen target/release/docgen
log "cargo deb"
rm -rf target/debian
cargo deb -p rvsd --no-build --output target/debian/
ls target/debian/*.deb
