//! How a command ends: exit codes, the failure that carries one, and opening the state a
//! command needs (a refusal is a failure with its code).

use crate::config::{Config, ConfigError};
use crate::state::State;

pub(crate) const EXIT_OK: u8 = 0;
pub(crate) const EXIT_FATAL: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_PARTIAL: u8 = 3;

/// An error with the exit code it maps to.
pub struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: e.to_string(),
        }
    }
}

impl From<crate::state::StateError> for Failure {
    fn from(e: crate::state::StateError) -> Self {
        Failure {
            code: EXIT_FATAL,
            message: e.to_string(),
        }
    }
}

/// Opens the state of `config`. Refuses (exit 2) when a cut-over pair would write back to the
/// old org and the rewrite has no way back (the config changed after the cutover).
pub(crate) async fn open_state(config: &Config) -> Result<State, Failure> {
    let state = crate::engine::connect_state(&config.state).await?;
    if let Err(e) = config.rewrite.inverse() {
        let cut = state.cutovers().await?;
        let mut ids: Vec<&str> = config
            .pairs
            .iter()
            .map(|p| p.id.as_str())
            .filter(|id| cut.contains_key(*id))
            .collect();
        if !ids.is_empty() {
            state.close().await;
            ids.truncate(3);
            return Err(usage(format!(
                "{}: rewrite: {e} (needed by the cut-over pairs {}{})",
                config.file.display(),
                ids.join(", "),
                if cut.len() > 3 { ", ..." } else { "" }
            )));
        }
    }
    Ok(state)
}

pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message: message.into(),
    }
}
