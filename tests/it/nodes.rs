//! Several `tandem run` nodes sharing one PostgreSQL over real Radicale servers, 60 pairs: they
//! spread evenly; a node killed, a node paused past its ttl, a node added later, PostgreSQL
//! restarted and a rolling restart of every node lose nothing and copy nothing twice, and no
//! pair is ever run by two nodes at once (read back from the passes each node recorded).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

use crate::common;
use common::dav::{self, DavServer};
use common::pg::Pg;
use common::{event, http, text, wait_until};

const PAIRS: usize = 60;
/// Leases, claims and heartbeats: short, so a dead node's pairs move within seconds.
const TTL_SECONDS: i64 = 5;

struct Cluster {
    source: DavServer,
    target: DavServer,
    /// Per pair `uNN`: its source and target calendars.
    cals: Vec<(CalendarPath, CalendarPath)>,
    /// Items each pair's calendars should hold.
    expected: Vec<usize>,
    pg: Pg,
    database: String,
    dir: tempfile::TempDir,
    config: String,
}

/// A `tandem run` node on a port of its own, its log in a file; stopped on drop.
struct Node {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Node {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its id as `tandem nodes` shows it.
    fn id(&self, c: &Cluster) -> String {
        let pid = i64::from(self.child.id());
        let mut id = None;
        wait_until("the node to register", 60, || {
            id = nodes(c)
                .into_iter()
                .find(|n| n["pid"] == pid && n["status"] == "alive")
                .map(|n| n["id"].as_str().unwrap().to_string());
            id.is_some()
        });
        id.unwrap()
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0), "{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "the node did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Cluster {
    async fn new() -> Cluster {
        let (source, target) = (DavServer::radicale(), DavServer::radicale());
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, format!("{}\n", dav::PASSWORD)).unwrap();
        let pg = Pg::start_new();
        let url = pg.database();
        let database = url.rsplit('/').next().unwrap().to_string();
        let mut config = format!(
            "[state]\nurl = \"{url}\"\npassword_file = \"{}\"\n\n{}\n{}\n\
             [sync]\ninterval = \"2s\"\npause = \"1s\"\nbackoff_max = \"2s\"\nlease_ttl = \"{TTL_SECONDS}s\"\n\
             [agents]\ncount = 1\n",
            pg.password_file().display(),
            source.config_section("source", &pw),
            target.config_section("target", &pw),
        );
        let (pairs, cals) = common::radicale_pairs(&source, &target, PAIRS).await;
        config.push_str(&pairs);
        Cluster {
            source,
            target,
            cals,
            expected: vec![1; PAIRS],
            pg,
            database,
            dir,
            config,
        }
    }

    fn start_node(&self, name: &str) -> Node {
        start_node(self.dir.path(), &self.config, name)
    }

    fn config_file(&self) -> PathBuf {
        let f = self.dir.path().join("cli.toml");
        std::fs::write(&f, &self.config).unwrap();
        f
    }

    fn sql(&self, statement: &str) -> String {
        self.pg.sql(&self.database, statement)
    }

    /// The database's clock (unix ms).
    fn db_now(&self) -> i64 {
        self.sql("SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)")
            .parse()
            .unwrap()
    }

    /// The pairs (indexes) `node` holds claims on.
    fn claims_of(&self, node: &str) -> Vec<usize> {
        self.sql(&format!(
            "SELECT pair_id FROM claims WHERE node = '{node}' ORDER BY pair_id"
        ))
        .lines()
        .map(|p| p.trim_start_matches('u').parse().unwrap())
        .collect()
    }

    /// A new item named `name` in the source of each of `pairs`.
    async fn change(&mut self, pairs: &[usize], name: &str) {
        let src = self.source.store();
        for &i in pairs {
            let body = event(&format!("{name}-{i}"), name, None);
            src.create(&self.cals[i].0, &format!("{name}.ics"), &body)
                .await
                .unwrap();
            self.expected[i] += 1;
        }
    }

    /// Waits until every target holds what its source does.
    async fn wait_synced(&self, what: &str) {
        let tgt = self.target.store();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let mut behind = Vec::new();
            for (i, (_, t)) in self.cals.iter().enumerate() {
                let n = tgt.list(t).await.map(|l| l.len()).unwrap_or(0);
                if n != self.expected[i] {
                    behind.push(format!("u{i:02}: {n}/{}", self.expected[i]));
                }
            }
            if behind.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: targets behind: {behind:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `alive` nodes are alive and hold an even share each.
    fn wait_spread(&self, alive: usize) {
        let share = PAIRS / alive;
        let mut seen = Vec::new();
        wait_until(
            &format!("{alive} nodes with {share} pairs each"),
            90,
            || {
                seen = nodes(self);
                let live: Vec<&Value> = seen.iter().filter(|n| n["status"] == "alive").collect();
                live.len() == alive && live.iter().all(|n| n["pairs"] == share as i64)
            },
        );
    }
}

/// `tandem -v run` on `config` (TOML text) and a port of its own, logging to NAME.log in `dir`;
/// returns once it answers `/healthz`.
fn start_node(dir: &std::path::Path, config: &str, name: &str) -> Node {
    let port = dav::free_port();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!("{config}\n[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("-c")
        .arg(&file)
        .args(["-v", "run"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start tandem run");
    let node = Node { child, port, log };
    wait_until("the node to answer /healthz", 60, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/healthz", &[]).0 == 200
    });
    node
}

fn nodes(c: &Cluster) -> Vec<Value> {
    let out = common::tandem(&c.config_file(), &["nodes", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("nodes --json is a list")
}

/// Every node's API, metrics and `status` show every pair with its node, and every node.
fn assert_one_view(c: &Cluster, nodes_up: &[&Node]) {
    let ids: Vec<String> = nodes_up.iter().map(|n| n.id(c)).collect();
    for n in nodes_up {
        let (code, body) = http(n.port, "GET", "/api/pairs", &[]);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let pairs = v["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), PAIRS);
        for p in pairs {
            let node = p["node"].as_str().unwrap_or_default();
            assert!(ids.iter().any(|i| i == node), "{p}");
        }
        let (code, metrics) = http(n.port, "GET", "/metrics", &[]);
        assert_eq!(code, 200);
        for id in &ids {
            let line = format!("tandem_node_up{{node=\"{id}\"}} 1");
            assert!(metrics.contains(&line), "no {line:?} in {metrics}");
        }
    }
    let out = common::tandem(&c.config_file(), &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let alive = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "alive")
        .count();
    assert_eq!(alive, ids.len(), "{v}");
    let text = text(&common::tandem(&c.config_file(), &["status"]));
    for id in &ids {
        assert!(text.contains(&format!("on {id};")), "{text}");
    }
}

/// No pair's recorded passes by two different nodes overlap in time.
fn assert_no_pair_ran_twice_at_once(c: &Cluster) {
    let rows = c.sql(
        "SELECT pair_id, node, started_at, finished_at FROM runs \
         WHERE finished_at IS NOT NULL AND node IS NOT NULL ORDER BY pair_id, started_at",
    );
    let runs: Vec<(String, String, i64, i64)> = rows
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    assert!(runs.len() > PAIRS, "passes were recorded with their node");
    for w in runs.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.0 == b.0 && a.1 != b.1 {
            assert!(
                a.3 <= b.2,
                "pair {}: {} ran {}..{} while {} started at {}",
                a.0,
                a.1,
                a.2,
                a.3,
                b.1,
                b.2
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_sixty_pairs_through_kills_pauses_newcomers_and_restarts() {
    let mut c = Cluster::new().await;
    let a = c.start_node("a");
    let b = c.start_node("b");
    let cn = c.start_node("c");
    c.wait_synced("first sync over three nodes").await;
    c.wait_spread(3);
    assert_one_view(&c, &[&a, &b, &cn]);

    // A node killed: its pairs go to the others after its ttl, changes included.
    let a_id = a.id(&c);
    let a_pairs = c.claims_of(&a_id);
    assert_eq!(a_pairs.len(), PAIRS / 3);
    a.signal("-KILL");
    drop(a);
    c.change(&a_pairs, "second").await;
    c.wait_synced("after a node was killed").await;
    c.wait_spread(2);
    let list = a_pairs
        .iter()
        .map(|i| format!("'u{i:02}'"))
        .collect::<Vec<_>>()
        .join(",");
    let taken_after: i64 = c
        .sql(&format!(
            "SELECT MAX(c.claimed_at) - (SELECT heartbeat_at FROM nodes WHERE id = '{a_id}') \
             FROM claims c WHERE c.pair_id IN ({list})"
        ))
        .parse()
        .unwrap();
    assert!(
        taken_after <= 2 * TTL_SECONDS * 1000,
        "the killed node's pairs were taken {taken_after} ms after its last heartbeat"
    );
    let dead = nodes(&c);
    assert!(
        dead.iter()
            .any(|n| n["id"] == a_id.as_str() && n["status"] == "dead" && n["pairs"] == 0),
        "{dead:?}"
    );

    // A node paused past its ttl: the others take its pairs and do its work; woken, it
    // records nothing of a pass it had begun, and starts none before it is confirmed.
    let b_id = b.id(&c);
    let b_pairs = c.claims_of(&b_id);
    let stopped_at = c.db_now();
    b.signal("-STOP");
    wait_until("the paused node's pairs to move", 90, || {
        c.claims_of(&b_id).is_empty()
    });
    c.change(&b_pairs, "third").await;
    c.wait_synced("while a node was paused").await;
    let woken_at = c.db_now();
    b.signal("-CONT");
    c.wait_spread(2);
    let b_pairs_sql = b_pairs
        .iter()
        .map(|i| format!("'u{i:02}'"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        c.sql(&format!(
            "SELECT COUNT(*) FROM runs WHERE node = '{b_id}' AND started_at < {stopped_at} \
             AND finished_at >= {woken_at}"
        )),
        "0",
        "the paused node recorded a pass it began before the pause"
    );
    assert_eq!(
        c.sql(&format!(
            "SELECT COUNT(*) FROM runs WHERE node = '{b_id}' AND pair_id IN ({b_pairs_sql}) \
             AND created > 0 AND started_at >= {stopped_at}"
        )),
        "0",
        "the paused node copied what the others had copied"
    );

    // A node added later takes its share.
    let d = c.start_node("d");
    c.wait_spread(3);
    let d_id = d.id(&c);
    let d_pairs = c.claims_of(&d_id);
    c.change(&d_pairs, "fourth").await;
    c.wait_synced("after a node joined").await;

    // PostgreSQL restarted: the nodes say they are unhealthy, then resume by themselves.
    c.pg.stop();
    let mut said = String::new();
    wait_until("/healthz to report the database", 60, || {
        let (code, body) = http(cn.port, "GET", "/healthz", &[]);
        said = body;
        code == 503
    });
    assert!(said.contains("state database"), "{said}");
    c.change(&[0, 1, 2, 30, 31, 59], "fifth").await;
    c.pg.start();
    for n in [&b, &cn, &d] {
        wait_until("/healthz to recover", 90, || {
            http(n.port, "GET", "/healthz", &[]).0 == 200
        });
    }
    c.wait_synced("after PostgreSQL restarted").await;

    // A rolling restart: each node stopped and replaced in turn while changes arrive.
    let mut running = vec![b, cn, d];
    for (k, name) in ["e", "f", "g"].into_iter().enumerate() {
        let old = running.remove(0);
        old.stop();
        c.change(&[k * 20, k * 20 + 7], "sixth").await;
        running.push(c.start_node(name));
    }
    c.wait_synced("after a rolling restart").await;
    c.wait_spread(3);

    let tgt = c.target.store();
    for (i, (_, t)) in c.cals.iter().enumerate() {
        dav::assert_one_copy_each(&*tgt, t, c.expected[i]).await;
    }
    assert_no_pair_ran_twice_at_once(&c);
    for n in &running {
        assert!(
            !n.log().contains(common::pg::PASSWORD),
            "the password leaked"
        );
    }
}

#[tokio::test]
async fn a_connection_cut_mid_pass_stops_that_pass_and_the_next_converges() {
    const ITEMS: usize = 300;
    let pg = common::pg::shared();
    let url = pg.database();
    let database = url.rsplit('/').next().unwrap().to_string();
    let (source, target) = (DavServer::radicale(), DavServer::radicale());
    let scal: CalendarPath = source.make_calendar("alice", "calendar").parse().unwrap();
    let tcal: CalendarPath = target.make_calendar("alice", "calendar").parse().unwrap();
    let src = source.store();
    for i in 0..ITEMS {
        let (name, body) = common::items::item(i, 0);
        src.create(&scal, &name, &body).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dav::pair_config(
        dir.path(),
        &source,
        &target,
        scal.as_str(),
        tcal.as_str(),
        "[sync]\ninterval = \"1s\"\nbackoff_max = \"2s\"\n",
    );
    let config = std::fs::read_to_string(&file).unwrap();
    let sqlite = config.lines().find(|l| l.starts_with("url = ")).unwrap();
    let config = config.replace(
        sqlite,
        &format!(
            "url = \"{url}\"\npassword_file = \"{}\"",
            pg.password_file().display()
        ),
    );
    let node = start_node(dir.path(), &config, "node");
    let tgt = target.store();
    let deadline = Instant::now() + Duration::from_secs(120);
    while tgt.list(&tcal).await.unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "the first pass never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Cut the connections the pass is using (a statement running or a transaction open) until
    // one cut lands mid-statement: cutting an idle connection is invisible (the pool replaces it).
    let reported = |log: &str| {
        log.contains("terminating connection") || log.contains("the state store failed")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reported(&node.log()) {
        assert!(
            tgt.list(&tcal).await.unwrap().len() < ITEMS,
            "the pass ended before a cut landed: make it longer"
        );
        assert!(Instant::now() < deadline, "no cut landed: {}", node.log());
        // For about a second, every millisecond, on the server (the activity view read afresh
        // each time): a pass's statements last well under a millisecond, and polling from a
        // client every few tens of milliseconds could miss them all.
        pg.sql(
            &database,
            "DO $$ BEGIN FOR i IN 1..1000 LOOP \
             PERFORM pg_stat_clear_snapshot(); \
             PERFORM pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'; \
             PERFORM pg_sleep(0.001); END LOOP; END $$",
        );
    }
    // The pass stops at its next state write; the node lives on and the next pass converges.
    let deadline = Instant::now() + Duration::from_secs(180);
    while tgt.list(&tcal).await.unwrap().len() < ITEMS {
        assert!(Instant::now() < deadline, "never converged: {}", node.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    dav::assert_one_copy_each(&*tgt, &tcal, ITEMS).await;
    assert_eq!(http(node.port, "GET", "/healthz", &[]).0, 200);
    assert_eq!(
        pg.sql(&database, "SELECT COUNT(*) FROM mappings"),
        ITEMS.to_string(),
        "every copy recorded"
    );
    node.stop();
}
