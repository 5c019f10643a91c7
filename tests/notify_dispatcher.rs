//! The dispatcher against a real loopback webhook receiver: outages,
//! 5xx, 429 + Retry-After, 410, permanent refusals, a sink that hangs with a
//! full queue, shutdown, and a `kill -9` in the middle of an outage.
#![cfg(feature = "sink-webhook")]

mod notify_support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify_support::{closed_port, free, wait_until, Receiver, Reply, Seen};
use s3tap::notify::{
    Dispatcher, EmitError, Event, FsyncPolicy, OverflowPolicy, RetryPolicy, S3Operation,
};
use s3tap::sink::{BoxFuture, Sink, SinkError, WebhookSink};

fn event(key: &str) -> Event {
    let mut event = Event::new(
        S3Operation::PutObject,
        "PUT",
        200,
        format!("http://s3.test/b/{key}"),
    );
    event.bucket = Some("b".into());
    event.key = Some(key.into());
    event
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        multiplier: 2.0,
        jitter: true,
        max_attempts: None,
        max_age: None,
    }
}

fn webhook(url: &str) -> Arc<dyn Sink> {
    Arc::new(
        WebhookSink::builder(url)
            .max_batch(200)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
}

fn emit_all(dispatcher: &Dispatcher, sink: &str, n: usize, prefix: &str) -> HashSet<String> {
    (0..n)
        .map(|i| {
            let event = event(&format!("{prefix}-{i}"));
            let id = event.id.to_string();
            dispatcher.emit(sink, event).expect("accepted");
            id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_then_recovery_delivers_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let addr = closed_port();
    let url = format!("http://{addr}/hook");
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hook", webhook(&url))
        .batch(100, Duration::from_millis(2))
        .retry(fast_retry())
        .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
        .build()
        .await
        .unwrap();
    let ids = emit_all(&dispatcher, "hook", 1_000, "outage");
    // The receiver is down: everything is retried, nothing is lost.
    assert!(
        wait_until(Duration::from_secs(5), || dispatcher.stats().sinks[0]
            .retried
            >= 1_000)
        .await
    );
    // A failed attempt makes an event due for the spool at the next commit.
    assert!(
        wait_until(Duration::from_secs(5), || dispatcher.stats().spooled
            == 1_000)
        .await,
        "{:?}",
        dispatcher.stats()
    );

    let receiver = Receiver::start(addr, Arc::new(|_: &Seen| Reply::Status(200))).await;
    assert!(
        wait_until(Duration::from_secs(10), || receiver.log.acked_ids().len()
            == ids.len())
        .await,
        "{} of {} delivered",
        receiver.log.acked_ids().len(),
        ids.len()
    );
    assert_eq!(receiver.log.acked_ids(), ids);
    let stats = dispatcher.shutdown(Duration::from_secs(2)).await;
    task.await.unwrap();
    assert_eq!(stats.sinks[0].delivered, 1_000);
    assert_eq!(stats.spooled, 0);
    assert_eq!(stats.dead_lettered(), 0);
    // At-least-once: a duplicate is possible only if an acknowledged request
    // was not seen as such, which on loopback with a 2 s timeout is never.
    assert_eq!(receiver.log.acked_total(), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_acknowledged_before_they_are_due_never_touch_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.redb");
    let receiver = Receiver::ok().await;
    // A long interval: an event is due for the spool only after a full
    // interval, and a loopback receiver acknowledges long before that.
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hook", webhook(&receiver.url()))
        .batch(100, Duration::from_millis(2))
        .spool(&spool, FsyncPolicy::Interval(Duration::from_secs(2)))
        .build()
        .await
        .unwrap();
    let ids = emit_all(&dispatcher, "hook", 500, "fast");
    // The writer learns of the acknowledgements at its next tick. (A
    // shutdown before that would commit the events whose acknowledgement
    // it has not seen yet: it keeps everything not known to be delivered.)
    assert!(
        wait_until(Duration::from_secs(10), || dispatcher
            .stats()
            .delivered_unspooled
            == 500)
        .await,
        "{:?}",
        dispatcher.stats()
    );
    assert_eq!(receiver.log.acked_ids(), ids);
    let stats = dispatcher.shutdown(Duration::from_secs(2)).await;
    task.await.unwrap();
    assert_eq!(stats.sinks[0].delivered, 500);
    assert_eq!(stats.delivered_unspooled, 500, "{stats:?}");
    assert_eq!(
        stats.commits, 0,
        "nothing was due, nothing committed: {stats:?}"
    );
    assert_eq!((stats.queued, stats.spooled), (0, 0));

    // Nothing is left behind for the next start either.
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hook", webhook(&receiver.url()))
        .spool(&spool, FsyncPolicy::default())
        .build()
        .await
        .unwrap();
    assert_eq!(dispatcher.stats().spooled, 0);
    dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
    assert_eq!(receiver.log.acked_total(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_with_a_small_lane_gets_every_event_exactly_once() {
    // The lane holds 16 events and the sink takes 8 per 3 ms request, so
    // the lane spills again and again: events are diverted to the spool
    // (before their commit, at times), read back by the worker, and the
    // lane is fed again once the worker has caught up.
    const N: usize = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(
        free(),
        Arc::new(|_: &Seen| Reply::After(Duration::from_millis(3))),
    )
    .await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("slow", webhook(&receiver.url()))
        .batch(8, Duration::from_millis(1))
        .lane_capacity(16)
        .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
        .build()
        .await
        .unwrap();
    let mut ids = HashSet::new();
    for round in 0..5 {
        ids.extend(emit_all(
            &dispatcher,
            "slow",
            N / 5,
            &format!("slow{round}"),
        ));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(
        wait_until(Duration::from_secs(30), || receiver.log.acked_ids().len()
            == N)
        .await,
        "{} of {N}: {:?}",
        receiver.log.acked_ids().len(),
        dispatcher.stats()
    );
    let stats = dispatcher.shutdown(Duration::from_secs(2)).await;
    task.await.unwrap();
    assert_eq!(receiver.log.acked_ids(), ids);
    assert_eq!(
        receiver.log.acked_total(),
        N,
        "an event was delivered twice"
    );
    assert_eq!(stats.sinks[0].delivered, N as u64);
    assert!(
        stats.commits > 0,
        "the spill went through the spool: {stats:?}"
    );
    assert_eq!((stats.queued, stats.spooled), (0, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_accepted() {
    let failures = Arc::new(AtomicUsize::new(0));
    let counter = failures.clone();
    let receiver = Receiver::start(
        free(),
        Arc::new(move |seen: &Seen| {
            // Every other request fails, each way a server can fail.
            if seen.n.is_multiple_of(2) {
                counter.fetch_add(1, Ordering::SeqCst);
                Reply::Status([500, 502, 503, 504][seen.n / 2 % 4])
            } else {
                Reply::Status(200)
            }
        }),
    )
    .await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hook", webhook(&receiver.url()))
        .batch(50, Duration::from_millis(1))
        .retry(fast_retry())
        .build()
        .await
        .unwrap();
    let ids = emit_all(&dispatcher, "hook", 500, "5xx");
    assert!(
        wait_until(Duration::from_secs(10), || receiver.log.acked_ids().len()
            == ids.len())
        .await
    );
    let stats = dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
    assert_eq!(receiver.log.acked_ids(), ids);
    assert!(failures.load(Ordering::SeqCst) > 0);
    assert!(stats.sinks[0].retried > 0);
    assert_eq!(stats.sinks[0].delivered, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let receiver = Receiver::start(
        free(),
        Arc::new(|seen: &Seen| match seen.n {
            0 => Reply::StatusWith(429, vec![("retry-after", "2".into())]),
            1 => Reply::StatusWith(
                503,
                vec![(
                    "retry-after",
                    httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2)),
                )],
            ),
            _ => Reply::Status(200),
        }),
    )
    .await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hook", webhook(&receiver.url()))
        .batch(10, Duration::from_millis(1))
        // Without Retry-After the retry would come within 20 ms.
        .retry(fast_retry())
        .build()
        .await
        .unwrap();
    let ids = emit_all(&dispatcher, "hook", 5, "retry-after");
    assert!(
        wait_until(Duration::from_secs(15), || receiver.log.acked_ids().len()
            == ids.len())
        .await
    );
    dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
    let records = receiver.log.records();
    assert!(records.len() >= 3);
    // The HTTP date has a resolution of one second.
    for (i, asked) in [(0, Duration::from_secs(2)), (1, Duration::from_secs(1))] {
        let answered = records[i].answered.unwrap();
        let next = records[i + 1].seen.received;
        let waited = next - answered;
        assert!(
            waited >= asked,
            "request {} came {waited:?} after a Retry-After of {asked:?}",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_sink_and_keeps_its_events() {
    let gone = Receiver::start(free(), Arc::new(|_: &Seen| Reply::Status(410))).await;
    let fine = Receiver::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.redb");
    let (dispatcher, task) = Dispatcher::builder()
        .sink("gone", webhook(&gone.url()))
        .sink("fine", webhook(&fine.url()))
        .retry(fast_retry())
        .spool(&spool, FsyncPolicy::Always)
        .build()
        .await
        .unwrap();
    let gone_ids = emit_all(&dispatcher, "gone", 20, "gone");
    let fine_ids = emit_all(&dispatcher, "fine", 20, "fine");
    assert!(
        wait_until(Duration::from_secs(5), || dispatcher.stats().sinks[0]
            .disabled)
        .await
    );
    assert_eq!(
        dispatcher.emit("gone", event("late")),
        Err(EmitError::SinkDisabled("gone".into()))
    );
    assert!(wait_until(Duration::from_secs(5), || fine.log.acked_ids().len() == 20).await);
    assert_eq!(fine.log.acked_ids(), fine_ids);
    // One request, then nothing more to a disabled endpoint.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gone.log.records().len(), 1);
    let stats = dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
    assert_eq!(stats.disabled_sinks(), vec!["gone"]);
    assert_eq!(stats.sinks[0].pending, 20);
    assert_eq!(stats.sinks[0].rejected_disabled, 1);

    // The events are still in the spool: a restart pointed at a working
    // endpoint delivers them.
    let (dispatcher, task) = Dispatcher::builder()
        .sink("gone", webhook(&fine.url()))
        .sink("fine", webhook(&fine.url()))
        .spool(&spool, FsyncPolicy::Always)
        .build()
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || fine.log.acked_ids().len() == 40).await);
    assert!(gone_ids.is_subset(&fine.log.acked_ids()));
    dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_refusal_dead_letters_only_the_poisoned_event() {
    let receiver = Receiver::start(
        free(),
        Arc::new(|seen: &Seen| {
            if seen.keys.iter().any(|k| k.as_deref() == Some("poison")) {
                Reply::Status(400)
            } else {
                Reply::Status(200)
            }
        }),
    )
    .await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hook", webhook(&receiver.url()))
        .batch(100, Duration::from_millis(20))
        .retry(fast_retry())
        .build()
        .await
        .unwrap();
    let mut ids = emit_all(&dispatcher, "hook", 10, "ok");
    let poison = event("poison");
    let poison_id = poison.id.to_string();
    dispatcher.emit("hook", poison).unwrap();
    ids.extend(emit_all(&dispatcher, "hook", 10, "ok2"));
    ids.remove(&poison_id);
    assert!(
        wait_until(Duration::from_secs(5), || dispatcher
            .stats()
            .dead_lettered()
            == 1)
        .await
    );
    assert!(wait_until(Duration::from_secs(5), || receiver.log.acked_ids() == ids).await);
    let letters = dispatcher.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.id.as_str(), poison_id);
    assert_eq!(letters[0].sink, "hook");
    assert!(letters[0].reason.contains("400"), "{}", letters[0].reason);
    let stats = dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
    assert_eq!(stats.sinks[0].failed_permanent, 1);
    assert_eq!(stats.sinks[0].delivered, 20);
    assert_eq!(stats.spooled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_up_into_the_dead_letters() {
    let receiver = Receiver::start(free(), Arc::new(|_: &Seen| Reply::Status(500))).await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hook", webhook(&receiver.url()))
        .retry(RetryPolicy {
            max_attempts: Some(3),
            ..fast_retry()
        })
        .build()
        .await
        .unwrap();
    emit_all(&dispatcher, "hook", 5, "doomed");
    assert!(
        wait_until(Duration::from_secs(5), || dispatcher
            .stats()
            .dead_lettered()
            == 5)
        .await
    );
    let letters = dispatcher.dead_letters(10).await.unwrap();
    assert!(letters
        .iter()
        .all(|l| l.attempts == 3 && l.reason.contains("gave up")));
    dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
}

/// A sink that never answers.
struct Hang;

impl Sink for Hang {
    fn name(&self) -> &str {
        "hang"
    }
    fn max_batch(&self) -> usize {
        100
    }
    fn deliver<'a>(&'a self, _: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(std::future::pending())
    }
}

/// `emit` counts an event as queued before it hands it to the writer, which
/// may take it on another thread at once. Counted after, the writer's
/// subtraction could come first, saturate at zero, and leave `queued` one
/// too high for good: the proxy's dispatcher then never looked idle. An
/// emit waiting for room (`Block`, off the runtime) shows the order: the
/// writer cannot have taken its event yet, and it already counts.
#[test]
fn an_event_counts_as_queued_before_the_writer_can_take_it() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, task) = runtime
        .block_on(
            Dispatcher::builder()
                .sink("hang", Arc::new(Hang))
                .queue_capacity(4)
                .overflow(OverflowPolicy::Block)
                .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
                .build(),
        )
        .unwrap();
    // Between `block_on` calls the runtime, and so the writer, stands still:
    // four events fill the queue and stay in it.
    for i in 0..4 {
        dispatcher
            .emit("hang", event(&format!("fill-{i}")))
            .unwrap();
    }
    assert_eq!(dispatcher.stats().queued, 4);
    let waiting = std::thread::spawn({
        let dispatcher = dispatcher.clone();
        move || dispatcher.emit("hang", event("waits-for-room"))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while dispatcher.stats().queued < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!waiting.is_finished(), "the fifth emit waits for room");
    assert_eq!(
        dispatcher.stats().queued,
        5,
        "the waiting event counts as queued before the writer can take it"
    );
    // The writer runs, makes room, and the emit returns.
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !waiting.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    waiting
        .join()
        .unwrap()
        .expect("accepted once there was room");
    runtime.block_on(async {
        dispatcher.shutdown(Duration::from_millis(200)).await;
        task.await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_never_blocks_on_a_hung_sink_with_a_full_queue() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.redb");
    let fine = Receiver::ok().await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hang", Arc::new(Hang))
        .sink("fine", webhook(&fine.url()))
        .queue_capacity(16)
        .lane_capacity(256)
        .overflow(OverflowPolicy::SpillToSpool)
        .spool(&spool, FsyncPolicy::Always)
        .build()
        .await
        .unwrap();
    const N: usize = 20_000;
    let mut ids = HashSet::new();
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for i in 0..N {
        let event = event(&format!("hang-{i}"));
        ids.insert(event.id.to_string());
        let t = Instant::now();
        dispatcher
            .emit("hang", event)
            .expect("never refused under SpillToSpool");
        slowest = slowest.max(t.elapsed());
    }
    let elapsed = started.elapsed();
    // 20 000 emits into a 16-slot queue, each one a try_send or a push onto
    // the overflow list: no emit waits for the disk or the sink. An emit
    // that waited for the hung sink would never return; the bound is only
    // "did not block", generous for a loaded debug build. How fast emit is
    // here is measured by benches/dispatcher.rs.
    eprintln!("{N} emits took {elapsed:?}, the slowest {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "an emit blocked for {slowest:?}"
    );
    // The other sink is not held up by the hung one.
    let fine_ids = emit_all(&dispatcher, "fine", 10, "fine");
    assert!(wait_until(Duration::from_secs(10), || fine.log.acked_ids() == fine_ids).await);
    // Everything reaches the spool.
    assert!(
        wait_until(Duration::from_secs(30), || dispatcher.stats().sinks[0]
            .pending
            == N as u64)
        .await,
        "{:?}",
        dispatcher.stats()
    );
    let stats = dispatcher.shutdown(Duration::from_millis(200)).await;
    task.await.unwrap();
    assert_eq!(stats.sinks[0].pending, N as u64);
    assert_eq!(stats.queued, 0);

    // Restart with a sink that works: all of them arrive.
    let receiver = Receiver::ok().await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hang", webhook(&receiver.url()))
        .sink("fine", webhook(&fine.url()))
        .spool(&spool, FsyncPolicy::Always)
        .build()
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || receiver.log.acked_ids().len()
            == N)
        .await,
        "{} of {N}",
        receiver.log.acked_ids().len()
    );
    assert_eq!(receiver.log.acked_ids(), ids);
    dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_what_is_queued() {
    let receiver = Receiver::start(
        free(),
        Arc::new(|_: &Seen| Reply::After(Duration::from_millis(20))),
    )
    .await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hook", webhook(&receiver.url()))
        // A long linger: only the shutdown makes these go out now.
        .batch(1000, Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let ids = emit_all(&dispatcher, "hook", 300, "drain");
    let stats = dispatcher.shutdown(Duration::from_secs(5)).await;
    task.await.unwrap();
    assert_eq!(stats.sinks[0].delivered, 300);
    assert_eq!(receiver.log.acked_ids(), ids);
    assert_eq!(
        dispatcher.emit("hook", event("late")),
        Err(EmitError::Closed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_at_the_deadline_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.redb");
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hang", Arc::new(Hang))
        .spool(&spool, FsyncPolicy::Never)
        .build()
        .await
        .unwrap();
    let ids = emit_all(&dispatcher, "hang", 50, "deadline");
    let started = Instant::now();
    let stats = dispatcher.shutdown(Duration::from_millis(300)).await;
    task.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(stats.spooled, 50);

    let receiver = Receiver::ok().await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hang", webhook(&receiver.url()))
        .spool(&spool, FsyncPolicy::Never)
        .build()
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || receiver.log.acked_ids() == ids).await);
    dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
}

// ---------------------------------------------------------------------------
// kill -9: the child half runs only when the parent re-executes this test
// binary with S3TAP_CRASH_CHILD set.

const CHILD_ENV: &str = "S3TAP_CRASH_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let url = std::env::var("S3TAP_CRASH_URL").unwrap();
    let n: usize = std::env::var("S3TAP_CRASH_N").unwrap().parse().unwrap();
    let (dispatcher, _task) = Dispatcher::builder()
        .sink("hook", webhook(&url))
        .retry(fast_retry())
        .spool(dir.join("spool.redb"), FsyncPolicy::Always)
        .build()
        .await
        .unwrap();
    let ids = emit_all(&dispatcher, "hook", n, "crash");
    let list: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
    std::fs::write(dir.join("ids"), list.join("\n")).unwrap();
    // Accepted is not yet committed: wait for the group commit, and for a
    // few failed attempts so the spool holds attempt counts too.
    while dispatcher.stats().spooled < n as u64 || dispatcher.stats().sinks[0].retried < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("READY");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_spooled_event() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    const N: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let addr = closed_port();
    let url = format!("http://{addr}/hook");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env("S3TAP_CRASH_URL", &url)
        .env("S3TAP_CRASH_N", N.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("READY"))
    });
    let ready = tokio::time::timeout(Duration::from_secs(60), ready).await;
    let killed = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(matches!(ready, Ok(Ok(true))), "the child never got ready");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));

    let ids: HashSet<String> = std::fs::read_to_string(dir.path().join("ids"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), N);

    // A new process (here: this one) opens the same spool with the receiver
    // up: every id arrives.
    let receiver = Receiver::start(addr, Arc::new(|_: &Seen| Reply::Status(200))).await;
    let (dispatcher, task) = Dispatcher::builder()
        .sink("hook", webhook(&url))
        .retry(fast_retry())
        .spool(dir.path().join("spool.redb"), FsyncPolicy::Always)
        .build()
        .await
        .unwrap();
    assert_eq!(dispatcher.stats().spooled, N as u64);
    assert!(
        wait_until(Duration::from_secs(30), || receiver.log.acked_ids().len()
            == N)
        .await,
        "{} of {N} delivered after the crash",
        receiver.log.acked_ids().len()
    );
    assert_eq!(receiver.log.acked_ids(), ids);
    let stats = dispatcher.shutdown(Duration::from_secs(2)).await;
    task.await.unwrap();
    assert_eq!(stats.spooled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_selected_redriven_purged_and_a_gone_sink_enabled_again() {
    use s3tap::notify::{DeadLetterFilter, DispatcherError};
    use std::sync::atomic::AtomicU16;
    let status = Arc::new(AtomicU16::new(400));
    let answer = status.clone();
    let hook = Receiver::start(
        free(),
        Arc::new(move |_: &Seen| Reply::Status(answer.load(Ordering::SeqCst))),
    )
    .await;
    let other = Receiver::start(free(), Arc::new(|_: &Seen| Reply::Status(400))).await;
    let dir = tempfile::tempdir().unwrap();
    let (dispatcher, task) = Dispatcher::builder()
        .sink("a", webhook(&hook.url()))
        .sink("b", webhook(&other.url()))
        .batch(100, Duration::from_millis(2))
        .retry(fast_retry())
        .spool(dir.path().join("spool.redb"), FsyncPolicy::default())
        .build()
        .await
        .unwrap();
    let ids_a = emit_all(&dispatcher, "a", 3, "a");
    emit_all(&dispatcher, "b", 2, "b");
    assert!(
        wait_until(Duration::from_secs(10), || dispatcher
            .stats()
            .dead_lettered()
            == 5)
        .await
    );

    let all = DeadLetterFilter::all();
    assert_eq!(
        dispatcher
            .dead_letters_matching(&all, 100)
            .await
            .unwrap()
            .len(),
        5
    );
    let young = all.clone().sink("a").newer_than(Duration::from_secs(3600));
    let listed = dispatcher.dead_letters_matching(&young, 100).await.unwrap();
    let listed_ids: HashSet<String> = listed.iter().map(|l| l.event.id.to_string()).collect();
    assert_eq!(listed_ids, ids_a);
    assert!(listed
        .iter()
        .all(|l| l.dead_since_ms >= l.spooled_at_ms && l.attempts == 1));
    let one = ids_a.iter().next().unwrap();
    assert_eq!(
        dispatcher.dead_letter(one).await.unwrap().unwrap().sink,
        "a"
    );
    assert!(dispatcher
        .dead_letter("no-such-id")
        .await
        .unwrap()
        .is_none());

    // Nothing is an hour old yet.
    let old = all.clone().older_than(Duration::from_secs(3600));
    assert!(dispatcher.redrive(&old).await.unwrap().is_empty());
    assert!(matches!(
        dispatcher.redrive(&all.clone().sink("nope")).await,
        Err(DispatcherError::UnknownSink(_))
    ));

    let purged = dispatcher.purge(&all.clone().sink("b")).await.unwrap();
    assert_eq!(purged.get("b"), Some(&2));
    status.store(200, Ordering::SeqCst);
    let moved = dispatcher.redrive(&all.clone().sink("a")).await.unwrap();
    assert_eq!(moved.get("a"), Some(&3));
    assert!(wait_until(Duration::from_secs(10), || hook.log.acked_ids() == ids_a).await);
    let stats = dispatcher.stats();
    assert_eq!(stats.sinks[0].redriven, 3);
    assert_eq!(stats.sinks[0].dead_letters, 0);
    assert_eq!(stats.sinks[1].dead_letters, 0);
    assert!(dispatcher.dead_letters(10).await.unwrap().is_empty());

    // 410: disabled; enabled again, what waited is delivered and emit works.
    status.store(410, Ordering::SeqCst);
    let parked = emit_all(&dispatcher, "a", 2, "parked");
    assert!(
        wait_until(Duration::from_secs(10), || dispatcher.stats().sinks[0]
            .disabled)
        .await
    );
    assert_eq!(
        dispatcher.emit("a", event("refused")),
        Err(EmitError::SinkDisabled("a".into()))
    );
    status.store(200, Ordering::SeqCst);
    assert!(dispatcher.enable_sink("a").await.unwrap());
    assert!(
        !dispatcher.enable_sink("a").await.unwrap(),
        "already enabled"
    );
    let after = emit_all(&dispatcher, "a", 2, "after");
    let expected: HashSet<String> = ids_a.iter().chain(&parked).chain(&after).cloned().collect();
    assert!(
        wait_until(Duration::from_secs(10), || hook.log.acked_ids() == expected).await,
        "missing: {:?}",
        expected
            .difference(&hook.log.acked_ids())
            .collect::<Vec<_>>()
    );
    let stats = dispatcher.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
    assert_eq!(stats.spooled, 0);
    assert!(!stats.sinks[0].disabled);
}
