//! `--pid-file`: rvsd's process ID in a file while it runs, as Keepalived's
//! `-p`. A file naming a live rvsd refuses the start (two daemons on one
//! config would fight over ports and VRRP); a stale one is replaced. The file
//! is removed at exit if it still names this process.

use std::path::{Path, PathBuf};

/// The pid file of this process; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

/// Why a pid file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Another rvsd runs.
    #[error("rvsd already runs with pid {pid} (--pid-file {path}); stop it first")]
    Running { pid: u32, path: PathBuf },
    /// The file could not be written.
    #[error("cannot write the pid file {path} (--pid-file): {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl PidFile {
    /// Writes this process's ID to `path` (mode 0644), unless the file names
    /// another process whose name is `rvsd`.
    pub fn create(path: &Path) -> Result<Self, PidFileError> {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse::<u32>().ok()) {
            if pid != std::process::id() && is_rvsd(pid) {
                return Err(PidFileError::Running { pid, path: path.to_path_buf() });
            }
        }
        let io = |source| PidFileError::Io { path: path.to_path_buf(), source };
        crate::persist::write_atomic(path, format!("{}\n", std::process::id()).as_bytes()).map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        Ok(PidFile { path: path.to_path_buf() })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether process `pid` exists and is an rvsd.
fn is_rvsd(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "rvsd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_replaced_when_stale_and_removed_on_drop() {
        let dir = std::env::temp_dir().join(format!("rvs-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("rvsd.pid");
        // A stale file (no such process) is replaced.
        std::fs::write(&path, "999999999\n").expect("stale");
        let pid = PidFile::create(&path).expect("create");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), format!("{}\n", std::process::id()));
        // Our own pid is not "another rvsd".
        drop(PidFile::create(&path).expect("again"));
        drop(pid);
        assert!(!path.exists(), "removed at exit");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
