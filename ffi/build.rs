//! Generates the raw DPDK bindings and compiles the C shim.
//!
//! libdpdk is found with pkg-config; its cflags (including `-include rte_config.h`
//! and `-march=...`) are given to both bindgen and the shim so both see the same
//! struct layouts. The shared libraries are linked, which lets EAL load the PMDs
//! (af_packet, memif, tap, ring, ...) as plugins at run time.
use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-changed=build.rs");

    let dpdk = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .unwrap_or_else(|e| panic!("libdpdk not found by pkg-config ({e}); install it with: apt-get install dpdk-dev libdpdk-dev"));

    // Raw cflags as pkg-config prints them (keeps `-include rte_config.h` and -march).
    let cflags_out =
        std::process::Command::new("pkg-config").args(["--cflags", "libdpdk"]).output().expect("running pkg-config --cflags libdpdk");
    let cflags: Vec<String> = String::from_utf8_lossy(&cflags_out.stdout).split_whitespace().map(str::to_owned).collect();

    let mut build = cc::Build::new();
    build.file("shim.c").warnings(false).opt_level(3);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("rvs_dpdk_shim");

    let mut clang_args = cflags.clone();
    for path in &dpdk.include_paths {
        clang_args.push(format!("-I{}", path.display()));
    }

    let bindings = bindgen::Builder::default()
        .header("shim.h")
        .clang_args(&clang_args)
        .allowlist_function("rvs_.*")
        .allowlist_function("rte_eal_.*")
        .allowlist_function("rte_eth_.*")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_mempool_lookup")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_lcore_.*")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_openlog_stream")
        .allowlist_function("rte_log_cur_msg_loglevel")
        .allowlist_function("rte_get_next_lcore")
        .allowlist_function("rte_ring_.*")
        .allowlist_function("rte_dev_.*")
        .allowlist_function("rte_vdev_.*")
        .allowlist_function("rte_flow_validate")
        .allowlist_function("rte_flow_create")
        .allowlist_function("rte_flow_destroy")
        // Packet capture by Debian's dpdk-dumpcap/dpdk-pdump (librte_pdump,
        // linked through pkg-config libdpdk with librte_pcapng and librte_bpf).
        .allowlist_function("rte_pdump_(init|uninit)")
        .allowlist_type("rte_flow_item_(ipv4|tcp|udp|type)")
        .allowlist_type("rte_flow_action_(queue|type)")
        .allowlist_type("rte_eth_.*")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_mempool")
        .allowlist_type("rte_ether_addr")
        .allowlist_var("RTE_ETH_.*")
        .allowlist_var("RTE_MAX_LCORE")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MBUF_F_RX_IP_CKSUM_.*")
        .allowlist_type("rvs_offload")
        .constified_enum_module("rvs_offload")
        .allowlist_var("SOCKET_ID_ANY")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen could not generate DPDK bindings (is libclang-dev installed?)");

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR set by cargo"));
    bindings.write_to_file(out.join("bindings.rs")).expect("writing bindings.rs");
}
