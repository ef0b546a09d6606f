//! The crates split along dependency lines (issue 12): the control plane and
//! the packet path build without libdpdk and libclang. Only `rvs-ffi` runs
//! pkg-config for libdpdk and bindgen (libclang), so neither it nor `rvs-dpdk`
//! may be in the dependency graph of `rvs-control` (rvsadm, `--check-config`)
//! or `rvs-dataplane` (the packet path on byte buffers).

use std::process::Command;

/// The packages `package` depends on (normal and build edges, not dev), one per line.
fn dependency_graph(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--locked", "-p", package, "-e", "normal,build", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split_whitespace().next().unwrap_or("").to_owned()).collect()
}

#[test]
fn control_plane_and_packet_path_do_not_depend_on_dpdk() {
    for package in ["rvs-control", "rvs-dataplane"] {
        let graph = dependency_graph(package);
        assert!(graph.iter().any(|p| p == package), "{package} not in its own tree: {graph:?}");
        for forbidden in ["rvs-ffi", "rvs-dpdk", "bindgen", "clang-sys"] {
            assert!(!graph.iter().any(|p| p == forbidden), "{package} depends on {forbidden}");
        }
    }
}

#[test]
fn the_daemon_is_where_dpdk_comes_in() {
    let graph = dependency_graph("rvsd");
    for needed in ["rvs-dpdk", "rvs-ffi", "rvs-control", "rvs-dataplane"] {
        assert!(graph.iter().any(|p| p == needed), "rvsd does not depend on {needed}: {graph:?}");
    }
}
