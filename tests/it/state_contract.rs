//! The state store's contract: every operation the engine, the service and the command line use,
//! and what each must do. A backend is proven by passing it: `contract!` runs every check as a
//! test on a fresh store the backend opens: SQLite on a database file on disk, PostgreSQL on a
//! database of its own in a throwaway cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use tandem::domain::identity::IdentityKey;
use tandem::domain::lease::LeaseKind;
use tandem::domain::mapping::{Mapping, OutsideWindow, Pending, Side};
use tandem::domain::pair::Pair;
use tandem::domain::pairstate::{ItemFault, PairState, QUARANTINE_AFTER};
use tandem::domain::requests::HttpCounts;
use tandem::domain::run::{Outcome, RunCounts, RunKind, RunRecord};
use tandem::domain::time::now_ms;
use tandem::domain::types::{ContentHash, Etag, Href, PairId, SyncToken};
use tandem::state::{PassStart, State};

/// One `#[tokio::test]` per check, each on a fresh store from `$open`.
macro_rules! contract {
    ($open:path: $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (state, _keep) = $open().await;
                super::$check(&state).await;
                state.close().await;
            }
        )*
    };
}

/// Every check of the contract, on a backend's `open`.
macro_rules! every_check {
    ($open:path) => {
        contract!($open:
            pairs_and_their_calendars,
            mappings_by_pair,
            batches_as_row_by_row,
            text_comes_back_as_written,
            pending_creates,
            watermarks_per_side,
            items_outside_the_window,
            the_target_index,
            runs_and_their_history,
            runs_in_a_batch,
            what_a_pass_starts_from,
            pair_states,
            quarantine,
            leases,
            server_counts,
            minutes_of_the_migration,
            cutover,
            nodes_and_claims,
            fenced_writes,
        );
    };
}

mod sqlite {
    async fn open() -> (tandem::state::State, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = tandem::state::State::open(&dir.path().join("tandem.db"))
            .await
            .unwrap();
        (state, dir)
    }

    every_check!(open);
}

mod postgres {
    async fn open() -> (tandem::state::State, ()) {
        let pg = crate::common::pg::shared();
        let config = tandem::config::StateConfig::Postgres {
            url: pg.database(),
            password: Some(tandem::config::PasswordSource::File(pg.password_file())),
        };
        let state = tandem::engine::connect_state(&config).await.unwrap();
        (state, ())
    }

    every_check!(open);
}

fn pair(id: &str, source: &str) -> Pair {
    Pair::new(
        id.parse().unwrap(),
        source.parse().unwrap(),
        format!("t:/{id}/").parse().unwrap(),
    )
}

fn href(s: &str) -> Href {
    Href::new(s).unwrap()
}

fn identity(n: u32) -> IdentityKey {
    IdentityKey::new(Some("mailto:jane@new.example"), &format!("uid-{n}"))
}

fn mapping(n: u32) -> Mapping {
    Mapping {
        a_href: href(&format!("/s/{n}.ics")),
        a_etag: Etag::new(format!("a{n}")),
        b_href: href(&format!("/t/{n}.ics")),
        b_etag: Etag::new(format!("b{n}")),
        identity: identity(n),
        hash: ContentHash(u128::from(n) << 64 | 7),
    }
}

fn sorted(mut m: Vec<Mapping>) -> Vec<Mapping> {
    m.sort_by(|a, b| a.a_href.cmp(&b.a_href));
    m
}

/// A pair with one mapping, a pending create and a watermark.
async fn alice(s: &State) -> PairId {
    let p = pair("alice", "s:/alice/");
    s.ensure_pair(&p).await.unwrap();
    s.put_mapping(&p.id, &mapping(1)).await.unwrap();
    s.set_watermark(&p.id, Side::A, Some(&SyncToken::new("tok")))
        .await
        .unwrap();
    p.id
}

async fn pairs_and_their_calendars(s: &State) {
    s.ping().await.unwrap();
    let p = pair("alice", "s:/alice/");
    assert_eq!(s.pair_calendars(&p.id).await.unwrap(), None);
    let id = alice(s).await;
    assert_eq!(
        s.pair_calendars(&id).await.unwrap(),
        Some(("s:/alice/".to_string(), "t:/alice/".to_string()))
    );
    // The same calendars again keep everything.
    s.ensure_pair(&p).await.unwrap();
    assert_eq!(s.mappings(&id).await.unwrap(), [mapping(1)]);
    // Other calendars: what was recorded described the old ones and goes.
    s.ensure_pair(&pair("alice", "s:/elsewhere/"))
        .await
        .unwrap();
    assert_eq!(
        s.pair_calendars(&id).await.unwrap().unwrap().0,
        "s:/elsewhere/"
    );
    assert!(s.mappings(&id).await.unwrap().is_empty());
    assert_eq!(s.watermark(&id, Side::A).await.unwrap(), None);
    let statuses = s.pair_statuses(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].id, "alice");
    assert_eq!(statuses[0].source, "s:/elsewhere/");
}

async fn mappings_by_pair(s: &State) {
    let id = alice(s).await;
    let bob = pair("bob", "s:/bob/");
    s.ensure_pair(&bob).await.unwrap();
    s.put_mapping(&bob.id, &mapping(9)).await.unwrap();
    // Putting a mapping again replaces it.
    let moved = Mapping {
        b_etag: Etag::new("b1-2"),
        ..mapping(1)
    };
    s.put_mapping(&id, &moved).await.unwrap();
    assert_eq!(s.mappings(&id).await.unwrap(), std::slice::from_ref(&moved));
    s.apply(&id, &[mapping(2), mapping(3)], &[]).await.unwrap();
    assert_eq!(s.mapping_count(&id).await.unwrap(), 3);
    s.apply(&id, &[mapping(4)], &[mapping(2).a_href])
        .await
        .unwrap();
    assert_eq!(
        sorted(s.mappings(&id).await.unwrap()),
        [moved, mapping(3), mapping(4)]
    );
    s.delete_mapping(&id, &mapping(3).a_href).await.unwrap();
    assert_eq!(s.mapping_count(&id).await.unwrap(), 2);
    let counts = s.item_counts().await.unwrap();
    assert_eq!((counts["alice"], counts["bob"]), (2, 1));
    // Rebuilt from a repair: mappings replaced; pending creates, watermarks and the target
    // index go, so the next pass lists both sides in full.
    s.add_pending(&id, &pending(5)).await.unwrap();
    s.update_target_index(&id, &[(href("/t/x.ics"), Etag::new("x"), None)], &[])
        .await
        .unwrap();
    s.rebuild_mappings(&id, &[mapping(7)]).await.unwrap();
    assert_eq!(s.mappings(&id).await.unwrap(), [mapping(7)]);
    assert!(s.pendings(&id).await.unwrap().is_empty());
    assert_eq!(s.watermarks(&id).await.unwrap(), (None, None));
    assert!(s.target_index(&id).await.unwrap().is_empty());
    // The other pair is untouched.
    assert_eq!(s.mappings(&bob.id).await.unwrap(), [mapping(9)]);
}

/// A batch is written in a few statements, and ends as the same rows written one by one would:
/// a later row replaces an earlier one with the same key, a mapping replaces any other that
/// claimed its target href, and batches larger than one statement's values are split.
async fn batches_as_row_by_row(s: &State) {
    let id = alice(s).await;
    // Pending creates: the same row twice keeps the later one.
    let again = Pending {
        hash: Some(ContentHash(99)),
        ..pending(2)
    };
    s.add_pendings(&id, &[pending(1), pending(2), pending(3), again.clone()])
        .await
        .unwrap();
    let mut got = s.pendings(&id).await.unwrap();
    got.sort_by(|a, b| a.a_href.cmp(&b.a_href));
    assert_eq!(got, [pending(1), again, pending(3)]);
    // Mappings: (a2 → b1) after (a1 → b1) in one batch leaves only the later; a mapping
    // recorded before that claimed a target href another one now takes goes; each mapping
    // settles the pending create it came from.
    let claims_b1 = Mapping {
        a_href: href("/s/2.ics"),
        ..mapping(1)
    };
    let takes_b3 = Mapping {
        a_href: href("/s/30.ics"),
        ..mapping(3)
    };
    s.apply(&id, &[mapping(3)], &[]).await.unwrap();
    s.apply(&id, &[mapping(1), claims_b1.clone(), takes_b3.clone()], &[])
        .await
        .unwrap();
    assert_eq!(
        sorted(s.mappings(&id).await.unwrap()),
        sorted(vec![claims_b1, takes_b3])
    );
    let mut left: Vec<Href> = s
        .pendings(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.a_href)
        .collect();
    left.sort();
    // (a3, b3) and (a1, b1) settled as their mappings were recorded; (a2, b2) is no mapping's.
    assert_eq!(left, [href("/s/2.ics")]);
    // More rows than one statement binds.
    let many: Vec<Mapping> = (100..3_900).map(mapping).collect();
    s.apply(&id, &many, &[href("/s/2.ics")]).await.unwrap();
    assert_eq!(s.mapping_count(&id).await.unwrap(), 3_801);
    let gone: Vec<Href> = many.iter().map(|m| m.a_href.clone()).collect();
    s.apply(&id, &[], &gone).await.unwrap();
    assert_eq!(
        s.mappings(&id).await.unwrap(),
        [Mapping {
            a_href: href("/s/30.ics"),
            ..mapping(3)
        }]
    );
    // The target index: the later read of an href wins; gone ones go.
    let read = [
        (href("/t/x.ics"), Etag::new("1"), None),
        (href("/t/y.ics"), Etag::new("1"), Some(identity(1))),
        (href("/t/x.ics"), Etag::new("2"), Some(identity(2))),
    ];
    s.update_target_index(&id, &read, &[]).await.unwrap();
    s.update_target_index(&id, &[], &[href("/t/y.ics")])
        .await
        .unwrap();
    let index = s.target_index(&id).await.unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(
        index[&href("/t/x.ics")],
        (Etag::new("2"), Some(identity(2)))
    );
}

/// Hrefs, etags and identities with quotes, backslashes, control characters (but NUL, which
/// PostgreSQL's text cannot hold) and non-ASCII text come back from every batch statement
/// exactly as they went in.
async fn text_comes_back_as_written(s: &State) {
    let id = alice(s).await;
    let odd = |n: u32| format!("/s/q\"u\\o\tt\u{e9}\u{1F600} {n}.ics");
    let who = IdentityKey::new(
        Some("mailto:\"O'Brien\"@ex\u{e4}mple.org"),
        "uid\\\"\n\u{2603}",
    );
    let m = Mapping {
        a_href: href(&odd(1)),
        a_etag: Etag::new("W/\"a\\\"1\""),
        b_href: href(&odd(2)),
        b_etag: Etag::new("\"b\u{1}\u{7f}\""),
        identity: who.clone(),
        hash: ContentHash(u128::MAX),
    };
    let p = Pending {
        a_href: m.a_href.clone(),
        b_href: href(&odd(3)),
        identity: who.clone(),
        to: Side::B,
        hash: Some(ContentHash(u128::MAX)),
        update: true,
    };
    s.add_pendings(&id, std::slice::from_ref(&p)).await.unwrap();
    assert_eq!(s.pendings(&id).await.unwrap(), std::slice::from_ref(&p));
    s.clear_pendings(&id, &[p]).await.unwrap();
    assert!(s.pendings(&id).await.unwrap().is_empty());
    s.apply(&id, std::slice::from_ref(&m), &[]).await.unwrap();
    assert_eq!(
        sorted(s.mappings(&id).await.unwrap()),
        sorted(vec![mapping(1), m.clone()])
    );
    s.apply(&id, &[], std::slice::from_ref(&m.a_href))
        .await
        .unwrap();
    assert_eq!(s.mappings(&id).await.unwrap(), [mapping(1)]);
    s.update_target_index(
        &id,
        &[(m.b_href.clone(), m.b_etag.clone(), Some(who.clone()))],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        s.target_index(&id).await.unwrap()[&m.b_href],
        (m.b_etag.clone(), Some(who.clone()))
    );
    let o = OutsideWindow {
        href: m.a_href.clone(),
        etag: m.a_etag.clone(),
        identity: who.clone(),
        enters: Some(i64::MAX),
    };
    s.update_outside_window(&id, Side::A, &[o], &[], "w\"1")
        .await
        .unwrap();
    assert_eq!(
        s.outside_window_identities(&id, Side::A).await.unwrap(),
        [who]
    );
    let kept = s.outside_window(&id, 0, "w\"1", true).await.unwrap();
    assert_eq!(
        kept.iter()
            .map(|r| (&r.href, &r.etag, r.due))
            .collect::<Vec<_>>(),
        [(&m.a_href, &m.a_etag, false)]
    );
    s.update_outside_window(&id, Side::A, &[], std::slice::from_ref(&m.a_href), "w\"1")
        .await
        .unwrap();
    assert_eq!(s.outside_window_count(&id).await.unwrap(), 0);
}

/// Odd ones write to B, even ones to A.
fn pending(n: u32) -> Pending {
    Pending {
        a_href: href(&format!("/s/{n}.ics")),
        b_href: href(&format!("/t/{n}.ics")),
        identity: identity(n),
        to: if n % 2 == 1 { Side::B } else { Side::A },
        hash: n.is_multiple_of(3).then(|| ContentHash(u128::from(n))),
        update: n.is_multiple_of(4),
    }
}

async fn pending_creates(s: &State) {
    let id = alice(s).await;
    assert!(s.pendings(&id).await.unwrap().is_empty());
    s.add_pending(&id, &pending(1)).await.unwrap();
    s.add_pending(&id, &pending(2)).await.unwrap();
    // Noting the same create twice keeps one row.
    s.add_pending(&id, &pending(2)).await.unwrap();
    let mut got = s.pendings(&id).await.unwrap();
    got.sort_by(|a, b| a.a_href.cmp(&b.a_href));
    assert_eq!(got, [pending(1), pending(2)]);
    s.clear_pendings(&id, &[pending(1)]).await.unwrap();
    assert_eq!(s.pendings(&id).await.unwrap(), [pending(2)]);
}

async fn watermarks_per_side(s: &State) {
    let id = alice(s).await;
    let tok = |t: &str| Some(SyncToken::new(t));
    assert_eq!(s.watermark(&id, Side::A).await.unwrap(), tok("tok"));
    assert_eq!(s.watermark(&id, Side::B).await.unwrap(), None);
    s.set_watermark(&id, Side::B, tok("b-1").as_ref())
        .await
        .unwrap();
    s.set_watermark(&id, Side::A, tok("a-2").as_ref())
        .await
        .unwrap();
    assert_eq!(s.watermarks(&id).await.unwrap(), (tok("a-2"), tok("b-1")));
    s.set_watermark(&id, Side::A, None).await.unwrap();
    assert_eq!(s.watermarks(&id).await.unwrap(), (None, tok("b-1")));
    // Both sides at once: one moves, the other is forgotten.
    s.set_watermarks(&id, &[(Side::A, tok("a-3").as_ref()), (Side::B, None)])
        .await
        .unwrap();
    assert_eq!(s.watermarks(&id).await.unwrap(), (tok("a-3"), None));
}

async fn cutover(s: &State) {
    let id = alice(s).await;
    // A pair turned two-way lists both sides in full once: its watermarks go, its mappings stay.
    let two_way = Pair {
        direction: tandem::domain::direction::Direction::TwoWay,
        ..pair("alice", "s:/alice/")
    };
    s.ensure_pair(&two_way).await.unwrap();
    assert_eq!(s.watermarks(&id).await.unwrap(), (None, None));
    assert_eq!(s.mappings(&id).await.unwrap(), [mapping(1)]);
    s.set_watermark(&id, Side::A, Some(&SyncToken::new("t2")))
        .await
        .unwrap();
    s.ensure_pair(&two_way).await.unwrap();
    assert!(
        s.watermark(&id, Side::A).await.unwrap().is_some(),
        "unchanged: kept"
    );
    let p = pair("alice", "s:/alice/");
    let bob = pair("bob", "s:/bob/");
    s.ensure_pair(&bob).await.unwrap();
    s.set_watermark(&bob.id, Side::A, Some(&SyncToken::new("b")))
        .await
        .unwrap();
    s.update_target_index(
        &id,
        &[(href("/t/x.ics"), Etag::new("x"), Some(identity(3)))],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(s.cutover_at(&id).await.unwrap(), None);
    assert!(s.cutovers().await.unwrap().is_empty());
    // Cut over: recorded; what one direction remembered goes, the mappings stay.
    assert!(s.set_cutover(&p, Some(1_000)).await.unwrap());
    assert_eq!(s.cutover_at(&id).await.unwrap(), Some(1_000));
    assert!(
        !s.set_cutover(&p, Some(2_000)).await.unwrap(),
        "already cut over"
    );
    assert_eq!(s.cutover_at(&id).await.unwrap(), Some(1_000));
    assert_eq!(s.watermarks(&id).await.unwrap(), (None, None));
    assert!(s.target_index(&id).await.unwrap().is_empty());
    assert_eq!(s.mappings(&id).await.unwrap(), [mapping(1)]);
    let all = s.cutovers().await.unwrap();
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        [("alice".to_string(), 1_000)]
    );
    // Another pair is untouched.
    assert_eq!(s.cutover_at(&bob.id).await.unwrap(), None);
    assert!(s.watermark(&bob.id, Side::A).await.unwrap().is_some());
    // Undone.
    assert!(s.set_cutover(&p, None).await.unwrap());
    assert_eq!(s.cutover_at(&id).await.unwrap(), None);
    // A pair never synced can be cut over before its first pass.
    let carol = pair("carol", "s:/carol/");
    assert!(s.set_cutover(&carol, Some(5)).await.unwrap());
    assert_eq!(s.cutover_at(&carol.id).await.unwrap(), Some(5));
}

/// Item `n` of side A remembered as outside the window, entering it at `enters`.
fn outside(n: u32, enters: Option<i64>) -> OutsideWindow {
    OutsideWindow {
        href: href(&format!("/s/{n}.ics")),
        etag: Etag::new(format!("a{n}")),
        identity: identity(n),
        enters,
    }
}

async fn items_outside_the_window(s: &State) {
    let id = alice(s).await;
    s.update_outside_window(
        &id,
        Side::A,
        &[outside(1, Some(100)), outside(2, None)],
        &[],
        "w1",
    )
    .await
    .unwrap();
    assert_eq!(s.outside_window_count(&id).await.unwrap(), 2);
    let mut ids = s.outside_window_identities(&id, Side::A).await.unwrap();
    ids.sort_by_key(|i| i.to_string());
    assert_eq!(ids, [identity(1), identity(2)]);
    // The same href on the other side is another item.
    s.update_outside_window(&id, Side::B, &[outside(1, None)], &[], "w1")
        .await
        .unwrap();
    assert_eq!(s.outside_window_count(&id).await.unwrap(), 3);
    assert_eq!(
        s.outside_window_identities(&id, Side::B).await.unwrap(),
        [identity(1)]
    );
    s.update_outside_window(&id, Side::B, &[], &[href("/s/1.ics")], "w1")
        .await
        .unwrap();
    assert_eq!(s.outside_window_count(&id).await.unwrap(), 2);
    let id = &id;
    let due = async |now, window: &'static str, all| {
        let mut rows: Vec<_> = s
            .outside_window(id, now, window, all)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                assert_eq!(r.side, Side::A);
                (r.href.to_string(), r.due)
            })
            .collect();
        rows.sort();
        rows
    };
    // Not yet due: only listed when all are asked for.
    assert!(due(50, "w1", false).await.is_empty());
    assert_eq!(
        due(50, "w1", true).await,
        [("/s/1.ics".into(), false), ("/s/2.ics".into(), false)]
    );
    // Its time has come; one that never enters stays.
    assert_eq!(due(100, "w1", false).await, [("/s/1.ics".into(), true)]);
    // Another window setting makes every item due.
    assert_eq!(due(50, "w2", false).await.len(), 2);
    s.update_outside_window(id, Side::A, &[], &[href("/s/1.ics")], "w1")
        .await
        .unwrap();
    assert_eq!(s.outside_window_count(id).await.unwrap(), 1);
}

async fn the_target_index(s: &State) {
    let id = alice(s).await;
    let (x, y) = (href("/t/x.ics"), href("/t/y.ics"));
    s.update_target_index(
        &id,
        &[
            (x.clone(), Etag::new("x1"), Some(identity(1))),
            (y.clone(), Etag::new("y1"), None),
        ],
        &[],
    )
    .await
    .unwrap();
    let index = s.target_index(&id).await.unwrap();
    assert_eq!(index[&x], (Etag::new("x1"), Some(identity(1))));
    assert_eq!(index[&y], (Etag::new("y1"), None));
    s.update_target_index(
        &id,
        &[(x.clone(), Etag::new("x2"), Some(identity(2)))],
        std::slice::from_ref(&y),
    )
    .await
    .unwrap();
    let index = s.target_index(&id).await.unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index[&x], (Etag::new("x2"), Some(identity(2))));
}

async fn runs_and_their_history(s: &State) {
    let id = alice(s).await;
    let counts = |created| RunCounts {
        created,
        requests: 4,
        failed_requests: 1,
        backlog: Some(0),
        ..RunCounts::default()
    };
    let first = RunRecord {
        outcome: Outcome::Ok,
        counts: counts(3),
        ..RunRecord::start(RunKind::Sync, "node")
    };
    s.record_run(&id, &first).await.unwrap();
    let second = RunRecord {
        outcome: Outcome::Failed,
        counts: counts(0),
        error: Some("target gone".into()),
        ..RunRecord::start(RunKind::Resync, "node")
    };
    s.record_run(&id, &second).await.unwrap();
    let (first, second) = (first.id, second.id);
    let passes = s.passes("alice", 10).await.unwrap();
    assert_eq!(
        passes.iter().map(|p| p.run.as_str()).collect::<Vec<_>>(),
        [second.as_str(), first.as_str()],
        "newest first"
    );
    assert_eq!(passes[0].status.kind, "resync");
    assert_eq!(passes[0].status.error.as_deref(), Some("target gone"));
    assert_eq!(passes[1].status.created, 3);
    assert_eq!(s.passes("alice", 1).await.unwrap().len(), 1);
    let status = &s.pair_statuses(std::slice::from_ref(&id)).await.unwrap()[0];
    let last = status.last_run.as_ref().unwrap();
    assert_eq!(last.outcome.as_deref(), Some("failed"));
    assert!(status.last_success_at.is_some());
    let rows = s.pair_rows(0).await.unwrap();
    let row = rows.iter().find(|r| r.id == "alice").unwrap();
    assert_eq!(row.last_run.as_ref().unwrap().kind, "resync");
    assert_eq!((row.requests, row.failed), (8, 2));
    assert!(s.synced_pairs().await.unwrap().contains("alice"));
}

/// Runs written in one batch end as the same runs written one by one, in order; a run of a
/// pair the state no longer has is dropped, not the batch.
async fn runs_in_a_batch(s: &State) {
    let one = alice(s).await;
    let other = pair("bob", "s:/bob/");
    s.ensure_pair(&other).await.unwrap();
    let run = |created, backlog, ok: bool, at: i64| RunRecord {
        outcome: if ok { Outcome::Ok } else { Outcome::Failed },
        counts: RunCounts {
            created,
            requests: 2,
            backlog,
            ..RunCounts::default()
        },
        started_at: at,
        finished_at: at + 5,
        ..RunRecord::start(RunKind::Sync, "node")
    };
    let gone: PairId = "gone".parse().unwrap();
    let runs = vec![
        (one.clone(), run(1, Some(3), true, 1_000)),
        (other.id.clone(), run(2, Some(0), true, 1_000)),
        (gone, run(9, None, true, 1_000)),
        (one.clone(), run(4, Some(2), false, 2_000)),
        (one.clone(), run(0, None, true, 3_000)),
    ];
    s.record_runs(&runs).await.unwrap();
    let rows = s.pair_rows(0).await.unwrap();
    let row = |id: &str| rows.iter().find(|r| r.id == id).unwrap();
    let (a, b) = (row("alice"), row("bob"));
    assert!(rows.iter().all(|r| r.id != "gone"));
    // Totals add up; the lag counts from the first pass that saw a backlog and stays while
    // the later ones leave it standing; the last success is the last ok pass.
    assert_eq!(a.totals[0], 5);
    assert_eq!((a.backlog, a.pending_since), (2, Some(1_000)));
    assert_eq!(a.last_success_at, Some(3_005));
    assert_eq!(a.requests, 6);
    assert_eq!(a.last_run.as_ref().unwrap().started_at, 3_000);
    assert_eq!((b.totals[0], b.backlog, b.pending_since), (2, 0, None));
    assert_eq!(s.passes("alice", 10).await.unwrap().len(), 3);
    s.record_runs(&[]).await.unwrap();
    // A pass older than one recorded (kept for a batch meanwhile) adds to the totals but leaves
    // the lag and backlog the later one left.
    s.record_run(&other.id, &run(0, Some(0), true, 5_000))
        .await
        .unwrap();
    s.record_runs(&[(other.id.clone(), run(1, Some(7), true, 4_000))])
        .await
        .unwrap();
    let rows = s.pair_rows(0).await.unwrap();
    let b = rows.iter().find(|r| r.id == "bob").unwrap();
    assert_eq!((b.totals[0], b.backlog, b.pending_since), (3, 0, None));
    assert_eq!(b.last_success_at, Some(5_005));
}

/// The one read a pass starts with agrees with the reads it stands for.
async fn what_a_pass_starts_from(s: &State) {
    let cals = ["s:/alice/", "t:/alice/"];
    let peek =
        async |id: &PairId, now: i64, window: &str| s.peek(id, cals, now, window).await.unwrap();
    let start = async |id: &PairId, now: i64, window: &str| peek(id, now, window).await.start;
    let unknown: PairId = "nobody".parse().unwrap();
    let nobody = peek(&unknown, 0, "w1").await;
    assert_eq!(nobody.start, PassStart::default());
    assert_eq!(nobody.state, s.pair_state(&unknown).await.unwrap());
    assert_eq!(nobody.leased, [false, false]);
    let id = alice(s).await;
    let quiet = start(&id, 0, "w1").await;
    assert_eq!(
        quiet,
        PassStart {
            calendars: Some(("s:/alice/".into(), "t:/alice/".into())),
            direction: Some("one-way".into()),
            watermarks: (Some(SyncToken::new("tok")), None),
            mappings: 1,
            ..PassStart::default()
        }
    );
    // The pair's service state and the calendars' leases, as their own reads have them.
    let paused = PairState::Paused {
        reason: "mailbox is being moved".into(),
        until: 1_000,
    };
    s.set_pair_state(&id, &paused, Some(900)).await.unwrap();
    let lease = s
        .acquire_lease(
            "t:/alice/",
            "someone",
            LeaseKind::Sync,
            Duration::from_secs(60),
        )
        .await
        .unwrap()
        .unwrap();
    let seen = peek(&id, 0, "w1").await;
    assert_eq!(seen.state, s.pair_state(&id).await.unwrap());
    assert_eq!(seen.state.state, paused);
    assert_eq!(seen.leased, [false, true]);
    s.release_lease(&lease).await.unwrap();
    assert_eq!(peek(&id, 0, "w1").await.leased, [false, false]);
    s.set_cutover(&pair("alice", "s:/alice/"), Some(7))
        .await
        .unwrap();
    assert_eq!(start(&id, 0, "w1").await.cutover_at, Some(7));
    s.set_cutover(&pair("alice", "s:/alice/"), None)
        .await
        .unwrap();
    s.put_mapping(&id, &mapping(2)).await.unwrap();
    s.add_pending(&id, &pending(1)).await.unwrap();
    s.set_watermark(&id, Side::B, Some(&SyncToken::new("b")))
        .await
        .unwrap();
    s.update_outside_window(
        &id,
        Side::A,
        &[outside(1, Some(100)), outside(2, None)],
        &[],
        "w1",
    )
    .await
    .unwrap();
    let fault = ItemFault {
        href: href("/s/x.ics"),
        etag: Etag::new("x1"),
        identity: None,
        error: "413 too large".into(),
    };
    s.record_item_faults(&id, Side::A, std::slice::from_ref(&fault), &[])
        .await
        .unwrap();
    let busy = start(&id, 50, "w1").await;
    assert_eq!(
        (
            busy.watermarks.1,
            busy.pendings,
            busy.mappings,
            busy.held,
            busy.to_retry,
            busy.due
        ),
        (Some(SyncToken::new("b")), 1, 2, 1, 1, 0)
    );
    // Due as `outside_window` has it: its time came, or another window judged it.
    for (now, window) in [(100, "w1"), (50, "w2")] {
        let due = s
            .outside_window(&id, now, window, false)
            .await
            .unwrap()
            .len() as u64;
        assert_eq!(
            start(&id, now, window).await.due,
            due,
            "at {now} in {window}"
        );
        assert!(due > 0);
    }
    // Quarantined and not let out: held, not to retry.
    for _ in 1..QUARANTINE_AFTER {
        s.record_item_faults(&id, Side::A, std::slice::from_ref(&fault), &[])
            .await
            .unwrap();
    }
    let held = start(&id, 50, "w1").await;
    assert_eq!((held.held, held.to_retry), (1, 0));
    s.quarantine_retry(Some(&id)).await.unwrap();
    assert_eq!(start(&id, 50, "w1").await.to_retry, 1);
}

async fn pair_states(s: &State) {
    let id = alice(s).await;
    assert_eq!(s.pair_state(&id).await.unwrap().state, PairState::Active);
    let paused = PairState::Paused {
        reason: "mailbox is being moved".into(),
        until: 1_000,
    };
    s.set_pair_state(&id, &paused, Some(900)).await.unwrap();
    let stored = s.pair_state(&id).await.unwrap();
    assert_eq!((stored.state, stored.next_run), (paused.clone(), Some(900)));
    let backoff = PairState::Backoff {
        reason: "503".into(),
        failures: 2,
        until: 2_000,
    };
    s.set_pair_state(&id, &backoff, None).await.unwrap();
    let all = s.pair_states().await.unwrap();
    assert_eq!(all["alice"].state, backoff);
    s.set_pair_state(
        &id,
        &PairState::Disabled {
            reason: "by hand".into(),
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(s.pair_state(&id).await.unwrap().state.name(), "disabled");
    assert!(!s.synced_pairs().await.unwrap().contains("alice"));
}

async fn quarantine(s: &State) {
    let id = alice(s).await;
    let x = href("/s/x.ics");
    let fault = || ItemFault {
        href: x.clone(),
        etag: Etag::new("x1"),
        identity: Some(identity(1)),
        error: "413 too large".into(),
    };
    for n in 1..QUARANTINE_AFTER {
        assert!(
            s.record_item_faults(&id, Side::A, &[fault()], &[])
                .await
                .unwrap()
                .is_empty(),
            "failure {n}"
        );
    }
    assert_eq!(
        s.record_item_faults(&id, Side::A, &[fault()], &[])
            .await
            .unwrap(),
        std::slice::from_ref(&x)
    );
    // The same href failing on the other side counts apart.
    assert!(
        s.record_item_faults(&id, Side::B, &[fault()], &[])
            .await
            .unwrap()
            .is_empty()
    );
    let both = s.quarantine_rows(&id).await.unwrap();
    assert_eq!(both.len(), 2);
    s.record_item_faults(&id, Side::B, &[], std::slice::from_ref(&x))
        .await
        .unwrap();
    let rows = s.quarantine_rows(&id).await.unwrap();
    assert_eq!(
        (rows.len(), rows[0].side, rows[0].quarantined, rows[0].retry),
        (1, Side::A, true, false)
    );
    let list = s.quarantine_list(Some(&id)).await.unwrap();
    assert_eq!(
        (list[0].count, list[0].error.as_str()),
        (QUARANTINE_AFTER, "413 too large")
    );
    assert_eq!(s.quarantine_list(None).await.unwrap().len(), 1);
    assert_eq!(s.quarantine_counts().await.unwrap()["alice"], 1);
    assert_eq!(s.quarantine_retry(Some(&id)).await.unwrap(), 1);
    assert!(s.quarantine_rows(&id).await.unwrap()[0].retry);
    // Synced at last: it leaves quarantine.
    s.record_item_faults(&id, Side::A, &[], &[x]).await.unwrap();
    assert!(s.quarantine_rows(&id).await.unwrap().is_empty());
}

async fn leases(s: &State) {
    let ttl = Duration::from_secs(60);
    let cal = "t:/alice/";
    let mine = s
        .acquire_lease(cal, "one", LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(mine.expires_at > now_ms());
    let locked = s
        .acquire_lease(cal, "two", LeaseKind::Repair, ttl)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (locked.holder.as_str(), locked.kind),
        ("one", LeaseKind::Sync)
    );
    assert!(s.renew_lease(&mine, ttl).await.unwrap());
    assert!(s.lease_is_current(&mine).await.unwrap());
    assert_eq!(s.lease(cal).await.unwrap().unwrap().holder, "one");
    // Taken over: a higher token, and the old holder is no longer current.
    let theirs = s
        .take_over_lease(cal, "one", "two", LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(theirs.token > mine.token);
    assert!(!s.lease_is_current(&mine).await.unwrap());
    assert!(!s.renew_lease(&mine, ttl).await.unwrap());
    assert!(
        s.take_over_lease(cal, "one", "three", LeaseKind::Sync, ttl)
            .await
            .unwrap()
            .is_none()
    );
    s.release_lease(&theirs).await.unwrap();
    // Released is expired (the row keeps the token, so tokens keep growing).
    assert!(s.lease(cal).await.unwrap().unwrap().expires_at <= now_ms());
    // Free again: the next holder's token is higher still.
    let next = s
        .acquire_lease(cal, "one", LeaseKind::External, ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(next.token > theirs.token);
    assert!(!s.release_lease_of(cal, "two").await.unwrap());
    assert!(s.release_lease_of(cal, "one").await.unwrap());
    s.acquire_lease("t:/a/", "me", LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    s.acquire_lease("t:/b/", "me", LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    s.acquire_lease("t:/c/", "you", LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    let held = async || {
        let now = now_ms();
        let all = s.leases().await.unwrap();
        all.into_iter()
            .filter(|l| l.expires_at > now)
            .map(|l| l.holder)
            .collect::<Vec<_>>()
    };
    assert_eq!(held().await.len(), 3);
    s.release_leases_of("me").await.unwrap();
    assert_eq!(held().await, ["you"]);
    // A holder of this machine whose process is gone is taken over, not waited out; a live one
    // (this process) is not.
    let me = tandem::domain::lease::process_holder();
    let host = me.split_whitespace().next().unwrap();
    let gone = format!("{host} pid 4294967295 dead");
    let old = s
        .acquire_lease("t:/e/", &gone, LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    let new = s
        .take_lease("t:/e/", &me, LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (new.holder.as_str(), new.token > old.token),
        (me.as_str(), true)
    );
    let refused = s
        .take_lease("t:/e/", "other", LeaseKind::Sync, ttl)
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err().holder, me);
    // An expired lease is free for anyone.
    let brief = s
        .acquire_lease("t:/d/", "me", LeaseKind::Sync, Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!s.lease_is_current(&brief).await.unwrap());
    assert!(
        s.acquire_lease("t:/d/", "you", LeaseKind::Sync, ttl)
            .await
            .unwrap()
            .is_ok()
    );
}

async fn server_counts(s: &State) {
    let now = now_ms();
    let counts = |requests, failed, throttled| HttpCounts {
        requests,
        failed,
        throttled,
        ..HttpCounts::default()
    };
    let deltas: BTreeMap<String, HttpCounts> = [("old".to_string(), counts(10, 2, 1))].into();
    s.add_server_counts(&deltas, now).await.unwrap();
    s.add_server_counts(&deltas, now).await.unwrap();
    let rows = s.server_rows(now).await.unwrap();
    assert_eq!(rows["old"].totals, [20, 4, 2]);
    assert_eq!(rows["old"].hour, [20, 4, 2]);
    assert!(!rows.contains_key("new"));
}

/// Writes add up per minute; the lag sampled keeps the longest of its minute, from the oldest
/// change waiting; a first sync's writes left are the pair's backlog meanwhile; a day is kept.
async fn minutes_of_the_migration(s: &State) {
    let id = alice(s).await;
    let t = now_ms() / 60_000 * 60_000;
    s.add_writes(4, t - 2 * 24 * 3_600_000).await.unwrap();
    s.add_writes(3, t + 1).await.unwrap();
    s.add_writes(0, t + 2).await.unwrap();
    s.add_writes(2, t + 3).await.unwrap();
    // Changes have waited since 30 s before the minute began.
    let waiting = RunRecord {
        outcome: Outcome::Ok,
        counts: RunCounts {
            backlog: Some(2),
            ..RunCounts::default()
        },
        started_at: t - 30_000,
        finished_at: t - 29_000,
        ..RunRecord::start(RunKind::Sync, "node")
    };
    s.record_run(&id, &waiting).await.unwrap();
    s.sample_lag(t + 10_000, &["alice"]).await.unwrap();
    s.sample_lag(t + 5_000, &["alice"]).await.unwrap();
    // Only the pairs named are sampled: alice would lag 80 s by now.
    s.sample_lag(t + 50_000, &["bob"]).await.unwrap();
    let got = s.minutes(t - 3_600_000).await.unwrap();
    assert_eq!(
        got,
        [tandem::state::Minute {
            minute: t / 60_000,
            writes: 5,
            lag_ms: Some(40_000),
            lagging: Some(1),
        }]
    );
    assert_eq!(
        s.minutes(0).await.unwrap().len(),
        1,
        "older than a day: dropped"
    );

    s.apply_and_note(&id, &[mapping(2)], &[], &[], Some(7))
        .await
        .unwrap();
    let rows = s.pair_rows(0).await.unwrap();
    assert_eq!(rows.iter().find(|r| r.id == "alice").unwrap().backlog, 7);
}

fn node(id: &str) -> tandem::state::NodeInfo {
    tandem::state::NodeInfo {
        id: id.to_string(),
        host: "host".into(),
        pid: 1,
        version: "0.0.0".into(),
        listen: "127.0.0.1:8686".into(),
    }
}

async fn nodes_and_claims(s: &State) {
    let long = Duration::from_secs(60);
    assert_eq!(s.heartbeat(&node("n1"), long).await.unwrap(), ["n1"]);
    assert_eq!(s.heartbeat(&node("n2"), long).await.unwrap(), ["n1", "n2"]);
    // Of two nodes claiming one pair, one gets it; a free pair goes to whoever asks.
    assert_eq!(s.claim("n1", &["p1", "p2"]).await.unwrap().len(), 2);
    assert!(s.claim("n2", &["p1", "p3"]).await.unwrap() == ["p3"]);
    let mut mine = s.claims_of("n1").await.unwrap();
    mine.sort();
    assert_eq!(mine, ["p1", "p2"]);
    assert_eq!(
        s.claims().await.unwrap().get("p3").map(String::as_str),
        Some("n2")
    );
    // Released, a claim is free for the other node.
    s.release_claims("n1", &["p2"]).await.unwrap();
    assert_eq!(s.claim("n2", &["p2"]).await.unwrap(), ["p2"]);
    // A node whose heartbeat lapsed is dead: its claims are taken, and it shows so.
    s.heartbeat(&node("n3"), Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(s.claim("n3", &["p4"]).await.unwrap(), ["p4"]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(s.live_nodes().await.unwrap(), ["n1", "n2"]);
    assert_eq!(s.claim("n1", &["p4"]).await.unwrap(), ["p4"]);
    let rows = s.nodes().await.unwrap();
    let status = |id: &str| {
        rows.iter()
            .find(|n| n.id == id)
            .map(|n| (n.status, n.pairs))
    };
    assert_eq!(status("n1"), Some(("alive", 2)));
    assert_eq!(status("n2"), Some(("alive", 2)));
    assert_eq!(status("n3"), Some(("dead", 0)));
    assert!(rows.iter().all(|n| n.heartbeat_age_ms >= 0));
    // Leaving frees every claim at once.
    s.leave("n2").await.unwrap();
    assert_eq!(status_of(s, "n2").await, Some(("stopped", 0)));
    assert_eq!(s.claim("n1", &["p2", "p3"]).await.unwrap().len(), 2);
    // Claims of many pairs go in chunks.
    let many: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(s.claim("n1", &refs).await.unwrap().len(), 1000);
    assert!(s.claim("n2", &refs).await.unwrap().is_empty());
    s.release_claims("n1", &refs).await.unwrap();
    assert_eq!(s.claims_of("n1").await.unwrap().len(), 4);
    assert!(s.db_now().await.unwrap() > 0);
}

async fn status_of(s: &State, id: &str) -> Option<(&'static str, i64)> {
    s.nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.id == id)
        .map(|n| (n.status, n.pairs))
}

async fn fenced_writes(s: &State) {
    let id = alice(s).await;
    let ttl = Duration::from_secs(60);
    let lease = s
        .acquire_lease("t:/alice/", "one", LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    // Under a current lease, writes land.
    tandem::state::fenced(std::slice::from_ref(&lease), async {
        s.put_mapping(&id, &mapping(2)).await.unwrap();
    })
    .await;
    // Taken over: every write of the old holder is refused, naming who has the lease now.
    s.take_over_lease("t:/alice/", "one", "two", LeaseKind::Sync, ttl)
        .await
        .unwrap()
        .unwrap();
    tandem::state::fenced(std::slice::from_ref(&lease), async {
        let e = s.put_mapping(&id, &mapping(3)).await.unwrap_err();
        assert!(e.lease_lost(), "{e}");
        assert!(e.to_string().contains("two (token"), "{e}");
        let e = s
            .set_watermark(&id, Side::B, Some(&SyncToken::new("late")))
            .await
            .unwrap_err();
        assert!(e.lease_lost(), "{e}");
        assert!(
            s.record_run(&id, &RunRecord::start(RunKind::Sync, "one"))
                .await
                .unwrap_err()
                .lease_lost()
        );
    })
    .await;
    assert_eq!(s.mappings(&id).await.unwrap().len(), 2);
    assert_eq!(s.watermark(&id, Side::B).await.unwrap(), None);
    // Outside fenced work nothing is checked.
    s.put_mapping(&id, &mapping(3)).await.unwrap();
}
