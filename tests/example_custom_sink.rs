//! `examples/custom_sink` (a sink written with the public API only, storing
//! events in PostgreSQL) run as a user would run it, twice: the rows are
//! there, field by field, and the second run adds none (same event ids,
//! `ON CONFLICT (id) DO NOTHING`).
#![cfg(feature = "notify")]

use std::path::PathBuf;
use std::process::Command;

use tokio_postgres::NoTls;

const IDS: [&str; 3] = [
    "0190b5b1-0000-7000-8000-000000000001",
    "0190b5b1-0000-7000-8000-000000000002",
    "0190b5b1-0000-7000-8000-000000000003",
];

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1/test".into())
}

/// `target/<profile>/examples/custom_sink`, built by `cargo test` with the
/// other examples.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let binary = dir.join("examples").join("custom_sink");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --example custom_sink` (plain `cargo test` builds it)",
        binary.display()
    );
    binary
}

fn run_example() -> String {
    let output = Command::new(example_binary())
        .env("DATABASE_URL", database_url())
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the example failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_example_stores_events_once_however_often_it_runs() {
    if std::env::var("S3TAP_SKIP_PEERS").as_deref() == Ok("1") {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "S3TAP_SKIP_PEERS=1 is for local runs only"
        );
        eprintln!("\n!!!!!!!! SKIPPED: S3TAP_SKIP_PEERS=1, PostgreSQL was NOT exercised !!!!!!!!");
        return;
    }
    let (client, connection) = match tokio_postgres::connect(&database_url(), NoTls).await {
        Ok(connected) => connected,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {} ({e}); start it with: \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            database_url()
        ),
    };
    tokio::spawn(connection);
    let ids: Vec<&str> = IDS.to_vec();
    // A clean start for these ids (the table may not exist yet).
    client
        .batch_execute(
            "DO $$ BEGIN
               IF to_regclass('s3tap_events') IS NOT NULL THEN
                 DELETE FROM s3tap_events WHERE id LIKE '0190b5b1-0000-7000-8000-%';
               END IF;
             END $$",
        )
        .await
        .expect("clean up");

    let first = run_example();
    for id in IDS {
        assert!(first.contains(id), "the example printed its rows:\n{first}");
    }

    let rows = client
        .query(
            "SELECT id, extract(epoch FROM time)::bigint AS secs, event_type, bucket, key, size,
                    body->>'id' AS body_id, body->>'subject' AS subject, body->>'type' AS ce_type
             FROM s3tap_events WHERE id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await
        .expect("query");
    assert_eq!(rows.len(), 3);
    let expected = [
        ("ObjectCreated:Put", "photos/2024/cat.jpg", Some(52_133i64)),
        (
            "ObjectCreated:CompleteMultipartUpload",
            "videos/holiday.mp4",
            Some(734_003_200),
        ),
        ("ObjectRemoved:Delete", "photos/2024/dog.jpg", None),
    ];
    for (i, (row, (event_type, key, size))) in rows.iter().zip(expected).enumerate() {
        assert_eq!(row.get::<_, String>("id"), IDS[i]);
        assert_eq!(row.get::<_, i64>("secs"), 1_720_000_000 + i as i64 * 60);
        assert_eq!(row.get::<_, String>("event_type"), event_type);
        assert_eq!(
            row.get::<_, Option<String>>("bucket").as_deref(),
            Some("media")
        );
        assert_eq!(row.get::<_, Option<String>>("key").as_deref(), Some(key));
        assert_eq!(row.get::<_, Option<i64>>("size"), size);
        // The body is CloudEvents as the AWS S3 adapter maps a record: the
        // id is the record's request id (none here), `.`, the event id; the
        // subject the record's URL-encoded key.
        assert_eq!(
            row.get::<_, Option<String>>("body_id"),
            Some(format!(".{}", IDS[i]))
        );
        assert_eq!(
            row.get::<_, Option<String>>("subject"),
            Some(s3tap::notify::format::s3::encode_key(key))
        );
        let ce_type = format!("com.amazonaws.s3.{event_type}");
        assert_eq!(row.get::<_, Option<String>>("ce_type"), Some(ce_type));
    }

    // Again: the same ids, nothing new.
    let second = run_example();
    assert_eq!(
        first.lines().skip(1).collect::<Vec<_>>(),
        second.lines().skip(1).collect::<Vec<_>>()
    );
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM s3tap_events WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 3, "the second run stored duplicates");
}
