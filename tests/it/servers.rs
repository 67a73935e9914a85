//! Servers watched as a whole: `tandem run` over 50 Radicale pairs whose target server goes
//! dead for 15 s, twice: once answering 502 (as a load balancer before a dead backend), once
//! refusing connections (a killed process). Its pairs wait on it instead of each backing off or
//! pausing, only probes reach it meanwhile, and every pair converges within seconds of its
//! return.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

use crate::common::dav::{self, DavServer};
use crate::common::proxy::{Mode, Proxy};
use crate::common::{event, http, radicale_pairs, wait_until};

const PAIRS: usize = 50;
const OUTAGE: Duration = Duration::from_secs(15);

struct Run {
    child: Child,
    port: u16,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(port: u16, name: &str) -> Value {
    let (code, body) = http(port, "GET", "/api/servers", &[]);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no server {name} in {v}"))
}

/// Each target's item count, against what each should hold.
async fn behind(
    tgt: &impl CalendarStore,
    cals: &[(CalendarPath, CalendarPath)],
    want: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (_, t)) in cals.iter().enumerate() {
        let n = tgt.list(t).await.map(|l| l.len()).unwrap_or(0);
        if n != want {
            out.push(format!("u{i:02}: {n}/{want}"));
        }
    }
    out
}

async fn wait_synced(
    tgt: &impl CalendarStore,
    cals: &[(CalendarPath, CalendarPath)],
    want: usize,
    secs: u64,
) -> Duration {
    let started = Instant::now();
    loop {
        let late = behind(tgt, cals, want).await;
        if late.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "targets behind after {secs} s: {late:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_probed_not_hammered_and_its_pairs_converge_when_it_returns() {
    let (source, target) = (DavServer::radicale(), DavServer::radicale());
    let proxy = Proxy::start(target.port);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", dav::PASSWORD)).unwrap();
    let port = dav::free_port();
    // A pause of 10 minutes and a backoff from 10 s: without the watch, pairs failing in the
    // outage would come back minutes after the server.
    let mut config = format!(
        "[state]\nurl = \"sqlite://state/tandem.db\"\n\n{}\n{}\n\
         [sync]\ninterval = \"10s\"\npause = \"10m\"\nbackoff_max = \"10m\"\n\
         [agents]\ncount = 1\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
        source.config_section("source", &pw),
        target
            .config_section("target", &pw)
            .replace(&format!(":{}/", target.port), &format!(":{}/", proxy.port)),
    );
    let (pairs, cals) = radicale_pairs(&source, &target, PAIRS).await;
    config.push_str(&pairs);
    let src = source.store();
    let file = dir.path().join("tandem.toml");
    std::fs::write(&file, &config).unwrap();
    let log = dir.path().join("run.log");
    let child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .current_dir(dir.path())
        .arg("-c")
        .arg(&file)
        .args(["-v", "run"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start tandem run");
    let run = Run { child, port };
    wait_until("the service to answer", 60, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let tgt = target.store();
    wait_synced(&*tgt, &cals, 1, 120).await;
    assert_eq!(server(run.port, "target")["health"]["state"], "up");

    for (round, mode) in [(2, Mode::BadGateway), (3, Mode::Refuse)] {
        proxy.set(mode);
        let before = proxy.bad_gateway_requests();
        // Every pair changes at its source (which stays up) and comes due in the outage.
        for (i, (s, _)) in cals.iter().enumerate() {
            let name = format!("change{round}");
            src.create(
                s,
                &format!("{name}.ics"),
                &event(&format!("{name}-{i}"), &name, None),
            )
            .await
            .unwrap();
        }
        tokio::time::sleep(OUTAGE).await;
        let seen = server(run.port, "target");
        assert_eq!(seen["health"]["state"], "down", "{mode:?}: {seen}");
        assert!(
            seen["alerts"]
                .as_array()
                .unwrap()
                .contains(&Value::from("down"))
        );
        let requests = proxy.bad_gateway_requests() - before;
        if mode == Mode::BadGateway {
            // Without the watch each of the 50 pairs would fail at least once (4 tries each):
            // 200 requests. With it: a try of each pass in flight when it went down (8 at once),
            // then one probe at a time, backing off (5 or 6 in 15 s).
            assert!(
                requests <= 25,
                "the dead server saw {requests} requests in {OUTAGE:?}"
            );
            assert!(requests > 0);
        }
        proxy.set(Mode::Pass);
        let took = wait_synced(&*tgt, &cals, round, 60).await;
        // The probes back off by half the time waited at most: within 10 s of a 15 s outage,
        // plus the passes themselves.
        assert!(
            took < Duration::from_secs(20),
            "{mode:?}: the pairs converged {took:?} after the server returned\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        eprintln!("{mode:?}: {requests} requests in the outage; converged {took:?} after it");
        wait_until("the server to show up again", 10, || {
            server(run.port, "target")["health"]["state"] == "up"
        });
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("server down"), "{text}");
    assert!(text.contains("answers again"), "{text}");
}
