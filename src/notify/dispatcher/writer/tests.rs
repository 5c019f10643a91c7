//! Unit tests of the spool writer's own logic: write-behind grace, group
//! commit, spill-through, reports settled before their event is written,
//! flush and close; against an in-memory spool, without workers.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::Durability;
use tokio::sync::{mpsc, oneshot, Notify};

use super::{grace_ticks, Writer};
use crate::notify::dispatcher::lanes::Lane;
use crate::notify::dispatcher::messages::{Cmd, Envelope};
use crate::notify::dispatcher::spool::{FsyncPolicy, Op, Spool, Stored};
use crate::notify::dispatcher::stats::{Counters, SinkCounters};
use crate::notify::{Event, S3Operation};

/// A writer for `sinks`, each lane holding `lane_capacity` events, and the
/// producers' ends of its channels.
struct Rig {
    writer: Writer,
    ingress: mpsc::Sender<Envelope>,
    cmds: mpsc::Sender<Cmd>,
    overflow: Arc<Mutex<Vec<Envelope>>>,
}

fn rig(sinks: &[&str], lane_capacity: usize, fsync: FsyncPolicy) -> Rig {
    let (spool, recovered) = Spool::open(None).expect("in-memory spool");
    let names: Vec<Arc<str>> = sinks.iter().map(|s| Arc::from(*s)).collect();
    let counters = Arc::new(Counters {
        sinks: names.iter().map(|_| SinkCounters::default()).collect(),
        ..Counters::default()
    });
    let (ingress, ingress_rx) = mpsc::channel(64);
    let (cmds, cmds_rx) = mpsc::channel(64);
    let overflow = Arc::new(Mutex::new(Vec::new()));
    let writer = Writer {
        spool: Arc::new(spool),
        names: names.clone(),
        lanes: names.iter().map(|_| Arc::new(Lane::new(None))).collect(),
        lane_capacity: vec![lane_capacity; names.len()],
        counters,
        ingress: ingress_rx,
        ingress_open: true,
        cmds: cmds_rx,
        overflow: overflow.clone(),
        wake: Arc::new(Notify::new()),
        fsync,
        next_seq: recovered.next_seq,
        closing: None,
        unspooled: VecDeque::new(),
        unspooled_from: recovered.next_seq,
        tick: 0,
        grace_ticks: grace_ticks(fsync),
        touched: vec![false; names.len()],
        admin: Vec::new(),
    };
    Rig {
        writer,
        ingress,
        cmds,
        overflow,
    }
}

const INTERVAL: FsyncPolicy = FsyncPolicy::Interval(Duration::from_millis(5));

fn envelope(sink: usize) -> Envelope {
    Envelope {
        sink,
        event: Event::new(S3Operation::PutObject, "PUT", 200, "https://s3.example/b/k"),
    }
}

/// Accepts one event for `sink` as the handle and the writer do: counted as
/// queued, then numbered and handed over.
fn accept(writer: &mut Writer, sink: usize) {
    writer.counters.queued.fetch_add(1, Ordering::Relaxed);
    writer.accept(envelope(sink));
}

/// The sequence numbers the spool holds for `sink`.
fn spooled(writer: &Writer, sink: &str) -> Vec<u64> {
    writer
        .spool
        .read(sink, 0, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|row| row.expect("decodes").seq)
        .collect()
}

fn in_lane(writer: &Writer, sink: usize) -> Vec<u64> {
    writer.lanes[sink]
        .lock()
        .queue
        .iter()
        .map(|e| e.seq)
        .collect()
}

fn seqs(appends: &[crate::notify::dispatcher::spool::Append]) -> Vec<u64> {
    appends.iter().map(|a| a.seq).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_acknowledged_within_its_grace_is_never_written() {
    let Rig { mut writer, .. } = rig(&["a"], 16, INTERVAL);
    accept(&mut writer, 0);
    assert_eq!(in_lane(&writer, 0), vec![0], "handed to the lane at once");
    assert!(
        writer.take_due(false).is_empty(),
        "not due in its first tick"
    );

    let mut ops = vec![Op::Delete {
        sink: writer.names[0].clone(),
        seq: 0,
    }];
    writer.settle(&mut ops);
    assert!(
        ops.is_empty(),
        "the delete of an unwritten event is dropped"
    );
    assert!(writer.unspooled.is_empty());
    assert!(writer.take_due(true).is_empty());
    let c = &writer.counters;
    assert_eq!(c.delivered_unspooled.load(Ordering::Relaxed), 1);
    assert_eq!(c.queued.load(Ordering::Relaxed), 0);
    assert_eq!(c.commits.load(Ordering::Relaxed), 0);
    assert!(spooled(&writer, "a").is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn an_unacknowledged_event_falls_due_after_one_tick() {
    let Rig { mut writer, .. } = rig(&["a"], 16, INTERVAL);
    accept(&mut writer, 0);
    assert!(writer.take_due(false).is_empty());
    writer.tick += 1;
    accept(&mut writer, 0); // arrives in the second tick: not due yet
    let mut appends = writer.take_due(false);
    assert_eq!(seqs(&appends), vec![0]);

    writer
        .commit(&mut appends, &mut Vec::new(), Durability::Immediate)
        .await;
    assert_eq!(spooled(&writer, "a"), vec![0]);
    let c = &writer.counters;
    assert_eq!(c.commits.load(Ordering::Relaxed), 1);
    assert_eq!(c.spooled.load(Ordering::Relaxed), 1);
    assert_eq!(c.queued.load(Ordering::Relaxed), 1, "seq 1 still waits");
    assert_eq!(c.sinks[0].pending.load(Ordering::Relaxed), 1);
}

#[test]
fn without_an_interval_every_event_is_due_at_the_next_commit() {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
        let Rig { mut writer, .. } = rig(&["a"], 16, fsync);
        accept(&mut writer, 0);
        assert_eq!(seqs(&writer.take_due(false)), vec![0], "{fsync:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn one_group_commit_writes_every_due_event_of_every_sink() {
    let Rig { mut writer, .. } = rig(&["a", "b"], 1_000, INTERVAL);
    for i in 0..100 {
        accept(&mut writer, i % 2);
    }
    let mut appends = writer.take_due(true);
    assert_eq!(appends.len(), 100);
    writer
        .commit(&mut appends, &mut Vec::new(), Durability::Immediate)
        .await;

    let c = &writer.counters;
    assert_eq!(c.commits.load(Ordering::Relaxed), 1);
    assert_eq!(c.spooled.load(Ordering::Relaxed), 100);
    assert_eq!(c.queued.load(Ordering::Relaxed), 0);
    assert_eq!(c.sinks[0].pending.load(Ordering::Relaxed), 50);
    assert_eq!(c.sinks[1].pending.load(Ordering::Relaxed), 50);
    let evens: Vec<u64> = (0..100).step_by(2).collect();
    let odds: Vec<u64> = (1..100).step_by(2).collect();
    assert_eq!(spooled(&writer, "a"), evens);
    assert_eq!(spooled(&writer, "b"), odds);
    assert!(writer.unspooled.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_group_commit_is_bounded() {
    let Rig { mut writer, .. } = rig(&["a"], usize::MAX, INTERVAL);
    for _ in 0..super::MAX_COMMIT + 3 {
        accept(&mut writer, 0);
    }
    assert_eq!(writer.take_due(true).len(), super::MAX_COMMIT);
    let m = super::MAX_COMMIT as u64;
    assert_eq!(seqs(&writer.take_due(true)), vec![m, m + 1, m + 2]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_lane_spills_and_its_events_go_through_the_spool() {
    let Rig { mut writer, .. } = rig(&["a"], 2, INTERVAL);
    for _ in 0..5 {
        accept(&mut writer, 0);
    }
    assert_eq!(in_lane(&writer, 0), vec![0, 1]);
    {
        let state = writer.lanes[0].lock();
        assert!(state.spilled);
        assert_eq!(state.spill_from, 2);
        assert_eq!(state.spilled_through, Some(4));
    }
    // The lane empties (its worker took the events), but the spill goes on
    // until the worker has read back what was diverted.
    writer.lanes[0].lock().queue.clear();
    accept(&mut writer, 0);
    assert!(in_lane(&writer, 0).is_empty());
    assert_eq!(writer.lanes[0].lock().spilled_through, Some(5));

    // Diverted events are due at once, the lane's wait their grace.
    let mut appends = writer.take_due(false);
    assert_eq!(seqs(&appends), vec![2, 3, 4, 5]);
    writer
        .commit(&mut appends, &mut Vec::new(), Durability::Immediate)
        .await;
    assert_eq!(spooled(&writer, "a"), vec![2, 3, 4, 5]);
    // The commit wakes the spilled lane's worker to read them back.
    let woken = tokio::time::timeout(Duration::from_secs(10), writer.lanes[0].notify.notified());
    assert!(woken.await.is_ok(), "the worker was not woken");
}

#[test]
fn a_disabled_sink_gets_nothing_in_its_lane() {
    let Rig { mut writer, .. } = rig(&["a", "b"], 16, INTERVAL);
    writer.lanes[0].lock().disabled = true;
    accept(&mut writer, 0);
    accept(&mut writer, 1);
    assert!(in_lane(&writer, 0).is_empty());
    assert_eq!(writer.lanes[0].lock().spilled_through, Some(0));
    assert_eq!(in_lane(&writer, 1), vec![1]);
    assert_eq!(seqs(&writer.take_due(false)), vec![0]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_failure_reported_before_the_commit_makes_its_event_due_with_it() {
    let Rig { mut writer, .. } = rig(&["a"], 16, INTERVAL);
    accept(&mut writer, 0);
    accept(&mut writer, 0);
    let mut ops = vec![Op::Reschedule {
        sink: writer.names[0].clone(),
        seq: 1,
        attempts: 1,
        next_attempt_ms: 4_000_000_000_000,
    }];
    writer.settle(&mut ops);
    assert_eq!(ops.len(), 1, "kept for the commit that writes the event");
    let mut appends = writer.take_due(false);
    assert_eq!(seqs(&appends), vec![1], "seq 0 still has its grace");
    writer
        .commit(&mut appends, &mut ops, Durability::Immediate)
        .await;

    let rows = writer.spool.read("a", 0, 10).expect("read");
    let Ok(Stored {
        seq,
        attempts,
        next_attempt_ms,
        ..
    }) = &rows[0]
    else {
        panic!("undecodable record");
    };
    assert_eq!((rows.len(), *seq, *attempts), (1, 1, 1));
    assert_eq!(*next_attempt_ms, 4_000_000_000_000);
}

#[test]
fn arrivals_come_from_the_overflow_list_and_the_queue() {
    let Rig {
        mut writer,
        ingress,
        overflow,
        ..
    } = rig(&["a"], 16, INTERVAL);
    for _ in 0..3 {
        ingress.try_send(envelope(0)).expect("room");
    }
    overflow.lock().unwrap().extend([envelope(0), envelope(0)]);
    writer.take_arrivals();
    assert_eq!(writer.unspooled.len(), 5);
    assert!(overflow.lock().unwrap().is_empty());
    assert!(writer.ingress.is_empty());
    assert_eq!(in_lane(&writer, 0), vec![0, 1, 2, 3, 4]);
    assert!(writer.touched[0], "its worker is woken once, for all five");
    writer.wake_workers();
    assert!(!writer.touched[0]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_flush_commits_what_was_accepted_before_it_is_due_and_close_ends_the_task() {
    // An interval no test outlives: only the flush can make these due.
    let fsync = FsyncPolicy::Interval(Duration::from_secs(3_600));
    let Rig {
        writer,
        ingress,
        cmds,
        ..
    } = rig(&["a"], 16, fsync);
    let spool = writer.spool.clone();
    let counters = writer.counters.clone();
    let task = tokio::spawn(writer.run());
    for _ in 0..3 {
        counters.queued.fetch_add(1, Ordering::Relaxed);
        ingress.send(envelope(0)).await.expect("writer runs");
    }
    let (reply, flushed) = oneshot::channel();
    cmds.send(Cmd::Flush(reply)).await.expect("writer runs");
    flushed.await.expect("flush answered");
    let rows = spool.read("a", 0, 10).expect("read");
    assert_eq!(rows.len(), 3);
    assert_eq!(counters.queued.load(Ordering::Relaxed), 0);

    counters.queued.fetch_add(1, Ordering::Relaxed);
    ingress.send(envelope(0)).await.expect("writer runs");
    let (reply, closed) = oneshot::channel();
    cmds.send(Cmd::Close(reply)).await.expect("writer runs");
    closed
        .await
        .expect("close answered")
        .expect("closed cleanly");
    task.await.expect("no panic").expect("writer ends cleanly");
    assert_eq!(spool.read("a", 0, 10).expect("read").len(), 4);
}

#[test]
fn enabling_a_sink_reads_its_spool_from_the_start() {
    let Rig { mut writer, .. } = rig(&["a"], 16, INTERVAL);
    writer.next_seq = 7;
    writer.counters.sinks[0]
        .disabled
        .store(true, Ordering::Relaxed);
    {
        let mut state = writer.lanes[0].lock();
        state.disabled = true;
        state.spilled = true;
        state.spill_from = 5;
        state.spilled_through = Some(3);
    }
    assert!(writer.enable(0));
    {
        let state = writer.lanes[0].lock();
        assert!(!state.disabled);
        assert!(state.spilled);
        assert_eq!(state.spill_from, 0);
        assert_eq!(state.spilled_through, Some(6));
    }
    assert!(!writer.counters.sinks[0].disabled.load(Ordering::Relaxed));
    assert!(!writer.enable(0), "already enabled");
}
