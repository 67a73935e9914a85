//! tandem against vdirsyncer 0.21.0 on the same two Radicale servers and the same items: 10
//! pairs of 110 items each, a first sync into empty calendars, then a pass with nothing to do.
//! Both run as their command-line programs over all pairs at once, so process start-up counts
//! for both.
//!
//! `cargo bench --bench vs_vdirsyncer` (`TANDEM_BENCH_PAIRS`, `TANDEM_BENCH_ITEMS` per pair for
//! another size).

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
use std::process::Command;
use std::time::{Duration, Instant};

use dav::{DavServer, PASSWORD, USER};
use futures_util::stream::{self, StreamExt};
use tandem::domain::types::CalendarPath;
use tandem::store::CalendarStore;

/// No-change passes timed per tool; the median is reported.
const QUIET_RUNS: usize = 9;

fn timed(what: &str, cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn tandem(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tandem"));
    c.arg("-c").arg(config).args(args).env_remove("RUST_LOG");
    c
}

fn main() {
    // `cargo bench` passes harness flags such as `--bench`; a name filter that does not match skips.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with("--") && !"vs_vdirsyncer".contains(a.as_str()))
    {
        return;
    }
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (pairs, n) = (
        env("TANDEM_BENCH_PAIRS", 10),
        env("TANDEM_BENCH_ITEMS", 110),
    );
    let bin = dav::venv_bin();
    let source = DavServer::radicale();
    let target = DavServer::radicale();
    let users: Vec<String> = (0..pairs).map(|p| format!("u{p:02}")).collect();
    let cals: Vec<(String, String, String)> = users
        .iter()
        .map(|u| {
            (
                source.make_calendar(u, "calendar"),
                target.make_calendar(u, "tandem"),
                target.make_calendar(u, "vdirsyncer"),
            )
        })
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let src = source.store();
    rt.block_on(async {
        let failed = stream::iter(0..pairs * n)
            .map(|k| {
                let src = &src;
                let cal: CalendarPath = cals[k / n].0.parse().unwrap();
                async move {
                    let (uid, body) = items::item(k, 0);
                    src.create(&cal, &format!("{uid}.ics"), &body).await.err()
                }
            })
            .buffer_unordered(4)
            .filter_map(|e| async move { e })
            .collect::<Vec<_>>()
            .await;
        assert!(failed.is_empty(), "seeding: {:?}", failed.first());
    });

    let dir = tempfile::tempdir().unwrap();
    let (s0, t0, _) = &cals[0];
    let config = dav::pair_config(dir.path(), &source, &target, s0, t0, "");
    let mut toml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("id = \"alice\"", "id = \"u00\"");
    for (u, (s, t, _)) in users.iter().zip(&cals).skip(1) {
        toml.push_str(&format!(
            "\n[[pairs]]\nid = \"{u}\"\nsource = \"source:{s}\"\ntarget = \"target:{t}\"\n"
        ));
    }
    std::fs::write(&config, toml).unwrap();

    let vconfig = dir.path().join("vdirsyncer.conf");
    let mut v = format!(
        "[general]\nstatus_path = \"{}\"\n",
        dir.path().join("vdirsyncer-status").display()
    );
    for (u, (s, _, t)) in users.iter().zip(&cals) {
        v.push_str(&format!(
            "\n[pair {u}]\na = \"src_{u}\"\nb = \"dst_{u}\"\ncollections = null\nconflict_resolution = \"a wins\"\n\n\
             [storage src_{u}]\ntype = \"caldav\"\nurl = \"{}{s}\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
             [storage dst_{u}]\ntype = \"caldav\"\nurl = \"{}{t}\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n",
            source.url().trim_end_matches('/'),
            target.url().trim_end_matches('/'),
        ));
    }
    std::fs::write(&vconfig, v).unwrap();
    let vdirsyncer = |args: &[&str]| {
        let mut c = Command::new(bin.join("vdirsyncer"));
        c.arg("-c").arg(&vconfig).args(args);
        c
    };
    timed("vdirsyncer discover", &mut vdirsyncer(&["discover"]));

    let tandem_first = timed("tandem first sync", &mut tandem(&config, &["sync"]));
    let vdir_first = timed("vdirsyncer first sync", &mut vdirsyncer(&["sync"]));
    // The pass right after a pass that wrote: its own writes are not read again.
    let tandem_after = timed("tandem pass after it", &mut tandem(&config, &["sync"]));
    let vdir_after = timed("vdirsyncer pass after it", &mut vdirsyncer(&["sync"]));
    // Side by side: each round times one quiet pass of each.
    let (mut tq, mut vq) = (Vec::new(), Vec::new());
    for _ in 0..QUIET_RUNS {
        tq.push(timed("tandem quiet pass", &mut tandem(&config, &["sync"])));
        vq.push(timed("vdirsyncer quiet pass", &mut vdirsyncer(&["sync"])));
    }
    let (tandem_quiet, vdir_quiet) = (median(tq), median(vq));
    let floor = listings_alone(&rt, [&source, &target], &cals);

    // Both copies must be complete for the comparison to mean anything.
    rt.block_on(async {
        let tgt = target.store();
        for (_, t, v) in &cals {
            for cal in [t, v] {
                let got = tgt.list(&cal.parse().unwrap()).await.unwrap().len();
                assert_eq!(got, n, "{cal} holds {got} of {n} items");
            }
        }
    });

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "tandem vs vdirsyncer 0.21.0, Radicale 3.9.0 → Radicale 3.9.0, {pairs} pairs × {n} items"
    );
    println!(
        "{:<22} {:>12} {:>14} {:>10}",
        "", "tandem (ms)", "vdirsyncer (ms)", "speed-up"
    );
    for (what, t, v) in [
        ("first sync", tandem_first, vdir_first),
        ("pass after first sync", tandem_after, vdir_after),
        ("no-change pass", tandem_quiet, vdir_quiet),
    ] {
        println!(
            "{what:<22} {:>12.0} {:>14.0} {:>9.1}×",
            ms(t),
            ms(v),
            v.as_secs_f64() / t.as_secs_f64()
        );
    }
    println!(
        "of tandem's no-change pass: {:.0} ms is Radicale answering the {} listings alone (one \
         at a time per server, both servers at once, from a running process), {:.0} ms the rest",
        ms(floor),
        2 * pairs,
        ms(tandem_quiet.saturating_sub(floor))
    );
}

/// The least a no-change pass can take on these servers: each calendar's listing from a
/// settled watermark (one CTag PROPFIND), one at a time per server and both servers at once,
/// from a process already running (no start-up, no state). The median of [`QUIET_RUNS`].
fn listings_alone(
    rt: &tokio::runtime::Runtime,
    servers: [&DavServer; 2],
    cals: &[(String, String, String)],
) -> Duration {
    rt.block_on(async {
        let sides: Vec<_> = servers
            .iter()
            .enumerate()
            .map(|(side, server)| {
                let paths: Vec<CalendarPath> = cals
                    .iter()
                    .map(|c| [&c.0, &c.1][side].parse().unwrap())
                    .collect();
                (server.store(), paths)
            })
            .collect();
        // A full listing, then one from its token: the watermark a quiet pass starts from
        // (holding the calendar's CTag).
        let mut tokens = Vec::new();
        for (store, paths) in &sides {
            let mut side = Vec::new();
            for cal in paths {
                let full = store.changes(cal, None).await.unwrap().token;
                side.push(store.changes(cal, full.as_ref()).await.unwrap().token);
            }
            tokens.push(side);
        }
        let mut runs = Vec::new();
        for _ in 0..QUIET_RUNS {
            let started = Instant::now();
            futures_util::future::join_all(sides.iter().zip(&tokens).map(
                |((store, paths), tokens)| async move {
                    for (cal, token) in paths.iter().zip(tokens) {
                        let c = store.changes(cal, token.as_ref()).await.unwrap();
                        assert!(c.changed.is_empty() && c.deleted.is_empty(), "{cal} moved");
                    }
                },
            ))
            .await;
            runs.push(started.elapsed());
        }
        median(runs)
    })
}
