//! Running rvs from a Keepalived configuration (`rvsd --keepalived FILE`).
//!
//! [`load`] and [`parse_str`] read a keepalived.conf and produce an rvs
//! [`Config`]: the keepalived file gives the virtual services (with their health
//! checks), the VRRP instances, sync groups and track scripts, the connection
//! sync and the LVS timeouts; `base` (the JSON config given with `--config`)
//! gives everything keepalived.conf does not describe — EAL arguments, lcores,
//! ports and their addresses, routes, the API. The `services`, `vrrp` and `sync`
//! of `base` are replaced by what the keepalived file says.
//!
//! Interface names (`interface`, `track_interface`, `dev`, `lvs_sync_daemon`,
//! `local_address_group` entries) name rvs ports: either the port's `name`
//! (`lan0`) or the kernel interface of its device (`dp0` in
//! `net_af_packet0,iface=dp0`).
//!
//! Nothing is silently ignored: a keyword rvs does not know is an
//! [`KeepalivedError::UnknownKeyword`], a Keepalived keyword rvs does not
//! implement is [`KeepalivedError::Unsupported`], both with file and line. A
//! short list of keywords that have no meaning for rvs (mail notification,
//! process priorities, ...) is accepted and ignored; `deploy/docs/keepalived.md`
//! lists every keyword in each of the three groups.
//!
//! [`import_str`] / [`import_file`] also return the health settings of each real
//! server ([`Imported::real_health`]); see there.

mod scripts;
mod syntax;
mod translate;

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::ha::RealHealth;

pub use translate::{IGNORED_KEYWORDS, UNSUPPORTED_KEYWORDS};

/// Name used for the text given to [`parse_str`] / [`import_str`] in errors.
pub const INPUT_NAME: &str = "<keepalived.conf>";

/// Why a keepalived.conf was rejected. Every variant names the file, the
/// 1-based line (0 when the error is not tied to a line, e.g. an unreadable
/// main file) and the keyword concerned.
#[derive(Debug, thiserror::Error)]
pub enum KeepalivedError {
    /// Malformed text: unbalanced braces, unterminated quote, missing or extra values.
    #[error("{}:{line}: syntax error{}: {message}", file.display(), near(keyword))]
    Syntax {
        /// File of the error.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The keyword concerned (may be empty).
        keyword: String,
        /// What is wrong.
        message: String,
    },
    /// A keyword neither rvs nor (as far as rvs knows) Keepalived has at this place.
    #[error("{}:{line}: unknown keyword `{keyword}` {message}", file.display())]
    UnknownKeyword {
        /// File of the keyword.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The keyword.
        keyword: String,
        /// Where it was found (`in vrrp_instance VI_1`).
        message: String,
    },
    /// A Keepalived keyword (or value) rvs does not implement.
    #[error("{}:{line}: `{keyword}` is not supported by rvs: {message}", file.display())]
    Unsupported {
        /// File of the keyword.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The keyword.
        keyword: String,
        /// Why, and what to do instead.
        message: String,
    },
    /// A known keyword with a bad value (`lb_kind XYZ`, `priority 300`, an unknown port).
    #[error("{}:{line}: invalid `{keyword}`: {message}", file.display())]
    Invalid {
        /// File of the keyword.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The keyword.
        keyword: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A file could not be read: the main file (line 0) or an `include`.
    #[error("{}:{line}: {message}", file.display())]
    Include {
        /// The main file, or the file holding the `include`.
        file: PathBuf,
        /// Line of the `include` (0 for the main file).
        line: usize,
        /// `include`, or empty for the main file.
        keyword: String,
        /// Which file and the operating system's error.
        message: String,
    },
    /// The translated config breaks an rvs rule ([`Config::validate`]); `file`,
    /// `line` and `keyword` are those of the block the field came from
    /// (`virtual_server`, `real_server`, `vrrp_instance`, ...).
    #[error("{}:{line}: `{keyword}` gives an invalid rvs config: {field}: {message}", file.display())]
    Config {
        /// File of the block.
        file: PathBuf,
        /// 1-based line of the block (0 when it comes from the base config).
        line: usize,
        /// Keyword of the block.
        keyword: String,
        /// The rvs field in JSON-path form (`services[1].reals[0].weight`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn near(keyword: &str) -> String {
    if keyword.is_empty() {
        String::new()
    } else {
        format!(" at `{keyword}`")
    }
}

impl KeepalivedError {
    /// Exit status of `rvsd --check-config` for this error: 10 syntax,
    /// 11 unknown keyword, 12 unsupported, 13 invalid value, 14 include / file
    /// error, 15 the resulting rvs config is invalid.
    pub fn exit_code(&self) -> u8 {
        match self {
            KeepalivedError::Syntax { .. } => 10,
            KeepalivedError::UnknownKeyword { .. } => 11,
            KeepalivedError::Unsupported { .. } => 12,
            KeepalivedError::Invalid { .. } => 13,
            KeepalivedError::Include { .. } => 14,
            KeepalivedError::Config { .. } => 15,
        }
    }

    /// The file the error is in.
    pub fn file(&self) -> &Path {
        match self {
            KeepalivedError::Syntax { file, .. }
            | KeepalivedError::UnknownKeyword { file, .. }
            | KeepalivedError::Unsupported { file, .. }
            | KeepalivedError::Invalid { file, .. }
            | KeepalivedError::Include { file, .. }
            | KeepalivedError::Config { file, .. } => file,
        }
    }

    /// The 1-based line of the error (0: not tied to a line).
    pub fn line(&self) -> usize {
        match self {
            KeepalivedError::Syntax { line, .. }
            | KeepalivedError::UnknownKeyword { line, .. }
            | KeepalivedError::Unsupported { line, .. }
            | KeepalivedError::Invalid { line, .. }
            | KeepalivedError::Include { line, .. }
            | KeepalivedError::Config { line, .. } => *line,
        }
    }

    /// The keyword concerned (may be empty).
    pub fn keyword(&self) -> &str {
        match self {
            KeepalivedError::Syntax { keyword, .. }
            | KeepalivedError::UnknownKeyword { keyword, .. }
            | KeepalivedError::Unsupported { keyword, .. }
            | KeepalivedError::Invalid { keyword, .. }
            | KeepalivedError::Include { keyword, .. }
            | KeepalivedError::Config { keyword, .. } => keyword,
        }
    }
}

/// A translated keepalived.conf.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The rvs config (validated).
    pub config: Config,
    /// Health settings of each real server — checkers, `inhibit_on_failure`,
    /// `notify_up` / `notify_down` — indexed like the reals:
    /// `real_health[i][j]` belongs to `config.services[i].reals[j]`.
    /// (Kept beside the config while [`crate::config::RealConfig`] has no
    /// field for them.)
    pub real_health: Vec<Vec<RealHealth>>,
}

/// Reads the keepalived.conf at `path` (and its includes) and returns the rvs
/// config it describes on top of `base`. See the module docs.
pub fn load(path: &Path, base: &Config) -> Result<Config, KeepalivedError> {
    import_file(path, base).map(|i| i.config)
}

/// As [`load`], for keepalived.conf text (named [`INPUT_NAME`] in errors;
/// `include` paths are relative to the current directory).
pub fn parse_str(text: &str, base: &Config) -> Result<Config, KeepalivedError> {
    import_str(text, base).map(|i| i.config)
}

/// As [`load`], also returning each real server's health settings.
pub fn import_file(path: &Path, base: &Config) -> Result<Imported, KeepalivedError> {
    let nodes = syntax::parse_file(path)?;
    translate::translate(&nodes, base, path)
}

/// As [`parse_str`], also returning each real server's health settings.
pub fn import_str(text: &str, base: &Config) -> Result<Imported, KeepalivedError> {
    let name = Path::new(INPUT_NAME);
    let nodes = syntax::parse_text(text, name, Path::new("."))?;
    translate::translate(&nodes, base, name)
}
