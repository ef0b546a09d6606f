//! Crash-safe writing of the config file.
//!
//! [`write_atomic`] never leaves a half-written file behind: it writes the new
//! text to a temporary file in the same directory (`.NAME.tmp`), flushes it to
//! disk (`fsync`), renames it over the target (atomic on POSIX file systems)
//! and then flushes the directory so the rename itself survives a power loss.
//! A crash at any point leaves either the old file or the new one, whole; a
//! leftover temporary file is replaced by the next write.
//!
//! The file stays the operator's: the config holds secrets (`api.token`,
//! `sync.key`), so the temporary file is created readable by its owner only
//! and given the old file's mode, owner and group before the rename (a new
//! file stays 0600, owned by rvsd's user). A symlink is followed: the file it
//! points to is replaced (in its own directory) and the link stays a link.
//!
//! Writes are not meant to race each other: the REST API serialises them
//! under its config lock, and one rvsd owns one config file.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The temporary file [`write_atomic`] writes before renaming: `.NAME.tmp`
/// beside `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or(path.as_os_str()));
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces the contents of `path` with `data` atomically (see the module docs).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_with(path, data, |_| Ok(()))
}

/// [`write_atomic`] with a hook run after the temporary file is written and
/// flushed, just before the rename. A hook that fails aborts the write (the
/// temporary file is removed, `path` is untouched); tests use it to stand
/// for a crash or a full disk between the write and the rename.
pub fn write_atomic_with(path: &Path, data: &[u8], before_rename: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let target = follow_symlinks(path)?;
    let path = target.as_path();
    let tmp = temp_path(path);
    let result = (|| {
        // A leftover may have another owner or mode: start afresh, owner-only.
        if tmp.is_file() {
            std::fs::remove_file(&tmp)?;
        }
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(data)?;
        if let Ok(old) = std::fs::metadata(path) {
            // Owner first: chown clears set-id bits, the mode then restores them.
            std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()))?;
            file.set_permissions(old.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        before_rename(&tmp)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // Best effort: the temporary file is garbage now (unless it is not a file at all).
        if tmp.is_file() {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(e);
    }
    sync_dir(path)
}

/// The file `path` names once every symlink is resolved (relative links
/// against their own directory). A path that is no link is returned as it is;
/// a dangling link resolves to where it points, so the first write creates the
/// target there. Gives up after 40 links, as the kernel does (ELOOP).
fn follow_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = match current.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(io::Error::other(format!("{}: too many levels of symbolic links", path.display())))
}

/// Flushes the directory holding `path`, so a rename into it is durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rvs-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn writes_and_replaces() {
        let dir = scratch("replace");
        let path = dir.join("rvs.json");
        write_atomic(&path, b"one").expect("first write");
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        write_atomic(&path, b"two, longer").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two, longer");
        assert!(!temp_path(&path).exists(), "temporary file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failure_before_rename_keeps_the_old_file() {
        let dir = scratch("fail");
        let path = dir.join("rvs.json");
        write_atomic(&path, b"old").expect("write");
        let err = write_atomic_with(&path, b"new", |tmp| {
            // The new text is complete in the temporary file, not in the target.
            assert_eq!(std::fs::read(tmp).expect("tmp"), b"new");
            Err(io::Error::other("simulated crash"))
        })
        .expect_err("hook fails");
        assert_eq!(err.to_string(), "simulated crash");
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert!(!temp_path(&path).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let path = dir.join("rvs.json");
        write_atomic(&path, b"new").expect("write");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "a new file is owner-only");
        for m in [0o640, 0o600, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).expect("chmod");
            write_atomic(&path, b"{\"sync\": {\"key\": \"secret\"}}").expect("rewrite");
            assert_eq!(mode(&path), m);
        }
        // A permissive leftover temporary file is not reused.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(temp_path(&path), b"junk").expect("leftover");
        std::fs::set_permissions(temp_path(&path), std::fs::Permissions::from_mode(0o666)).expect("chmod");
        write_atomic(&path, b"again").expect("rewrite");
        assert_eq!(mode(&path), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlink_stays_a_link_and_its_target_is_replaced() {
        let dir = scratch("symlink");
        std::fs::create_dir_all(dir.join("real")).expect("mkdir");
        std::fs::write(dir.join("real/rvs.json"), b"old").expect("target");
        std::os::unix::fs::symlink("real/rvs.json", dir.join("rvs.json")).expect("relative link");
        std::os::unix::fs::symlink(dir.join("rvs.json"), dir.join("link2")).expect("link to a link");
        write_atomic(&dir.join("link2"), b"new").expect("write through two links");
        for link in ["rvs.json", "link2"] {
            assert!(std::fs::symlink_metadata(dir.join(link)).expect("lstat").file_type().is_symlink(), "{link} replaced");
        }
        assert_eq!(std::fs::read(dir.join("real/rvs.json")).expect("read"), b"new");
        assert!(!temp_path(&dir.join("real/rvs.json")).exists() && !temp_path(&dir.join("link2")).exists());
        // A loop is an error, not a hang, and writes nothing.
        std::os::unix::fs::symlink("loop_b", dir.join("loop_a")).expect("link");
        std::os::unix::fs::symlink("loop_a", dir.join("loop_b")).expect("link");
        let err = write_atomic(&dir.join("loop_a"), b"x").expect_err("loop");
        assert!(err.to_string().contains("too many levels"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_keeps_its_owner_and_group() {
        let dir = scratch("owner");
        let path = dir.join("rvs.json");
        std::fs::write(&path, b"old").expect("write");
        // Only root may give a file away; elsewhere the owner is rvsd's own.
        let (uid, gid) = (65534, 65534);
        if std::os::unix::fs::chown(&path, Some(uid), Some(gid)).is_err() {
            eprintln!("not root: owner test limited to the current user");
            let (uid, gid) = (std::fs::metadata(&path).expect("stat").uid(), std::fs::metadata(&path).expect("stat").gid());
            write_atomic(&path, b"new").expect("rewrite");
            let meta = std::fs::metadata(&path).expect("stat");
            assert_eq!((meta.uid(), meta.gid()), (uid, gid));
            return;
        }
        write_atomic(&path, b"new").expect("rewrite");
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "owner and group kept");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn temp_path_is_hidden_beside_the_file() {
        assert_eq!(temp_path(Path::new("/etc/rvs/rvs.json")), PathBuf::from("/etc/rvs/.rvs.json.tmp"));
        assert_eq!(temp_path(Path::new("rvs.json")), PathBuf::from(".rvs.json.tmp"));
    }
}
