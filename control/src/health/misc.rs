//! MISC_CHECK: `sh -c PATH`; exit 0 = up, anything else = down.
//!
//! With `dynamic` (Keepalived's `misc_dynamic`): exit 0 = up with the
//! configured weight, 1 = down, 2..=255 = up with weight `code − 2`. The
//! script runs in its own process group with standard streams on /dev/null;
//! after the timeout (`misc_timeout`, default `connect_timeout`) the whole
//! group is killed with SIGKILL and the attempt fails.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{CheckError, WeightChange};

/// The verdict for an exit code (`None`: killed by a signal).
pub fn judge_exit(code: Option<i32>, dynamic: bool) -> Result<WeightChange, CheckError> {
    match code {
        Some(0) if dynamic => Ok(WeightChange::Reset),
        Some(0) => Ok(WeightChange::Keep),
        Some(c @ 2..=255) if dynamic => Ok(WeightChange::Set((c - 2) as u32)),
        Some(c) => Err(CheckError::Exit(c)),
        None => Err(CheckError::Signal),
    }
}

/// One MISC_CHECK attempt.
pub async fn check(command: &str, timeout: Duration, dynamic: bool) -> Result<WeightChange, CheckError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(CheckError::io("spawn sh"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => judge_exit(status.code(), dynamic),
        Ok(Err(source)) => Err(CheckError::Io { what: "wait", source }),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                kill_group(pid);
            }
            let _ = child.kill().await;
            Err(CheckError::Timeout { what: "script", after: timeout })
        }
    }
}

/// Sends SIGKILL to the process group `pgid` (the script and its children).
fn kill_group(pgid: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
    // negative pid names the process group the script leads (process_group(0)).
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc != 0 {
        tracing::debug!("kill of process group {pgid}: {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(judge_exit(Some(0), false).expect("up"), WeightChange::Keep);
        assert!(judge_exit(Some(1), false).is_err());
        assert!(judge_exit(Some(2), false).is_err());
        assert_eq!(judge_exit(Some(0), true).expect("up"), WeightChange::Reset);
        assert!(judge_exit(Some(1), true).is_err());
        assert_eq!(judge_exit(Some(2), true).expect("up"), WeightChange::Set(0));
        assert_eq!(judge_exit(Some(255), true).expect("up"), WeightChange::Set(253));
        assert!(judge_exit(None, true).is_err());
    }

    #[tokio::test]
    async fn runs_and_times_out() {
        assert_eq!(check("exit 0", Duration::from_secs(5), false).await.expect("up"), WeightChange::Keep);
        assert!(matches!(check("exit 3", Duration::from_secs(5), false).await, Err(CheckError::Exit(3))));
        assert_eq!(check("exit 7", Duration::from_secs(5), true).await.expect("up"), WeightChange::Set(5));
        let start = std::time::Instant::now();
        let r = check("sleep 5; exit 0", Duration::from_millis(200), false).await;
        assert!(matches!(r, Err(CheckError::Timeout { .. })), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
