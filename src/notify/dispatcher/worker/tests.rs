//! Unit tests of a sink worker's outcome handling (Ok, Transient with
//! `retry_after`, Permanent, Partial, Disabled, the shutdown deadline) and
//! of its read-back from the spool; the reports are read off the writer's
//! channel, the sink is a scripted fake.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::Durability;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Outcome, Worker};
use crate::notify::dispatcher::lanes::{Entry, Lane};
use crate::notify::dispatcher::messages::Cmd;
use crate::notify::dispatcher::retry::RetryPolicy;
use crate::notify::dispatcher::sink::{BoxFuture, Sink, SinkError};
use crate::notify::dispatcher::spool::{now_ms, Append, Op, Spool};
use crate::notify::dispatcher::stats::{Counters, SinkCounters};
use crate::notify::{Event, S3Operation};

/// Answers each delivery with the next scripted result (`None`: never
/// answers), `Ok` once the script is used up; records the batches' sizes.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Option<Result<(), SinkError>>>>,
    batches: Mutex<Vec<usize>>,
}

impl Scripted {
    fn answering(answers: impl IntoIterator<Item = Result<(), SinkError>>) -> Arc<Self> {
        Arc::new(Scripted {
            answers: Mutex::new(answers.into_iter().map(Some).collect()),
            ..Scripted::default()
        })
    }

    fn batches(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }
}

impl Sink for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    fn max_batch(&self) -> usize {
        100
    }

    fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        self.batches.lock().unwrap().push(batch.len());
        let answer = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Some(Ok(())));
        Box::pin(async move {
            match answer {
                Some(result) => result,
                None => std::future::pending().await,
            }
        })
    }
}

struct Rig {
    worker: Worker,
    /// What the worker reports to the writer.
    reports: mpsc::Receiver<Cmd>,
    /// Keep it: a worker whose shutdown sender is gone stops, as when the
    /// dispatcher vanished without a shutdown.
    shutdown: watch::Sender<Option<Instant>>,
}

/// Retries wait exactly their cap (no jitter): 10 ms, doubling.
fn retry() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_secs(1),
        multiplier: 2.0,
        jitter: false,
        max_attempts: None,
        max_age: None,
    }
}

fn rig(sink: Arc<dyn Sink>, retry: RetryPolicy) -> Rig {
    let (spool, _) = Spool::open(None).expect("in-memory spool");
    let counters = Arc::new(Counters {
        sinks: vec![SinkCounters::default()],
        ..Counters::default()
    });
    let (cmds, reports) = mpsc::channel(64);
    let (shutdown, shutdown_rx) = watch::channel(None);
    let worker = Worker {
        index: 0,
        name: Arc::from("a"),
        sink,
        lane: Arc::new(Lane::new(None)),
        spool: Arc::new(spool),
        cmds,
        counters,
        retry,
        batch_max: 10,
        linger: Duration::from_millis(5),
        window: 100,
        ready: VecDeque::new(),
        waiting: BTreeMap::new(),
        blocked_until: None,
        failures: 0,
        first_ready: None,
        shutdown: shutdown_rx,
    };
    Rig {
        worker,
        reports,
        shutdown,
    }
}

fn event() -> Event {
    Event::new(S3Operation::PutObject, "PUT", 200, "https://s3.example/b/k")
}

/// Makes events `seqs` ready for delivery, as read from the lane.
fn ready(worker: &mut Worker, seqs: impl IntoIterator<Item = u64>) {
    for seq in seqs {
        worker.push_ready(Entry {
            seq,
            attempts: 0,
            spooled_ms: now_ms(),
            solo: false,
            event: event(),
        });
    }
}

/// The reports sent so far, one `Vec` per message.
fn reports(rx: &mut mpsc::Receiver<Cmd>) -> Vec<Vec<Op>> {
    let mut out = Vec::new();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            Cmd::Ops(ops) => out.push(ops),
            _ => panic!("a worker sends only reports"),
        }
    }
    out
}

fn deleted(ops: &[Op]) -> Vec<u64> {
    ops.iter()
        .map(|op| match op {
            Op::Delete { seq, .. } => *seq,
            other => panic!("expected a delete, got {other:?}"),
        })
        .collect()
}

fn counter(worker: &Worker, pick: impl Fn(&SinkCounters) -> &std::sync::atomic::AtomicU64) -> u64 {
    pick(worker.counters()).load(Ordering::Relaxed)
}

#[tokio::test(flavor = "current_thread")]
async fn ok_acknowledges_the_whole_batch_and_ends_the_backoff() {
    let sink = Scripted::answering([]);
    let Rig {
        mut worker,
        mut reports,
        shutdown: _alive,
    } = rig(sink.clone(), retry());
    worker.failures = 3;
    worker.blocked_until = Some(Instant::now());
    ready(&mut worker, 0..3);

    assert!(matches!(worker.deliver().await, Outcome::Continue));
    assert_eq!(sink.batches(), vec![3]);
    let sent = self::reports(&mut reports);
    assert_eq!(sent.len(), 1);
    assert_eq!(deleted(&sent[0]), vec![0, 1, 2]);
    assert_eq!(counter(&worker, |c| &c.delivered), 3);
    assert_eq!((worker.failures, worker.blocked_until), (0, None));
    assert!(worker.ready.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_batch_is_at_most_batch_max_events() {
    let sink = Scripted::answering([]);
    let Rig {
        mut worker,
        shutdown: _alive,
        ..
    } = rig(sink.clone(), retry());
    ready(&mut worker, 0..25);
    worker.deliver().await;
    worker.deliver().await;
    worker.deliver().await;
    assert_eq!(sink.batches(), vec![10, 10, 5]);
}

#[tokio::test(flavor = "current_thread")]
async fn transient_reschedules_no_sooner_than_retry_after_and_blocks_the_sink() {
    let asked = Duration::from_secs(30);
    let sink = Scripted::answering([Err(SinkError::Transient {
        message: "503".into(),
        retry_after: Some(asked),
    })]);
    let Rig {
        mut worker,
        mut reports,
        shutdown: _alive,
    } = rig(sink, retry());
    ready(&mut worker, 0..2);
    let (before, before_ms) = (Instant::now(), now_ms());

    assert!(matches!(worker.deliver().await, Outcome::Continue));
    let sent = self::reports(&mut reports);
    assert_eq!(sent.len(), 1);
    for (op, expected) in sent[0].iter().zip([0, 1]) {
        let Op::Reschedule {
            seq,
            attempts,
            next_attempt_ms,
            ..
        } = op
        else {
            panic!("expected a reschedule, got {op:?}");
        };
        assert_eq!((*seq, *attempts), (expected, 1));
        assert!(*next_attempt_ms >= before_ms + 30_000);
    }
    assert_eq!(worker.waiting.len(), 2, "kept in memory for the retry");
    assert!(worker.ready.is_empty());
    assert!(worker.blocked_until.is_some_and(|t| t >= before + asked));
    assert_eq!(worker.failures, 1);
    assert_eq!(counter(&worker, |c| &c.retried), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn transient_failures_back_off_exponentially_without_retry_after() {
    let sink = Scripted::answering([
        Err(SinkError::transient("down")),
        Err(SinkError::transient("down")),
    ]);
    let Rig {
        mut worker,
        shutdown: _alive,
        ..
    } = rig(sink, retry());
    ready(&mut worker, [0]);
    let before = Instant::now();
    worker.deliver().await;
    assert!(worker
        .blocked_until
        .is_some_and(|t| t >= before + Duration::from_millis(10)));
    // The retry comes back from `waiting` once due.
    let entry = worker.waiting.pop_first().expect("waiting").1;
    worker.push_ready(entry);
    let before = Instant::now();
    worker.deliver().await;
    assert_eq!(worker.failures, 2);
    assert!(worker
        .blocked_until
        .is_some_and(|t| t >= before + Duration::from_millis(20)));
    let (_, entry) = worker.waiting.first_key_value().expect("waiting");
    assert_eq!(entry.attempts, 2);
}

#[tokio::test(flavor = "current_thread")]
async fn transient_gives_up_after_max_attempts_into_the_dead_letters() {
    let sink = Scripted::answering([Err(SinkError::transient("timeout"))]);
    let policy = RetryPolicy {
        max_attempts: Some(2),
        ..retry()
    };
    let Rig {
        mut worker,
        mut reports,
        shutdown: _alive,
    } = rig(sink, policy);
    ready(&mut worker, [7]);
    worker.ready[0].attempts = 1;

    worker.deliver().await;
    let sent = self::reports(&mut reports);
    assert_eq!(sent.len(), 1, "no reschedule, one kill");
    let [Op::Kill {
        seq,
        attempts,
        reason,
        ..
    }] = &sent[0][..]
    else {
        panic!("expected one kill, got {:?}", sent[0]);
    };
    assert_eq!((*seq, *attempts), (7, 2));
    assert_eq!(reason, "gave up after 2 attempts: timeout");
    assert!(worker.waiting.is_empty());
    assert_eq!(counter(&worker, |c| &c.retried), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn permanent_on_a_batch_retries_each_event_alone_then_dead_letters_the_bad_one() {
    let sink = Scripted::answering([
        Err(SinkError::permanent("bad batch")),
        Ok(()),
        Err(SinkError::permanent("poisoned")),
        Ok(()),
    ]);
    let Rig {
        mut worker,
        mut reports,
        shutdown: _alive,
    } = rig(sink.clone(), retry());
    ready(&mut worker, 0..3);

    worker.deliver().await;
    assert!(
        self::reports(&mut reports).is_empty(),
        "nothing decided yet"
    );
    let solo: Vec<(u64, bool)> = worker.ready.iter().map(|e| (e.seq, e.solo)).collect();
    assert_eq!(solo, vec![(0, true), (1, true), (2, true)]);

    for _ in 0..3 {
        worker.deliver().await;
    }
    assert_eq!(sink.batches(), vec![3, 1, 1, 1]);
    let sent = self::reports(&mut reports);
    assert_eq!(deleted(&sent[0]), vec![0]);
    let [Op::Kill {
        seq: 1,
        attempts: 1,
        reason,
        ..
    }] = &sent[1][..]
    else {
        panic!("expected the kill of seq 1, got {:?}", sent[1]);
    };
    assert_eq!(reason, "poisoned");
    assert_eq!(deleted(&sent[2]), vec![2]);
    assert_eq!(counter(&worker, |c| &c.failed_permanent), 1);
    assert_eq!(counter(&worker, |c| &c.delivered), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn partial_acknowledges_dead_letters_and_reschedules_event_by_event() {
    let sink = Scripted::answering([Err(SinkError::Partial {
        failed: vec![
            (1, SinkError::permanent("rejected")),
            (
                2,
                SinkError::Transient {
                    message: "throttled".into(),
                    retry_after: Some(Duration::from_secs(5)),
                },
            ),
            (3, SinkError::transient("reset")),
        ],
    })]);
    let Rig {
        mut worker,
        mut reports,
        shutdown: _alive,
    } = rig(sink, retry());
    ready(&mut worker, 0..4);
    let before_ms = now_ms();

    worker.deliver().await;
    let sent = self::reports(&mut reports);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(deleted(&sent[0]), vec![0]);
    assert!(matches!(&sent[1][..], [Op::Kill { seq: 1, reason, .. }] if reason == "rejected"));
    let rescheduled: Vec<u64> = sent[2]
        .iter()
        .map(|op| match op {
            // The longest wait asked for applies to all of them.
            Op::Reschedule {
                seq,
                next_attempt_ms,
                ..
            } if *next_attempt_ms >= before_ms + 5_000 => *seq,
            other => panic!("expected a reschedule 5 s out, got {other:?}"),
        })
        .collect();
    assert_eq!(rescheduled, vec![2, 3]);
    assert_eq!(counter(&worker, |c| &c.delivered), 1);
    assert_eq!(counter(&worker, |c| &c.failed_permanent), 1);
    assert_eq!(counter(&worker, |c| &c.retried), 2);
    assert!(!worker.counters().disabled.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "current_thread")]
async fn disabled_parks_the_sink_and_leaves_its_events_in_the_spool() {
    let sink = Scripted::answering([Err(SinkError::Disabled {
        message: "410 Gone".into(),
    })]);
    let Rig {
        mut worker,
        mut reports,
        shutdown: _alive,
    } = rig(sink, retry());
    ready(&mut worker, 0..2);
    worker.waiting.insert(
        (u64::MAX, 9),
        Entry {
            seq: 9,
            attempts: 1,
            spooled_ms: 0,
            solo: false,
            event: event(),
        },
    );
    worker.lane.lock().queue.push_back(Entry {
        seq: 10,
        attempts: 0,
        spooled_ms: 0,
        solo: false,
        event: event(),
    });

    assert!(matches!(worker.deliver().await, Outcome::Continue));
    assert!(self::reports(&mut reports).is_empty(), "no delete, no kill");
    assert!(worker.counters().disabled.load(Ordering::Relaxed));
    let state = worker.lane.lock();
    assert!(state.disabled && state.spilled);
    assert!(state.queue.is_empty());
    drop(state);
    assert!(worker.ready.is_empty() && worker.waiting.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_disabled_event_in_a_partial_disables_the_sink_after_the_acks() {
    let sink = Scripted::answering([Err(SinkError::Partial {
        failed: vec![(
            0,
            SinkError::Disabled {
                message: "410".into(),
            },
        )],
    })]);
    let Rig {
        mut worker,
        mut reports,
        shutdown: _alive,
    } = rig(sink, retry());
    ready(&mut worker, 0..2);

    worker.deliver().await;
    let sent = self::reports(&mut reports);
    assert_eq!(sent.len(), 1, "only the delivered one is reported");
    assert_eq!(deleted(&sent[0]), vec![1]);
    assert!(worker.lane.lock().disabled);
    assert!(worker.waiting.is_empty(), "nothing rescheduled");
}

#[tokio::test(flavor = "current_thread")]
async fn the_shutdown_deadline_stops_a_delivery_in_flight() {
    let sink = Arc::new(Scripted {
        answers: Mutex::new(VecDeque::from([None])),
        ..Scripted::default()
    });
    let Rig {
        mut worker,
        mut reports,
        shutdown,
    } = rig(sink, retry());
    ready(&mut worker, 0..2);
    shutdown.send(Some(Instant::now())).expect("worker listens");

    assert!(matches!(worker.deliver().await, Outcome::Stop));
    assert!(
        self::reports(&mut reports).is_empty(),
        "they stay in the spool"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_spilled_lane_is_read_back_from_the_spool_until_caught_up() {
    let Rig {
        mut worker,
        shutdown: _alive,
        ..
    } = rig(Scripted::answering([]), retry());
    let names = vec![worker.name.clone()];
    let appends: Vec<Append> = (0..3)
        .map(|seq| Append {
            sink: 0,
            seq,
            spooled_ms: now_ms(),
            event: event(),
        })
        .collect();
    worker
        .spool
        .commit(&names, &appends, &[], 3, Durability::Immediate)
        .expect("commit");
    let later = now_ms() + 60_000;
    let retry_later = [Op::Reschedule {
        sink: worker.name.clone(),
        seq: 1,
        attempts: 1,
        next_attempt_ms: later,
    }];
    worker
        .spool
        .commit(&names, &[], &retry_later, 3, Durability::Immediate)
        .expect("commit");
    {
        let mut state = worker.lane.lock();
        state.spilled = true;
        state.spill_from = 0;
        state.spilled_through = Some(2);
    }

    assert!(!worker.refill().await.expect("refill"), "caught up");
    let ready: Vec<u64> = worker.ready.iter().map(|e| e.seq).collect();
    assert_eq!(ready, vec![0, 2]);
    assert_eq!(worker.waiting.keys().collect::<Vec<_>>(), vec![&(later, 1)]);
    let state = worker.lane.lock();
    assert!(!state.spilled, "the writer may feed the lane again");
    assert_eq!(state.spill_from, 3);
}

#[tokio::test(flavor = "current_thread")]
async fn a_spill_goes_on_while_a_diverted_event_is_not_yet_committed() {
    let Rig {
        mut worker,
        shutdown: _alive,
        ..
    } = rig(Scripted::answering([]), retry());
    {
        let mut state = worker.lane.lock();
        state.spilled = true;
        state.spill_from = 0;
        // Diverted by the writer, not in the spool yet.
        state.spilled_through = Some(4);
    }
    assert!(worker.refill().await.expect("refill"), "more to read");
    assert!(worker.lane.lock().spilled);
}
