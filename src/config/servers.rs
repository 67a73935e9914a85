//! Validating `[servers.NAME]`: where a server is, its credentials (by source, never the
//! secret itself), its request limits, and where it keeps a user's calendars.

use std::path::Path;

use crate::domain::mailbox::Home;

use super::defaults::{DEFAULT_MAX_ANSWER, DEFAULT_REQUEST_TIMEOUT, VDIR_HOME, byte_size};
use super::raw::RawServer;
use super::types::{PasswordSource, ServerConfig, ServerKind};
use super::validate::Validator;

impl Validator {
    /// `max_answer_size`: a size from 64 KiB to 4 GiB, else the default (and an issue).
    pub(super) fn max_answer(&mut self, key: &str, raw: Option<&str>) -> usize {
        match raw.map(byte_size) {
            None => DEFAULT_MAX_ANSWER,
            Some(Some(n)) if (64 << 10..=4 << 30).contains(&n) => n,
            Some(_) => {
                self.issue(
                    key.to_string(),
                    "is not a size from \"64 KiB\" to \"4 GiB\" (bytes, or a number with kB, MB, GB, KiB, MiB or GiB)",
                );
                DEFAULT_MAX_ANSWER
            }
        }
    }

    pub(super) fn server(
        &mut self,
        name: &str,
        mut raw: RawServer,
        base: &Path,
    ) -> Option<ServerConfig> {
        let key = |k: &str| format!("servers.{name}.{k}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.issue(
                format!("servers.{name}"),
                "a server name may only use letters, digits, - and _",
            );
        }
        let rps = match raw.requests_per_second {
            None => None,
            Some(n) if (1..=100_000).contains(&n) => Some(n as u32),
            Some(n) => {
                self.issue(
                    key("requests_per_second"),
                    format!("{n} is not between 1 and 100000"),
                );
                None
            }
        };
        let conc = match raw.max_concurrency {
            None => None,
            Some(n) if (1..=1024).contains(&n) => Some(n as usize),
            Some(n) => {
                self.issue(
                    key("max_concurrency"),
                    format!("{n} is not between 1 and 1024"),
                );
                None
            }
        };
        let writes = match &raw.write_concurrency {
            None => None,
            Some(toml::Value::String(s)) if s == "adaptive" => None,
            Some(toml::Value::Integer(n)) if (1..=1024).contains(n) => Some(*n as usize),
            Some(v) => {
                self.issue(
                    key("write_concurrency"),
                    format!("{v} is neither \"adaptive\" nor a number from 1 to 1024"),
                );
                None
            }
        };
        let timeout = self
            .duration(&key("timeout"), raw.timeout.as_deref())
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let max_answer = self.max_answer(&key("max_answer_size"), raw.max_answer_size.as_deref());
        let vdir = raw.kind == "vdir";
        let home = self.home(name, raw.home.take(), raw.principal.take(), vdir);
        let default_calendar = raw.default_calendar.take().filter(|d| {
            let ok = !d.is_empty() && !d.contains('/') && d != "." && d != "..";
            if !ok {
                self.issue(
                    key("default_calendar"),
                    format!(
                        "{d:?} is not one path segment (the default calendar's name in a home)"
                    ),
                );
            }
            ok
        });
        let kind = self.server_kind(name, raw, base)?;
        Some(ServerConfig {
            name: name.to_string(),
            kind,
            requests_per_second: rps,
            max_concurrency: conc,
            write_concurrency: writes,
            timeout,
            max_answer,
            home,
            default_calendar,
        })
    }

    /// Where `servers.<name>` keeps a user's calendars: `home`, or `principal` (caldav), not
    /// both; a vdir server's home is the user's folder unless `home` says otherwise.
    fn home(
        &mut self,
        name: &str,
        home: Option<String>,
        principal: Option<String>,
        vdir: bool,
    ) -> Option<Home> {
        let key = |k: &str| format!("servers.{name}.{k}");
        let (k, rule) = match (home, principal) {
            (Some(_), Some(_)) => {
                self.issue(key("principal"), "give either home or principal, not both");
                return None;
            }
            (_, Some(_)) if vdir => {
                self.issue(
                    key("principal"),
                    "not used by a vdir server (it has `home`)",
                );
                return None;
            }
            (Some(h), None) => ("home", Home::Path(h)),
            (None, Some(p)) => ("principal", Home::Principal(p)),
            (None, None) if vdir => return Some(Home::Path(VDIR_HOME.to_string())),
            (None, None) => return None,
        };
        let (Home::Path(t) | Home::Principal(t)) = &rule;
        match Home::check_template(t) {
            Ok(()) => Some(rule),
            Err(e) => {
                self.issue(key(k), e);
                None
            }
        }
    }

    /// What kind of server `servers.<name>` is, and where it is.
    pub(super) fn server_kind(
        &mut self,
        name: &str,
        raw: RawServer,
        base: &Path,
    ) -> Option<ServerKind> {
        let key = |k: &str| format!("servers.{name}.{k}");
        let kind = match raw.kind.as_str() {
            "vdir" => {
                for (k, set) in [
                    ("url", raw.url.is_some()),
                    ("username", raw.username.is_some()),
                    ("password_env", raw.password_env.is_some()),
                    ("password_file", raw.password_file.is_some()),
                ] {
                    if set {
                        self.issue(key(k), "not used by a vdir server (it has only `path`)");
                    }
                }
                let Some(path) = raw.path else {
                    self.issue(
                        key("path"),
                        "a vdir server needs `path`, the folder that holds its calendars",
                    );
                    return None;
                };
                let path = base.join(path);
                if !path.is_dir() {
                    self.issue(
                        key("path"),
                        format!("folder {} does not exist", path.display()),
                    );
                    return None;
                }
                ServerKind::Vdir { path }
            }
            "caldav" => {
                if raw.path.is_some() {
                    self.issue(key("path"), "not used by a caldav server (it has `url`)");
                }
                let Some(url) = raw.url else {
                    self.issue(key("url"), "a caldav server needs `url`");
                    return None;
                };
                if !(url.starts_with("https://") || url.starts_with("http://"))
                    || url.contains(char::is_whitespace)
                {
                    self.issue(key("url"), format!("{url:?} is not an http(s) URL"));
                    return None;
                }
                if url.split_once("://").is_some_and(|(_, rest)| {
                    rest.split('/').next().is_some_and(|h| h.contains('@'))
                }) {
                    self.issue(
                        key("url"),
                        "must not carry credentials; use username and password_env/password_file",
                    );
                    return None;
                }
                let password_given = raw.password_env.is_some() || raw.password_file.is_some();
                let password = self.password(
                    &format!("servers.{name}"),
                    raw.password_env,
                    raw.password_file,
                    base,
                );
                if raw.username.is_some() && !password_given {
                    self.issue(
                        key("password_env"),
                        "a username needs a password from password_env or password_file",
                    );
                }
                ServerKind::Caldav {
                    url,
                    username: raw.username,
                    password,
                }
            }
            other => {
                self.issue(
                    key("kind"),
                    format!("unknown server kind {other:?} (known: \"caldav\", \"vdir\")"),
                );
                return None;
            }
        };
        Some(kind)
    }

    /// Where a password comes from: `password_env` or `password_file` under `section`, not both.
    pub(super) fn password(
        &mut self,
        section: &str,
        env: Option<String>,
        file: Option<String>,
        base: &Path,
    ) -> Option<PasswordSource> {
        let key = |k: &str| format!("{section}.{k}");
        match (env, file) {
            (Some(_), Some(_)) => {
                self.issue(
                    key("password_env"),
                    "give either password_env or password_file, not both",
                );
                None
            }
            (Some(var), None) => {
                if std::env::var_os(&var).is_none() {
                    self.issue(
                        key("password_env"),
                        format!("environment variable {var} is not set"),
                    );
                }
                Some(PasswordSource::Env(var))
            }
            (None, Some(file)) => self
                .existing_file(&key("password_file"), base, &file)
                .map(PasswordSource::File),
            (None, None) => None,
        }
    }
}
