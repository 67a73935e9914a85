//! `tandem check`: validates the config and prints what it says, secrets named by source only.

use crate::config::{Config, PasswordSource, ServerKind};

use super::exit::{EXIT_OK, Failure, usage};

pub(super) fn check(file: &std::path::Path) -> Result<u8, Failure> {
    let config = Config::load(file)?;
    // What only the service reads is checked here too.
    config.http.token().map_err(|reason| {
        usage(format!(
            "{}: http.token_env: {reason}",
            config.file.display()
        ))
    })?;
    if let Some(files) = &config.http.tls {
        crate::service::tls::acceptor(files)
            .map_err(|reason| usage(format!("{}: {reason}", config.file.display())))?;
    }
    print!("{}", describe_config(&config));
    if config.pairs.is_empty() {
        println!(
            "note: no pairs: nothing will be synced (add [[pairs]] blocks or pairs_csv; see docs/configuration.md)"
        );
    }
    Ok(EXIT_OK)
}

/// The `push` line of `check`.
fn describe_push(c: &Config) -> String {
    let Some(base) = c.http.push_base() else {
        return "off (no http.public_url): every pair is polled".to_string();
    };
    format!(
        "servers push to {base}/push/…; push-driven pairs polled every {}; subscriptions for {}{}",
        humantime::format_duration(c.sync.safety_interval),
        humantime::format_duration(c.sync.push_lifetime),
        match c.http.tls.is_some() {
            true => "; https",
            false => "; the listener serves plain http (put TLS in front)",
        }
    )
}

/// What `check` prints: everything the config says, secrets named by source only.
pub(super) fn describe_config(c: &Config) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "config {}: OK", c.file.display());
    let _ = writeln!(o, "state    {}", c.state.describe());
    let window = |d: Option<std::time::Duration>| {
        d.map_or("unlimited".to_string(), |d| {
            humantime::format_duration(d).to_string()
        })
    };
    let _ = writeln!(
        o,
        "sync     interval {}, pause {}, backoff up to {}, window past {}, future {}, extras {:?}",
        humantime::format_duration(c.sync.interval),
        humantime::format_duration(c.sync.pause),
        humantime::format_duration(c.sync.backoff_max),
        window(c.sync.window_past),
        window(c.sync.window_future),
        c.sync.extras
    );
    let _ = writeln!(
        o,
        "http     {}{}",
        c.http.listen,
        c.http.token_env.as_ref().map_or_else(
            || "; resync over HTTP off (no token_env)".to_string(),
            |v| format!("; resync token from ${v}")
        )
    );
    let _ = writeln!(o, "push     {}", describe_push(c));
    let _ = writeln!(
        o,
        "alerts   lag over {}, failed requests over {}%",
        humantime::format_duration(c.alerts.lag),
        c.alerts.failed_requests_percent
    );
    describe_agents(&mut o, c);
    describe_servers(&mut o, c);
    describe_rewrite(&mut o, c);
    describe_pairs(&mut o, c);
    o
}

/// The `agents` lines of `check`: agents, their processors, passes at once.
fn describe_agents(o: &mut String, c: &Config) {
    use std::fmt::Write;
    let _ = writeln!(
        o,
        "agents   {} on {} online processors ({})",
        c.agents.count,
        crate::config::online_processors(),
        if c.agents.explicit {
            "explicit processor_indexes"
        } else {
            "default: agent i -> processor i mod N"
        }
    );
    for (i, p) in c.agents.processor_indexes.iter().enumerate() {
        let _ = writeln!(o, "  agent {i} -> processor {p}");
    }
    let _ = writeln!(o, "  {} passes at once per agent", c.agents.passes);
    if let Some(w) = c
        .agents
        .placement_warning(crate::config::online_processors())
    {
        let _ = writeln!(o, "  warning: {w}");
    }
}

/// The `servers` lines of `check`: kind, location, credentials by source, limits.
fn describe_servers(o: &mut String, c: &Config) {
    use std::fmt::Write;
    let _ = writeln!(o, "servers  {}", c.servers.len());
    for s in c.servers.values() {
        let limits = match (s.requests_per_second, s.max_concurrency) {
            (None, None) => String::new(),
            (r, m) => format!(
                " ({}{})",
                r.map_or(String::new(), |r| format!("{r} req/s")),
                m.map_or(String::new(), |m| format!(", at most {m} at once"))
            ),
        };
        match &s.kind {
            ServerKind::Vdir { path } => {
                let _ = writeln!(o, "  {:<12} vdir   {}{limits}", s.name, path.display());
            }
            ServerKind::Caldav {
                url,
                username,
                password,
            } => {
                let auth = match (username, password) {
                    (Some(u), Some(PasswordSource::Env(v))) => {
                        format!(" as {u}, password from ${v}")
                    }
                    (Some(u), Some(PasswordSource::File(f))) => {
                        format!(" as {u}, password from {}", f.display())
                    }
                    (Some(u), None) => format!(" as {u}"),
                    (None, _) => " without credentials".to_string(),
                };
                let _ = writeln!(o, "  {:<12} caldav {url}{auth}{limits}", s.name);
            }
        }
    }
}

/// The `rewrite` lines of `check`: domains and addresses, both ways.
fn describe_rewrite(o: &mut String, c: &Config) {
    use std::fmt::Write;
    let r = &c.rewrite;
    let _ = writeln!(
        o,
        "rewrite  {} domain(s), {} address(es){}",
        r.domains.len(),
        r.addresses.len(),
        r.addresses_file
            .as_ref()
            .map_or(String::new(), |f| format!(" from {}", f.display()))
    );
    for (from, to) in &r.domains {
        let _ = writeln!(o, "  @{from} -> @{to}");
    }
    for (from, to) in &r.reverse_domains {
        let _ = writeln!(o, "  back: @{from} -> @{to}");
    }
    if !r.reverse_addresses.is_empty() {
        let _ = writeln!(o, "  back: {} address(es)", r.reverse_addresses.len());
    }
}

/// The `pairs` lines of `check`: each pair, its direction and mailbox.
fn describe_pairs(o: &mut String, c: &Config) {
    use std::fmt::Write;
    let _ = writeln!(o, "pairs    {}", c.pairs.len());
    let mailbox: std::collections::HashMap<&str, &str> = c
        .addresses
        .iter()
        .map(|(addr, id)| (id.as_str(), addr.as_str()))
        .collect();
    for p in &c.pairs {
        let (arrow, way) = match p.direction {
            crate::domain::direction::Direction::OneWay => ("->", String::new()),
            crate::domain::direction::Direction::TwoWay => (
                "<->",
                format!("  (two-way, conflicts: {})", p.conflict.as_str()),
            ),
        };
        let _ = writeln!(
            o,
            "  {:<20} {} {arrow} {}{way}{}",
            p.id,
            p.source,
            p.target,
            mailbox
                .get(p.id.as_str())
                .map_or(String::new(), |a| format!("  (mailbox {a})"))
        );
    }
}
