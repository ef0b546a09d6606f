//! Crash safety of the config file: a writer killed with SIGKILL at random
//! moments never leaves a file that does not parse.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rvs_control::config::Config;
use rvs_control::persist::{temp_path, write_atomic};

const CHILD_ENV: &str = "RVS_PERSIST_CRASH_CHILD";

/// A valid config with `n` services (sizes differ from version to version).
fn version(n: usize) -> String {
    let services: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"protocol": "tcp", "vip": "10.0.{}.{}", "port": 80, "scheduler": "rr",
                    "reals": [{{"address": "10.1.0.11", "weight": {i}}}, {{"address": "10.1.0.12"}}]}}"#,
                2 + i / 200,
                1 + i % 200
            )
        })
        .collect();
    format!(r#"{{"ports": [{{"name": "lan0", "device": "d", "addresses": ["10.1.0.1/24"]}}], "services": [{}]}}"#, services.join(",\n"))
}

/// The writer run in a child process: rewrites the file as fast as it can
/// (for at most 20 s) until the parent kills it. A no-op in a normal test run.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let path = Path::new(&path);
    let start = Instant::now();
    let mut i = 0usize;
    while start.elapsed() < Duration::from_secs(20) {
        write_atomic(path, version(1 + (i * 37) % 300).as_bytes()).expect("write");
        i += 1;
    }
}

#[test]
fn sigkill_mid_write_never_leaves_a_corrupt_file() {
    let exe = std::env::current_exe().expect("test binary");
    for round in 0..6u64 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rvs.json");
        std::fs::write(&path, version(1)).expect("initial file");
        let mut child = Command::new(&exe)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        std::thread::sleep(Duration::from_millis(40 + round * 23));
        child.kill().expect("SIGKILL the writer");
        let _ = child.wait();
        let text = std::fs::read_to_string(&path).expect("the file exists");
        let config = Config::from_json(&text).unwrap_or_else(|e| panic!("round {round}: corrupt file: {e}"));
        assert!(!config.services.is_empty());
        // A leftover temporary file is harmless and is replaced by the next write.
        if temp_path(&path).exists() {
            write_atomic(&path, version(2).as_bytes()).expect("write after crash");
            assert!(!temp_path(&path).exists());
        }
    }
}
