//! The SQLite state store on disk: pragmas, migrations of an older database, mapping bookkeeping.

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tandem::domain::identity::IdentityKey;
use tandem::domain::mapping::{Mapping, Pending, Side};
use tandem::domain::pair::Pair;
use tandem::domain::types::{ContentHash, Etag, Href, SyncToken};
use tandem::state::{SQLITE_MIGRATOR as MIGRATOR, State};

fn pair(id: &str, source: &str) -> Pair {
    Pair::new(
        id.parse().unwrap(),
        source.parse().unwrap(),
        format!("t:/{id}/").parse().unwrap(),
    )
}

fn mapping(n: u32) -> Mapping {
    Mapping {
        a_href: Href::new(&format!("/s/{n}.ics")).unwrap(),
        a_etag: Etag::new(format!("a{n}")),
        b_href: Href::new(&format!("/t/{n}.ics")).unwrap(),
        b_etag: Etag::new(format!("b{n}")),
        identity: IdentityKey::new(Some("mailto:Jane@New.Example"), &format!("uid-{n}")),
        hash: ContentHash(u128::from(n) << 64 | 7),
    }
}

#[tokio::test]
async fn opens_with_wal_foreign_keys_and_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/tandem.db");
    let state = State::open(&path).await.unwrap();
    assert!(path.exists());
    state
        .ensure_pair(&pair("alice", "s:/alice/"))
        .await
        .unwrap();
    state.close().await;
    // Journal mode is persistent in the file; check it from a fresh connection.
    let pool = SqlitePoolOptions::new()
        .connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
    drop(pool);
    // Foreign keys and busy timeout are per connection: check through the store's own pool by
    // violating a foreign key.
    let state = State::open(&path).await.unwrap();
    let orphan = Pair {
        id: "ghost".parse().unwrap(),
        ..pair("x", "s:/x/")
    };
    assert!(
        state.put_mapping(&orphan.id, &mapping(1)).await.is_err(),
        "foreign keys are off"
    );
}

#[tokio::test]
async fn an_older_database_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // Build a database as the first release left it: only the first migration applied.
    {
        let pool = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        let mut first = sqlx::migrate::Migrator::DEFAULT;
        first.migrations = std::borrow::Cow::Owned(MIGRATOR.migrations[..1].to_vec());
        first.run(&pool).await.unwrap();
        sqlx::query("INSERT INTO pairs (id, a_calendar, b_calendar, created_at) VALUES ('alice', 's:/alice/', 't:/alice/', 1)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO mappings VALUES ('alice', '/s/1.ics', 'a1', '/t/1.ics', 'b1', 'jane@new.example', 'uid-1', \
             '00000000000000010000000000000007', 1)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let runs = sqlx::query("SELECT name FROM sqlite_master WHERE name = 'runs'")
            .fetch_optional(&pool)
            .await
            .unwrap();
        assert!(
            runs.is_none(),
            "the old database must not have the runs table yet"
        );
        pool.close().await;
    }
    let state = State::open(&path).await.unwrap();
    let alice = pair("alice", "s:/alice/");
    state.ensure_pair(&alice).await.unwrap();
    assert_eq!(state.mappings(&alice.id).await.unwrap(), vec![mapping(1)]);
    let run = tandem::domain::run::RunRecord::start(tandem::domain::run::RunKind::Sync, "node");
    state.record_run(&alice.id, &run).await.unwrap();
    let status = state
        .pair_statuses(std::slice::from_ref(&alice.id))
        .await
        .unwrap();
    assert_eq!(status[0].items, 1);
    assert!(status[0].last_success_at.is_some());
}

#[tokio::test]
async fn a_database_of_the_one_way_release_keeps_working() {
    use tandem::domain::mapping::Side;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // As the release before two-way pairs left it: migrations 1 to 7, a synced pair with a
    // watermark and a create left pending by a crash.
    {
        let pool = SqlitePoolOptions::new()
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        let mut old = sqlx::migrate::Migrator::DEFAULT;
        old.migrations = std::borrow::Cow::Owned(MIGRATOR.migrations[..7].to_vec());
        old.run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO pairs (id, a_calendar, b_calendar, created_at) VALUES ('alice', 's:/alice/', 't:/alice/', 1)",
            "INSERT INTO mappings VALUES ('alice', '/s/1.ics', 'a1', '/t/1.ics', 'b1', 'jane@new.example', 'uid-1', \
             '00000000000000010000000000000007', 1)",
            "INSERT INTO pending_creates VALUES ('alice', '/s/2.ics', '/t/2.ics', 'jane@new.example', 'uid-2', 1)",
            "INSERT INTO watermarks VALUES ('alice', 'a', 'tok-a', 1)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let state = State::open(&path).await.unwrap();
    let alice = pair("alice", "s:/alice/");
    state.ensure_pair(&alice).await.unwrap();
    assert_eq!(state.mappings(&alice.id).await.unwrap(), vec![mapping(1)]);
    // The pending create wrote to the target, as every create of that release did.
    let pending = state.pendings(&alice.id).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].to, pending[0].b_href.as_str()),
        (Side::B, "/t/2.ics")
    );
    // Not cut over: the source is still the truth, and the watermark stands.
    assert_eq!(state.cutover_at(&alice.id).await.unwrap(), None);
    assert!(state.watermark(&alice.id, Side::A).await.unwrap().is_some());
}

#[tokio::test]
async fn mappings_watermarks_and_pending_creates() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("t.db")).await.unwrap();
    let alice = pair("alice", "s:/alice/");
    state.ensure_pair(&alice).await.unwrap();
    let id = &alice.id;

    let p = Pending {
        a_href: mapping(1).a_href,
        b_href: mapping(1).b_href,
        identity: mapping(1).identity,
        to: tandem::domain::mapping::Side::B,
        hash: None,
        update: false,
    };
    state.add_pending(id, &p).await.unwrap();
    state.add_pending(id, &p).await.unwrap();
    assert_eq!(state.pendings(id).await.unwrap(), vec![p.clone()]);
    state.put_mapping(id, &mapping(1)).await.unwrap();
    assert!(
        state.pendings(id).await.unwrap().is_empty(),
        "recording the mapping settles its pending create"
    );

    // A new mapping that claims a target href takes it over from the old one.
    let mut other = mapping(2);
    other.b_href = mapping(1).b_href;
    state.put_mapping(id, &other).await.unwrap();
    assert_eq!(state.mappings(id).await.unwrap(), vec![other.clone()]);
    state
        .apply(id, &[mapping(3), mapping(4)], &[other.a_href.clone()])
        .await
        .unwrap();
    let mut hrefs: Vec<_> = state
        .mappings(id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.a_href)
        .collect();
    hrefs.sort();
    assert_eq!(hrefs, vec![mapping(3).a_href, mapping(4).a_href]);

    assert_eq!(state.watermark(id, Side::A).await.unwrap(), None);
    state
        .set_watermark(id, Side::A, Some(&SyncToken::new("tok-1")))
        .await
        .unwrap();
    state
        .set_watermark(id, Side::A, Some(&SyncToken::new("tok-2")))
        .await
        .unwrap();
    assert_eq!(
        state.watermark(id, Side::A).await.unwrap(),
        Some(SyncToken::new("tok-2"))
    );

    // Pointing the pair at other calendars forgets what belonged to the old ones.
    state
        .ensure_pair(&pair("alice", "s:/alice-archive/"))
        .await
        .unwrap();
    assert!(state.mappings(id).await.unwrap().is_empty());
    assert_eq!(state.watermark(id, Side::A).await.unwrap(), None);
}
