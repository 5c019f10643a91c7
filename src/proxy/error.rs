//! Why the proxy does not start: a setting that is wrong ([`ConfigError`])
//! or a resource it cannot have ([`StartError`]). Every file of the proxy
//! may report one; this file imports none of them.

use std::path::PathBuf;

/// A setting that keeps the proxy from starting. Each message is one line
/// naming the setting and its source, never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown or mistyped keys.
    #[error("config file {path}, line {line}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Any other invalid setting.
    #[error("{0}")]
    Invalid(String),
}

pub(super) fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// The proxy could not start. One line, naming the setting; never a secret.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    message: String,
}

impl StartError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        StartError {
            message: message.into(),
        }
    }
}
