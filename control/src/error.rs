//! Errors of the control plane: reading, parsing and validating a config.

use std::path::PathBuf;

/// Why a config (file or API body) was rejected.
///
/// Every variant's message tells the operator what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid JSON, or does not fit the schema (unknown field,
    /// wrong type, unknown enum value such as a scheduler name).
    #[error("invalid config at line {line}, column {column}: {}{message}", field_prefix(field))]
    Parse {
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// Where in the config, in JSON-path form (`ports[0].addresses[1]`,
        /// `services[0].wieght` for an unknown field); `None` for a syntax
        /// error or a problem of the whole document.
        field: Option<String>,
        /// serde's description of the offending type or value.
        message: String,
    },
    /// The JSON parsed but breaks a rule, e.g. a weight out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// Where in the config, in JSON-path form: `services[1].reals[0].weight`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { field: field.into(), message: message.into() }
    }

    /// The JSON path of the offending field, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            ConfigError::Parse { field, .. } => field.as_deref(),
            ConfigError::Io { .. } => None,
        }
    }

    /// Converts a serde_json error found at `path` (serde_path_to_error's
    /// display of it; `.` or `None` is the document itself), keeping line and column apart from the
    /// message. An unknown field is named by its own path (`services[0].wieght`).
    pub fn from_json_error(path: Option<String>, err: &serde_json::Error) -> Self {
        let full = err.to_string();
        // serde_json appends " at line L column C"; we report those separately.
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        let parent = path.filter(|p| p != ".");
        let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')).map(|(name, _)| name);
        let field = match (parent, unknown) {
            // serde_path_to_error's path may already end with the unknown field.
            (Some(parent), Some(name)) if parent == name || parent.ends_with(&format!(".{name}")) => Some(parent),
            (Some(parent), Some(name)) => Some(format!("{parent}.{name}")),
            (None, Some(name)) => Some(name.to_string()),
            (parent, None) => parent,
        };
        let field = field.filter(|_| err.is_data());
        ConfigError::Parse { line: err.line(), column: err.column(), field, message }
    }
}

fn field_prefix(field: &Option<String>) -> String {
    field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
}
