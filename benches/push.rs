//! Push against polling on Xandikos (WebDAV-Push): `tandem run` over 100 pairs, 200 source
//! changes at random pairs, latency from each change to the end of the pass that wrote it (read
//! from the passes tandem recorded); then the requests the servers saw over a quiet window,
//! per pair and hour. Two rounds side by side in one run, each on 100 fresh pairs: push-driven
//! (`public_url`, https with a throwaway CA's certificate) and polling at `interval = "60s"`.
//!
//! `cargo bench --bench push` (`TANDEM_BENCH_PAIRS`, `TANDEM_BENCH_CHANGES`,
//! `TANDEM_BENCH_QUIET_SECS` for another size).

#[path = "../tests/it/common/dav.rs"]
#[allow(dead_code)]
mod dav;
#[path = "../tests/it/common/groupware.rs"]
#[allow(dead_code)]
mod groupware;
#[path = "../tests/it/common/items.rs"]
#[allow(dead_code)]
mod items;
#[path = "../tests/it/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dav::DavServer;
use tandem::domain::types::CalendarPath;
use tandem::state::State;
use tandem::store::CalendarStore;

fn env(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Requests in a Xandikos access log.
fn requests(s: &DavServer) -> usize {
    s.log()
        .lines()
        .filter(|l| l.contains("\" 2") || l.contains("\" 4"))
        .count()
}

struct Round {
    name: &'static str,
    latencies: Vec<f64>,
    quiet_requests: usize,
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

#[allow(clippy::too_many_arguments)]
fn round(
    name: &'static str,
    prefix: &str,
    source: &DavServer,
    target: &DavServer,
    push: Option<(&Path, &Path)>,
    rt: &tokio::runtime::Runtime,
    pairs: usize,
    changes: usize,
    quiet: Duration,
) -> Round {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", dav::PASSWORD)).unwrap();
    let port = dav::free_port();
    let mut cals = Vec::new();
    let mut toml = format!(
        "[state]\nurl = \"sqlite://tandem.db\"\n\n{}\n{}\n[sync]\ninterval = \"60s\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
        source.config_section("source", &pw),
        target.config_section("target", &pw),
    );
    if let Some((cert, key)) = push {
        toml.push_str(&format!(
            "public_url = \"https://127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    for p in 0..pairs {
        let user = format!("{prefix}{p:02}");
        let s: CalendarPath = source.make_calendar(&user, "calendar").parse().unwrap();
        let t: CalendarPath = target.make_calendar(&user, "calendar").parse().unwrap();
        toml.push_str(&format!(
            "\n[[pairs]]\nid = \"{user}\"\nsource = \"source:{s}\"\ntarget = \"target:{t}\"\n"
        ));
        cals.push((user, s));
    }
    let file = dir.path().join("tandem.toml");
    std::fs::write(&file, toml).unwrap();
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .current_dir(dir.path())
        .arg("-c")
        .arg(&file)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let src = source.store();
    let result = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !Path::new(&dir.path().join("tandem.db")).exists() {
            assert!(Instant::now() < deadline, "{name}: no state database");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let state = State::open(&dir.path().join("tandem.db")).await.unwrap();
        // Every pair passed once; with push, every calendar subscribed.
        loop {
            let mut ready = true;
            for (id, _) in &cals {
                ready &= !state.passes(id, 1).await.unwrap().is_empty();
            }
            if push.is_some() {
                ready &= state.push_subscriptions().await.unwrap().len() == 2 * pairs;
            }
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: pairs not ready in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Changes at random pairs, spread over two intervals.
        let every = Duration::from_secs(120) / changes as u32;
        let mut made = Vec::new();
        for c in 0..changes {
            let p = fastrand::usize(..pairs);
            let (uid, body) = items::item(1_000_000 + c, 0);
            src.create(&cals[p].1, &format!("{uid}.ics"), &body)
                .await
                .unwrap();
            made.push((p, now_ms()));
            tokio::time::sleep(every).await;
        }
        // Until every change is written (a polled pair waits up to an interval).
        let mut latencies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        for (p, at) in &made {
            loop {
                let runs = state.passes(&cals[*p].0, 10_000).await.unwrap();
                let wrote = runs
                    .iter()
                    .filter(|r| r.status.created > 0)
                    .filter_map(|r| r.status.finished_at)
                    .filter(|f| f > at)
                    .min();
                if let Some(f) = wrote {
                    latencies.push((f - at) as f64 / 1000.0);
                    break;
                }
                assert!(Instant::now() < deadline, "{name}: a change never written");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // Quiet: what the servers see with nothing to do.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = requests(source) + requests(target);
        tokio::time::sleep(quiet).await;
        let quiet_requests = requests(source) + requests(target) - before;
        Round {
            name,
            latencies,
            quiet_requests,
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && !"push".contains(a.as_str()))
    {
        return;
    }
    let pairs = env("TANDEM_BENCH_PAIRS", 100) as usize;
    let changes = env("TANDEM_BENCH_CHANGES", 200) as usize;
    let quiet = Duration::from_secs(env("TANDEM_BENCH_QUIET_SECS", 120));
    let (source, target) = (DavServer::xandikos_push(), DavServer::xandikos_push());
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = dav::leaf_certificate(certs.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds = [
        round(
            "push",
            "p",
            &source,
            &target,
            Some((&cert, &key)),
            &rt,
            pairs,
            changes,
            quiet,
        ),
        round(
            "polling 60 s",
            "q",
            &source,
            &target,
            None,
            &rt,
            pairs,
            changes,
            quiet,
        ),
    ];
    println!(
        "Xandikos 0.4.10 → Xandikos, {pairs} pairs, {changes} changes over 2 min; quiet window {} s",
        quiet.as_secs()
    );
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>28}",
        "", "p50 (s)", "p99 (s)", "max (s)", "requests per quiet pair/hour"
    );
    for mut r in rounds {
        r.latencies.sort_by(f64::total_cmp);
        let per_hour = r.quiet_requests as f64 / pairs as f64 * 3600.0 / quiet.as_secs_f64();
        println!(
            "{:<14} {:>9.2} {:>9.2} {:>9.2} {:>28.1}",
            r.name,
            pct(&r.latencies, 0.5),
            pct(&r.latencies, 0.99),
            r.latencies.last().copied().unwrap_or(0.0),
            per_hour
        );
    }
}
