//! Checks made before DPDK starts, so a start-up failure is one line naming
//! its cause instead of EAL's usage text or "EAL initialisation failed":
//! privileges, lcores that are not on this machine, ports whose interface or
//! PCI device does not exist, no hugepages while `eal` asks for them, and an
//! EAL file prefix held by another running DPDK process.
//!
//! `rvsd --check-config` runs the same checks except the file prefix (a
//! config is often checked while the daemon using it runs). Everything is
//! read from files under a root directory ([`Host`]) so tests build a fake
//! `/sys` and `/proc`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::Config;

/// Why rvsd cannot start on this machine with this config.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Problem {
    /// Not running as root.
    #[error("rvsd must run as root (DPDK maps hugepages and devices, VRRP and the exception path need raw sockets and TAPs)")]
    NotRoot,
    /// An lcore of the config is not an online CPU.
    #[error("{field}: lcore {lcore} is not a CPU of this machine (online CPUs: {online})")]
    NoSuchLcore { field: String, lcore: u32, online: String },
    /// An af_packet port's interface does not exist.
    #[error("{field}: interface {iface} does not exist (in this network namespace); see `ip link`")]
    NoSuchInterface { field: String, iface: String },
    /// A PCI port's device does not exist.
    #[error("{field}: PCI device {address} not found (see `dpdk-devbind.py --status`)")]
    NoSuchPciDevice { field: String, address: String },
    /// `eal` wants hugepages and there are none.
    #[error(
        "eal: no hugepages available ({reason}): reserve some (deploy/docs/bare-metal.md) or add \"--no-huge\", \"-m\", \"512\" to eal"
    )]
    NoHugepages { reason: String },
    /// Another DPDK process holds the EAL file prefix.
    #[error("eal: the EAL file prefix \"{prefix}\" is in use by process {pid} (another rvsd or DPDK application): stop it or set another --file-prefix in eal")]
    FilePrefixInUse { prefix: String, pid: i32 },
}

/// Where the machine's `/sys`, `/proc` and `/var/run` are read (`/` but in tests).
#[derive(Clone, Debug)]
pub struct Host {
    root: PathBuf,
    /// `$RUNTIME_DIRECTORY` (set by systemd's RuntimeDirectory=; EAL puts its
    /// runtime files under it).
    runtime_directory: Option<String>,
}

impl Host {
    /// This machine.
    pub fn system() -> Self {
        let runtime_directory = std::env::var("RUNTIME_DIRECTORY").ok().and_then(|d| d.split(':').next().map(str::to_owned));
        Host { root: PathBuf::from("/"), runtime_directory: runtime_directory.filter(|d| d.starts_with('/')) }
    }

    /// A tree standing for a machine (tests).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Host { root: root.into(), runtime_directory: None }
    }

    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    fn read(&self, absolute: &str) -> Option<String> {
        std::fs::read_to_string(self.path(absolute)).ok()
    }
}

/// What to check: everything before a start, all but the file prefix for `--check-config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Before starting EAL.
    Start,
    /// `--check-config`.
    CheckOnly,
}

/// Every problem found (empty: go ahead).
pub fn check(config: &Config, host: &Host, when: When) -> Vec<Problem> {
    let mut problems = Vec::new();
    if host.root == Path::new("/") && !nix::unistd::geteuid().is_root() {
        problems.push(Problem::NotRoot);
    }
    problems.extend(check_lcores(config, host));
    problems.extend(check_ports(config, host));
    problems.extend(check_hugepages(config, host));
    if when == When::Start {
        problems.extend(check_file_prefix(config, host));
    }
    problems
}

/// The CPUs in a sysfs CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str) -> BTreeSet<u32> {
    let mut cpus = BTreeSet::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    cpus.extend(a..=b);
                }
            }
            None => {
                if let Ok(c) = part.trim().parse() {
                    cpus.insert(c);
                }
            }
        }
    }
    cpus
}

/// The value following `flag` in `eal` (`--flag value` or `--flag=value`).
fn eal_value<'a>(eal: &'a [String], flag: &str) -> Option<&'a str> {
    eal.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            eal.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(flag).and_then(|rest| rest.strip_prefix('='))
        }
    })
}

fn check_lcores(config: &Config, host: &Host) -> Vec<Problem> {
    // An operator's own --lcores/-l layout maps lcores to CPUs itself: EAL checks it.
    if config.eal.iter().any(|a| a == "-l" || a == "--lcores" || a.starts_with("--lcores=")) {
        return Vec::new();
    }
    let Some(online) = host.read("/sys/devices/system/cpu/online") else { return Vec::new() };
    let cpus = parse_cpu_list(&online);
    let mut problems = Vec::new();
    let lcores = std::iter::once(("main_lcore".to_owned(), config.main_lcore))
        .chain(config.workers.iter().enumerate().map(|(i, &l)| (format!("workers[{i}]"), l)));
    for (field, lcore) in lcores {
        if !cpus.contains(&lcore) {
            problems.push(Problem::NoSuchLcore { field, lcore, online: online.trim().to_owned() });
        }
    }
    problems
}

fn check_ports(config: &Config, host: &Host) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, port) in config.ports.iter().enumerate() {
        let field = format!("ports[{i}].device");
        let name = port.device.split(',').next().unwrap_or_default();
        if let Some(iface) = crate::config::af_packet_iface(&port.device) {
            if !host.path(&format!("/sys/class/net/{iface}")).exists() {
                problems.push(Problem::NoSuchInterface { field, iface: iface.to_owned() });
            }
        } else if !name.starts_with("net_") {
            let address = if name.matches(':').count() == 1 { format!("0000:{name}") } else { name.to_owned() };
            if !host.path(&format!("/sys/bus/pci/devices/{}", address.to_ascii_lowercase())).exists() {
                problems.push(Problem::NoSuchPciDevice { field, address: name.to_owned() });
            }
        }
    }
    problems
}

fn check_hugepages(config: &Config, host: &Host) -> Vec<Problem> {
    if config.eal.iter().any(|a| a == "--no-huge") {
        return Vec::new();
    }
    let mounted = host.read("/proc/mounts").is_some_and(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs")));
    if !mounted {
        return vec![Problem::NoHugepages { reason: "no hugetlbfs is mounted".to_owned() }];
    }
    let free = host
        .read("/proc/meminfo")
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("HugePages_Free:").and_then(|v| v.trim().parse::<u64>().ok())));
    match free {
        Some(0) => vec![Problem::NoHugepages { reason: "HugePages_Free is 0 in /proc/meminfo".to_owned() }],
        _ => Vec::new(),
    }
}

fn check_file_prefix(config: &Config, host: &Host) -> Vec<Problem> {
    // These modes share no runtime files, so they never collide.
    if config.eal.iter().any(|a| a == "--in-memory" || a == "--no-shconf") {
        return Vec::new();
    }
    let prefix = eal_value(&config.eal, "--file-prefix").unwrap_or("rte");
    // EAL keeps a prefix's runtime files under $RUNTIME_DIRECTORY/dpdk when
    // systemd sets it (the packaged unit: RuntimeDirectory=rvsd), else under
    // /var/run/dpdk (root). Both places are looked at, from either side: an
    // rvsd started by hand must see the service's prefix, and the service an
    // rvsd started by hand, since both would map the same hugepage files.
    let mut dirs: Vec<String> = host.runtime_directory.iter().map(|d| format!("{d}/dpdk")).collect();
    for known in ["/var/run/dpdk", PACKAGED_RUNTIME_DIR] {
        if !dirs.iter().any(|d| d == known) {
            dirs.push(known.to_owned());
        }
    }
    dirs.iter()
        .find_map(|dir| lock_holder(&host.path(&format!("{dir}/{prefix}/config"))))
        .map(|pid| vec![Problem::FilePrefixInUse { prefix: prefix.to_owned(), pid }])
        .unwrap_or_default()
}

/// Where EAL keeps its runtime files under the packaged rvsd.service
/// (`RuntimeDirectory=rvsd`, so `$RUNTIME_DIRECTORY` = /run/rvsd).
const PACKAGED_RUNTIME_DIR: &str = "/run/rvsd/dpdk";

/// The process holding a write lock on `path` (how a DPDK primary process
/// marks its runtime config), if any.
fn lock_holder(path: &Path) -> Option<i32> {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).ok()?;
    let mut lock = libc::flock { l_type: libc::F_WRLCK as i16, l_whence: libc::SEEK_SET as i16, l_start: 0, l_len: 0, l_pid: 0 };
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETLK(&mut lock)).ok()?;
    (lock.l_type != libc::F_UNLCK as i16).then_some(lock.l_pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(eal: &[&str], main: u32, workers: &[u32], devices: &[&str]) -> Config {
        let ports: Vec<String> = devices
            .iter()
            .enumerate()
            .map(|(i, d)| format!(r#"{{ "name": "p{i}", "device": "{d}", "addresses": ["10.{i}.0.1/24"] }}"#))
            .collect();
        let eal: Vec<String> = eal.iter().map(|a| format!("{a:?}")).collect();
        Config::from_json(&format!(
            r#"{{ "eal": [{}], "main_lcore": {main}, "workers": {workers:?}, "api": {{ "listen": "127.0.0.1:9090" }},
                 "ports": [{}], "services": [] }}"#,
            eal.join(","),
            ports.join(",")
        ))
        .expect("valid config")
    }

    fn host(online: &str, ifaces: &[&str], pci: &[&str], hugetlbfs: bool, free: u64) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("sys/devices/system/cpu")).expect("mkdir");
        std::fs::write(root.join("sys/devices/system/cpu/online"), format!("{online}\n")).expect("write");
        for i in ifaces {
            std::fs::create_dir_all(root.join("sys/class/net").join(i)).expect("mkdir");
        }
        for p in pci {
            std::fs::create_dir_all(root.join("sys/bus/pci/devices").join(p)).expect("mkdir");
        }
        std::fs::create_dir_all(root.join("proc")).expect("mkdir");
        let mounts = if hugetlbfs { "hugetlbfs /dev/hugepages hugetlbfs rw 0 0\n" } else { "proc /proc proc rw 0 0\n" };
        std::fs::write(root.join("proc/mounts"), mounts).expect("write");
        std::fs::write(root.join("proc/meminfo"), format!("MemTotal: 1 kB\nHugePages_Free:    {free}\n")).expect("write");
        let host = Host::at(root);
        (dir, host)
    }

    #[test]
    fn cpu_lists_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n").into_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("0").into_iter().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn a_machine_that_fits_the_config_has_no_problem() {
        let (_d, h) = host("0-1", &["eth1"], &["0000:01:00.0"], true, 512);
        let c = config(&["--file-prefix", "x"], 0, &[1], &["net_af_packet0,iface=eth1", "0000:01:00.0", "01:00.0", "net_memif0"]);
        assert_eq!(check(&c, &h, When::Start), []);
    }

    #[test]
    fn each_problem_is_one_line_naming_its_field() {
        let (_d, h) = host("0-1", &[], &[], false, 0);
        let c = config(&[], 0, &[1, 7], &["net_af_packet0,iface=eth9,qpairs=2", "0000:3b:00.1"]);
        let lines: Vec<String> = check(&c, &h, When::CheckOnly).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "workers[1]: lcore 7 is not a CPU of this machine (online CPUs: 0-1)",
                "ports[0].device: interface eth9 does not exist (in this network namespace); see `ip link`",
                "ports[1].device: PCI device 0000:3b:00.1 not found (see `dpdk-devbind.py --status`)",
                "eal: no hugepages available (no hugetlbfs is mounted): reserve some (deploy/docs/bare-metal.md) or add \"--no-huge\", \"-m\", \"512\" to eal",
            ]
        );
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }

    #[test]
    fn hugepages_are_only_needed_without_no_huge() {
        let (_d, h) = host("0-1", &["eth1"], &[], true, 0);
        let c = config(&[], 0, &[1], &["net_af_packet0,iface=eth1"]);
        assert_eq!(check(&c, &h, When::Start), [Problem::NoHugepages { reason: "HugePages_Free is 0 in /proc/meminfo".into() }]);
        let c = config(&["--no-huge", "-m", "512"], 0, &[1], &["net_af_packet0,iface=eth1"]);
        assert_eq!(check(&c, &h, When::Start), []);
    }

    #[test]
    fn an_operators_lcore_layout_is_left_to_eal() {
        let (_d, h) = host("0", &["eth1"], &[], true, 8);
        let c = config(&["--lcores", "0@0,1@0"], 0, &[1], &["net_af_packet0,iface=eth1"]);
        assert_eq!(check(&c, &h, When::Start), []);
    }

    #[test]
    fn a_file_prefix_locked_by_a_live_process_is_named_at_start_only() {
        // EAL's place for root, and the packaged unit's ($RUNTIME_DIRECTORY).
        for runtime in ["var/run/dpdk", "run/rvsd/dpdk"] {
            prefix_locked_at(runtime);
        }
    }

    fn prefix_locked_at(runtime: &str) {
        let (dir, h) = host("0-1", &["eth1"], &[], true, 8);
        let config_file = dir.path().join(runtime).join("busy/config");
        std::fs::create_dir_all(config_file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&config_file, [0u8; 64]).expect("write");
        let c = config(&["--file-prefix", "busy"], 0, &[1], &["net_af_packet0,iface=eth1"]);
        assert_eq!(check(&c, &h, When::Start), [], "unlocked: free");
        // Another process takes a POSIX write lock, as a DPDK primary does on its config
        // (F_GETLK does not report this process's own locks).
        let holder = std::process::Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys,time; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(10)",
            ])
            .arg(&config_file)
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut holder) = holder else {
            eprintln!("no python3: lock holder not tested");
            return;
        };
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(holder.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "locked");
        let problems = check(&c, &h, When::Start);
        assert_eq!(problems, [Problem::FilePrefixInUse { prefix: "busy".into(), pid: holder.id() as i32 }]);
        assert_eq!(check(&c, &h, When::CheckOnly), [], "--check-config leaves the prefix alone");
        let _ = holder.kill();
        let _ = holder.wait();
    }
}
