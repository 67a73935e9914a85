//! `tandem run`: the agent pool, this node among the others, push and the status server, until
//! SIGINT or SIGTERM.

use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use super::exit::{EXIT_FATAL, EXIT_OK, Failure, open_state, usage};
use crate::config::{Config, online_processors};
use crate::domain::mailbox::Mailbox;
use crate::domain::pair::Pair;
use crate::engine::Engine;
use crate::service::nodes::{Coordinator, Membership};
use crate::service::pool::{self, Pool};
use crate::service::scheduler::Policy;
use crate::state::NodeInfo;

/// Runs the agent pool until SIGINT or SIGTERM, then stops: no new passes, in-flight ones get a
/// few seconds, leases are released, exit 0.
pub(super) async fn serve(file: &Path) -> Result<u8, Failure> {
    let mut config = Config::load(file)?;
    let state = open_state(&config).await?;
    let online = online_processors();
    if let Some(w) = config.agents.placement_warning(online) {
        warn!("{w}");
    }
    let engine = Arc::new(Engine::new(&config, state.clone()));
    // The mailboxes' calendars are pairs like the others from here on.
    let mailbox_pairs = discovered(&config, &engine).await?;
    config.pairs.extend(mailbox_pairs.iter().cloned());
    let specs = pool::plan(&config);
    log_plan(&specs, &config, &engine);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure {
        code: EXIT_FATAL,
        message: format!("cannot listen for SIGTERM: {e}"),
    })?;
    let Front {
        token,
        tls,
        listener,
    } = front_door(&config).await?;
    // This node's share of the pairs, claimed and rebalanced by its coordinator.
    let membership = Membership::new();
    let listen = listener
        .local_addr()
        .map_or_else(|_| config.http.listen.to_string(), |a| a.to_string());
    let coordinator = coordinator(&config, &state, &engine, &membership, &listen);
    let (stop_node, node_stopped) = tokio::sync::watch::channel(false);
    let node = tokio::spawn(coordinator.run(node_stopped.clone()));
    let hub = crate::service::push::PushHub::new(specs.iter().map(|s| (s.index, &s.pairs[..])));
    let keeper = push_keeper(&config, &engine, &hub, &membership, node_stopped);
    let pool = Pool::start(
        specs,
        engine.clone(),
        Policy::from_config(&config),
        config.agents.passes,
        membership.clone(),
        hub.clone(),
    )
    .map_err(|e| Failure {
        code: EXIT_FATAL,
        message: format!("cannot start the agents: {e}"),
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(
        target: super::logging::LISTENING,
        pairs = config.pairs.len(),
        "status page, API and /metrics on {scheme}://{listen}/"
    );
    let web = Arc::new(crate::service::web::Web::new(
        Arc::new(config.clone()),
        state.clone(),
        engine.clone(),
        crate::service::observe::Live {
            agents: pool.agents(),
            membership: Some(membership),
            engine: Some(engine.clone()),
            push: keeper.as_ref().map(|_| hub.clone()),
        },
        token,
    ));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = spawn_http(web, listener, tls, async {
        let _ = http_stopped.await;
    })
    .map_err(|e| Failure {
        code: EXIT_FATAL,
        message: format!("cannot serve https on {listen}: {e}"),
    })?;
    let ids: Vec<&str> = config.pairs.iter().map(|p| p.id.as_str()).collect();
    let why = until_signal(
        &engine,
        (&state, &ids),
        &mut terminate,
        rediscover(&config, &engine, mailbox_pairs),
    )
    .await;
    Running {
        pool,
        stop_node,
        node,
        keeper,
        stop_http,
        http,
    }
    .stop(&engine, &state)
    .await?;
    match why {
        Stop::Signal => Ok(EXIT_OK),
        Stop::Calendars => Err(restart()),
    }
}

/// Discovery for this node's share of the mailboxes, its outcome logged; the pairs of every
/// mailbox's calendars as recorded (by whichever node discovered them).
async fn discovered(config: &Config, engine: &Engine) -> Result<Vec<Pair>, Failure> {
    let mailboxes = my_mailboxes(config, engine).await?;
    for r in engine
        .discover_all(&mailboxes, &config.pairs, false)
        .await?
    {
        match &r.error {
            Some(e) => {
                warn!(mailbox = %r.id, error = %e, "discovery failed; its calendars known so far sync")
            }
            None => info!(mailbox = %r.id, calendars = r.calendars.len(), "mailbox discovered"),
        }
    }
    Ok(super::mailboxes::recorded(&engine.state, &config.mailboxes).await?)
}

/// The mailboxes this node discovers: its share among the live nodes (as for pairs), so one
/// node asks a mailbox's servers, and every mailbox never discovered (its share may be a node
/// that died unseen, or not know it yet). Two nodes discovering one mailbox take turns under its
/// lease; the second finds it paired.
async fn my_mailboxes<'c>(
    config: &'c Config,
    engine: &Engine,
) -> Result<Vec<&'c Mailbox>, Failure> {
    let known: std::collections::HashSet<String> =
        (engine.state.all_mailbox_calendars().await?.into_iter())
            .map(|(mailbox, _)| mailbox)
            .collect();
    let me = engine.holder();
    let mut live: Vec<String> = (engine.state.nodes().await?.into_iter())
        .filter(|n| n.status == "alive" && n.id != me)
        .map(|n| n.id)
        .chain([me.to_string()])
        .collect();
    live.sort();
    let ids: Vec<&str> = config.mailboxes.iter().map(|m| m.id.as_str()).collect();
    Ok((config.mailboxes.iter())
        .zip(crate::service::nodes::mine(&ids, &live, me))
        .filter(|(m, mine)| *mine || !known.contains(m.id.as_str()))
        .map(|(m, _)| m)
        .collect())
}

/// Discovery again every `[sync] discover_interval`; ends when the mailboxes' calendars to sync
/// are no longer `running` (one added, one gone).
async fn rediscover(config: &Config, engine: &Engine, running: Vec<Pair>) {
    if config.mailboxes.is_empty() {
        return std::future::pending().await;
    }
    let mut config = config.clone();
    config.pairs.retain(|p| p.id.mailbox().is_none());
    let ids = |pairs: &[Pair]| {
        let mut ids: Vec<String> = pairs.iter().map(|p| p.id.to_string()).collect();
        ids.sort();
        ids
    };
    let running = ids(&running);
    loop {
        tokio::time::sleep(config.sync.discover_interval).await;
        match discovered(&config, engine).await {
            Ok(now) if ids(&now) != running => {
                info!(
                    was = running.len(),
                    now = now.len(),
                    "the mailboxes' calendars changed; restarting to sync them"
                );
                return;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e.message, "discovery failed; trying again at the next interval")
            }
        }
    }
}

/// Starts this program again with the same arguments, in this process: a service whose pairs
/// changed takes them on as it would at a start. Returns only if that failed.
fn restart() -> Failure {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe();
    let e = match &exe {
        Ok(exe) => std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .exec(),
        Err(e) => std::io::Error::new(e.kind(), e.to_string()),
    };
    Failure {
        code: EXIT_FATAL,
        message: format!("restarting to sync the mailboxes' new calendars failed: {e}"),
    }
}

/// Push subscriptions kept for this node's pairs, when servers can reach it.
fn push_keeper(
    config: &Config,
    engine: &Arc<Engine>,
    hub: &Arc<crate::service::push::PushHub>,
    membership: &Arc<Membership>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let base = config.http.push_base()?;
    let keeper = crate::service::push::PushKeeper {
        config: Arc::new(config.clone()),
        engine: engine.clone(),
        hub: hub.clone(),
        membership: membership.clone(),
        base: format!("{base}/push"),
    };
    Some(tokio::spawn(keeper.run(stopped)))
}

/// Says how the pairs are spread over the agents, at info level.
fn log_plan(specs: &[pool::AgentSpec], config: &Config, engine: &Engine) {
    for s in specs {
        info!(
            agent = s.index,
            processor = s.processor,
            pairs = s.pairs.len(),
            "agent planned"
        );
    }
    info!(
        agents = specs.len(),
        pairs = config.pairs.len(),
        holder = engine.holder(),
        "tandem run: starting"
    );
}

/// This node among the others: its coordinator claims and rebalances its share of the pairs.
fn coordinator(
    config: &Config,
    state: &crate::state::State,
    engine: &Engine,
    membership: &Arc<Membership>,
    listen: &str,
) -> Coordinator {
    Coordinator {
        membership: membership.clone(),
        state: state.clone(),
        node: NodeInfo {
            id: engine.holder().to_string(),
            host: crate::domain::lease::hostname(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            listen: listen.to_string(),
        },
        pairs: config.pairs.iter().map(|p| p.id.clone()).collect(),
        ttl: config.sync.lease_ttl,
    }
}

/// What the status server needs before anything starts: its token, TLS and port. A bad TLS
/// file or a taken port stops the service before it syncs.
struct Front {
    token: Option<secrecy::SecretString>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    listener: tokio::net::TcpListener,
}

async fn front_door(config: &Config) -> Result<Front, Failure> {
    let token = config.http.token().map_err(|reason| {
        usage(format!(
            "{}: http.token_env: {reason}",
            config.file.display()
        ))
    })?;
    // TLS files are read before anything starts: a bad one is a config error.
    let tls = match &config.http.tls {
        Some(files) => Some(
            crate::service::tls::acceptor(files)
                .map_err(|reason| usage(format!("{}: {reason}", config.file.display())))?,
        ),
        None => None,
    };
    // The port first: a service that cannot serve its status page does not start syncing.
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| Failure {
            code: EXIT_FATAL,
            message: format!(
                "{}: http.listen: cannot listen on {}: {e}",
                config.file.display(),
                config.http.listen
            ),
        })?;
    Ok(Front {
        token,
        tls,
        listener,
    })
}

/// What `tandem run` started, stopped in order: the agents first, then the node leaves, push
/// renewals end, the status server closes, and the counters and leases are settled.
struct Running {
    pool: Pool,
    stop_node: tokio::sync::watch::Sender<bool>,
    node: tokio::task::JoinHandle<()>,
    keeper: Option<tokio::task::JoinHandle<()>>,
    stop_http: tokio::sync::oneshot::Sender<()>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(self, engine: &Engine, state: &crate::state::State) -> Result<(), Failure> {
        let pool = self.pool;
        pool.stop();
        let _ = tokio::task::spawn_blocking(move || pool.join()).await;
        // No pass runs now: the node leaves, and its pairs go to the others at once.
        let _ = self.stop_node.send(true);
        let _ = self.node.await;
        if let Some(keeper) = self.keeper {
            // A round waiting on a slow server is left: what it did not save is done next start.
            if tokio::time::timeout(std::time::Duration::from_secs(3), keeper)
                .await
                .is_err()
            {
                warn!("push subscriptions: a round did not finish within 3 s; leaving it");
            }
        }
        let _ = self.stop_http.send(());
        stopped_http(self.http).await;
        engine.flush_counts().await?;
        // Passes abandoned at the deadline did not release their leases.
        state.release_leases_of(engine.holder()).await?;
        state.close().await;
        info!("stopped");
        Ok(())
    }
}

/// Why the service stops.
enum Stop {
    Signal,
    /// The mailboxes' calendars changed: it starts again.
    Calendars,
}

/// Flushes request and write counters into the state and samples the lag of `pairs` every few seconds
/// (so status, page and metrics see them) until SIGINT or SIGTERM, or until `changed` ends.
async fn until_signal(
    engine: &Engine,
    (state, pairs): (&crate::state::State, &[&str]),
    terminate: &mut tokio::signal::unix::Signal,
    changed: impl std::future::Future<Output = ()>,
) -> Stop {
    let flush = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            if let Err(e) = engine.flush_counts().await {
                warn!(error = %e, "recording request counters failed");
            }
            let now = crate::domain::time::now_ms();
            if let Err(e) = state.sample_lag(now, pairs).await {
                warn!(error = %e, "sampling the lag failed");
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping"),
        _ = terminate.recv() => info!("SIGTERM: stopping"),
        () = changed => return Stop::Calendars,
        never = flush => never,
    }
    Stop::Signal
}

/// Waits up to 3 s for the status server, told to stop, to end.
async fn stopped_http(http: tokio::task::JoinHandle<std::io::Result<()>>) {
    match tokio::time::timeout(std::time::Duration::from_secs(3), http).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "the status server failed"),
        Ok(Err(e)) => warn!(error = %e, "the status server failed"),
        Err(_) => warn!("the status server did not stop within 3 s; leaving it"),
        Ok(Ok(Ok(()))) => {}
    }
}

/// Serves the page, API and pushes on `listener`, over TLS when given an acceptor.
fn spawn_http(
    web: Arc<crate::service::web::Web>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    Ok(tokio::spawn(crate::service::web::serve(
        web, listener, tls, stop,
    )))
}
