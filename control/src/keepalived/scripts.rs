//! Who runs the scripts of a keepalived.conf: `script_user` and
//! `enable_script_security` of `global_defs`.
//!
//! rvs runs every script (vrrp_script, notify_*, MISC_CHECK, quorum_up/down)
//! as the user rvsd runs as. So `script_user X` is accepted when rvsd is X
//! (nothing changes) and refused otherwise (the scripts would silently run as
//! another user). `enable_script_security` makes Keepalived refuse scripts that
//! a non-root user could modify; rvs makes the same check when it reads the
//! file and refuses the configuration, naming the script and its line.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Group, User};

use super::syntax::Node;
use super::KeepalivedError;

/// Keywords whose value is a command line rvs runs.
const SCRIPT_KEYWORDS: &[&str] = &[
    "script",
    "notify",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_up",
    "notify_down",
    "misc_path",
    "quorum_up",
    "quorum_down",
];

fn unsupported(n: &Node, message: String) -> KeepalivedError {
    KeepalivedError::Unsupported { file: n.pos.file.to_path_buf(), line: n.pos.line, keyword: n.keyword.clone(), message }
}

fn invalid(n: &Node, keyword: &str, message: String) -> KeepalivedError {
    KeepalivedError::Invalid { file: n.pos.file.to_path_buf(), line: n.pos.line, keyword: keyword.to_string(), message }
}

/// `script_user USER [GROUP]`: accepted when rvsd runs as USER (and GROUP).
pub(crate) fn check_script_user(n: &Node) -> Result<(), KeepalivedError> {
    let (user, group) = match (n.block.is_some(), n.args.as_slice()) {
        (false, [user]) => (user, None),
        (false, [user, group]) => (user, Some(group)),
        _ => {
            return Err(KeepalivedError::Syntax {
                file: n.pos.file.to_path_buf(),
                line: n.pos.line,
                keyword: n.keyword.clone(),
                message: "`script_user` takes a user name and an optional group name".into(),
            })
        }
    };
    let found = User::from_name(user).ok().flatten();
    let Some(wanted) = found else {
        return Err(invalid(n, "script_user", format!("no user `{user}` on this machine")));
    };
    let me = nix::unistd::geteuid();
    if wanted.uid != me {
        return Err(unsupported(
            n,
            format!(
                "rvs runs scripts as the user of rvsd (uid {me}), which is not `{user}` (uid {}): the scripts would run \
                 as another user; run rvsd as `{user}` or remove `script_user`",
                wanted.uid
            ),
        ));
    }
    if let Some(group) = group {
        let Some(wanted) = Group::from_name(group).ok().flatten() else {
            return Err(invalid(n, "script_user", format!("no group `{group}` on this machine")));
        };
        let my_gid = nix::unistd::getegid();
        if wanted.gid != my_gid {
            return Err(unsupported(
                n,
                format!(
                    "rvs runs scripts with the group of rvsd (gid {my_gid}), which is not `{group}` (gid {}); run \
                     rvsd with that group or leave the group out",
                    wanted.gid
                ),
            ));
        }
    }
    tracing::info!(
        file = %n.pos.file.display(),
        line = n.pos.line,
        "keepalived.conf: `script_user {user}` accepted without effect: rvsd runs as `{user}`, so its scripts already do"
    );
    Ok(())
}

/// `enable_script_security`: every script in `nodes` (and their blocks) that
/// exists on this machine must be writable by root only — the file and every
/// directory above it.
pub(crate) fn check_scripts_secure(nodes: &[Node]) -> Result<(), KeepalivedError> {
    for n in nodes {
        if let Some(block) = &n.block {
            check_scripts_secure(block)?;
        } else if SCRIPT_KEYWORDS.contains(&n.keyword.as_str()) {
            let command = n.args.join(" ");
            let Some(program) = command.split_whitespace().next() else { continue };
            let Some(path) = resolve(program) else { continue };
            if let Some(why) = insecure(&path) {
                return Err(invalid(
                    n,
                    &n.keyword,
                    format!(
                        "script `{}` is unsafe under enable_script_security: {why}; make it and its directories \
                         writable by root only, as Keepalived requires",
                        path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The file a command's first word runs: itself when it has a `/`, else the first match on `PATH`.
fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.exists().then_some(path);
    }
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Why `path` could be changed by someone other than root, if it can.
fn insecure(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    for p in path.ancestors() {
        let Ok(meta) = std::fs::metadata(p) else { continue };
        let mode = meta.permissions().mode();
        if meta.uid() != 0 {
            return Some(format!("{} belongs to uid {}, not root", p.display(), meta.uid()));
        }
        if mode & 0o022 != 0 {
            return Some(format!("{} is writable by its group or others (mode {:o})", p.display(), mode & 0o7777));
        }
    }
    None
}
