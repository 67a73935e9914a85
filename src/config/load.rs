//! Reading a config file: TOML parsed into the raw form (its errors with their line), then
//! validated.

use std::path::{Path, PathBuf};

use crate::domain::mailbox::Mailbox;
use crate::domain::pair::Pair;

use super::raw::Raw;
use super::types::{Config, ConfigError, ConfigIssue};
use super::validate::Validator;

impl Config {
    /// Reads and validates a config file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigError(vec![ConfigIssue {
                file: file.to_path_buf(),
                key: "(file)".into(),
                reason: format!(
                    "cannot read: {e} (name the config file with -c FILE or the TANDEM_CONFIG \
                     environment variable; config/tandem.example.toml is a start)"
                ),
            }])
        })?;
        Config::from_toml(file, &text)
    }

    /// Validates config text as if read from `file` (relative paths resolve against its folder).
    pub fn from_toml(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut v = Validator {
            file: file.to_path_buf(),
            file_override: None,
            issues: Vec::new(),
        };
        let raw: Raw = match parse_raw(text) {
            Ok(raw) => raw,
            Err((key, reason)) => {
                v.issue(key, reason);
                return Err(ConfigError(v.issues));
            }
        };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let config = v.validate(raw, &base);
        if v.issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(v.issues))
        }
    }

    pub fn pair(&self, id: &str) -> Option<&Pair> {
        self.pairs.iter().find(|p| p.id.as_str() == id)
    }

    pub fn mailbox(&self, id: &str) -> Option<&Mailbox> {
        self.mailboxes.iter().find(|m| m.id.as_str() == id)
    }
}

fn parse_raw(text: &str) -> Result<Raw, (String, String)> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| ("(syntax)".to_string(), toml_reason(text, &e)))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = if path == "." || path.is_empty() {
            "(top level)".to_string()
        } else {
            path
        };
        (key, toml_reason(text, &inner))
    })
}

fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{msg} (line {line})")
        }
        None => msg,
    }
}
