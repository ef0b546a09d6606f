//! Errors of the control plane: reading, parsing and validating a config.

use std::path::PathBuf;

/// Why a config (file or API body) was rejected.
///
/// Every variant's message tells the operator what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid JSON, or does not fit the schema (unknown field,
    /// wrong type, unknown enum value such as a scheduler name).
    #[error("invalid config at line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// serde's description, naming the offending field, type or value.
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

    /// The JSON path of the offending field, for [`ConfigError::Invalid`].
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Converts a serde_json error, keeping its line and column apart from the message.
    pub fn from_json_error(err: &serde_json::Error) -> Self {
        let full = err.to_string();
        // serde_json appends " at line L column C"; we report those separately.
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        ConfigError::Parse { line: err.line(), column: err.column(), message }
    }
}
