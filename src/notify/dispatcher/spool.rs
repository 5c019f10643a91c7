//! The dispatcher's durable spool: a redb file holding every accepted event
//! until its sink acknowledged it, and the dead letters.
//!
//! Layout (all keys sort by sink, then by a spool-wide sequence number, so
//! each sink reads its events in the order they were accepted):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `events` | `(sink name, seq)` | `v1`, attempts `u32`, next attempt (ms since epoch) `u64`, spooled at (ms) `u64`, event JSON |
//! | `dead_letters` | `(sink name, seq)` | `v1`, attempts `u32`, spooled at `u64`, dead since `u64`, reason length `u32`, reason, event JSON |
//! | `meta` | `"next_seq"` | the next sequence number |
//!
//! Numbers are little-endian. Only the spool writer task writes; sink
//! workers read their own key range.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::notify::Event;

const EVENTS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("events");
const DEAD: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("dead_letters");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";
const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + 8 + 8;

/// How hard the spool writer pushes each group commit to the disk, and how
/// long an event may wait for its sink before it must be written at all.
///
/// Events are accepted by [`Dispatcher::emit`](super::Dispatcher::emit)
/// without waiting for the disk, and handed to their sink's lane at once.
/// An event its sink acknowledges before it is due for the spool is never
/// written; one still unacknowledged when it falls due is committed, and from
/// then on it survives a crash. Under every policy the events not yet
/// committed are lost if the process dies; the policies differ in how long
/// that window is and in what happens to committed events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Commit with `fsync` (redb's [`Durability::Immediate`]) as soon as
    /// events are waiting; what arrives during one commit goes into the next
    /// (group commit). Every event is due at once, so only an acknowledgement
    /// that beats the commit saves a write. A committed event survives a
    /// process crash and a power loss.
    Always,
    /// Commit with `fsync` once per interval (group commit: a burst costs one
    /// `fsync`). An event is due after one full interval, so it is committed
    /// between one and two intervals after it arrived unless its sink
    /// acknowledged it first: with a healthy sink most events never touch the
    /// disk. Up to two intervals of events are in memory only.
    Interval(Duration),
    /// Commit without `fsync` ([`Durability::None`]) as soon as events are
    /// waiting, with a durable checkpoint every second and at shutdown. redb
    /// keeps non-durable commits out of the file's commit slot, so a `kill -9`
    /// or a power loss loses what was committed since the last checkpoint
    /// (up to ~1 s).
    Never,
}

impl Default for FsyncPolicy {
    /// `Interval(5 ms)`.
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_millis(5))
    }
}

/// An error of the spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The redb file could not be opened, read or written.
    #[error("spool storage: {0}")]
    Storage(#[source] Box<redb::Error>),
    /// The blocking task doing the I/O panicked or was cancelled.
    #[error("spool task failed")]
    Task,
}

fn storage(error: impl Into<redb::Error>) -> SpoolError {
    SpoolError::Storage(Box::new(error.into()))
}

/// An event that was given up on, as kept in the dead-letter table.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The sink it was meant for.
    pub sink: String,
    /// Its sequence number in the spool.
    pub seq: u64,
    /// Failed deliveries.
    pub attempts: u32,
    /// Why it was given up on.
    pub reason: String,
    /// When it was accepted (or last redriven), ms since the Unix epoch.
    pub spooled_at_ms: u64,
    /// When it was moved to the dead letters, ms since the Unix epoch.
    pub dead_since_ms: u64,
    /// The event.
    pub event: Event,
}

/// Which dead letters an operation applies to: every condition given must
/// hold; none given selects them all.
///
/// Ages are counted from the moment an event was moved to the dead letters
/// (what an operator sees fail), not from when it was first accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only this sink's.
    pub sink: Option<String>,
    /// Only the one with this event id.
    pub id: Option<String>,
    /// Only those dead for at least this long.
    pub older_than: Option<Duration>,
    /// Only those dead for less than this long.
    pub newer_than: Option<Duration>,
}

impl DeadLetterFilter {
    /// Every dead letter.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only `sink`'s dead letters.
    pub fn sink(mut self, sink: impl Into<String>) -> Self {
        self.sink = Some(sink.into());
        self
    }

    /// Only the dead letter of event `id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Only those dead for at least `age`.
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// Only those dead for less than `age`.
    pub fn newer_than(mut self, age: Duration) -> Self {
        self.newer_than = Some(age);
        self
    }

    /// Whether no condition is set (the filter selects everything).
    pub fn is_everything(&self) -> bool {
        *self == Self::default()
    }

    fn matches(&self, letter: &DeadLetter, now_ms: u64) -> bool {
        let age = Duration::from_millis(now_ms.saturating_sub(letter.dead_since_ms));
        self.sink.as_ref().is_none_or(|s| *s == letter.sink)
            && self
                .id
                .as_ref()
                .is_none_or(|id| id == letter.event.id.as_str())
            && self.older_than.is_none_or(|min| age >= min)
            && self.newer_than.is_none_or(|max| age < max)
    }
}

/// An event read back from the spool.
#[derive(Debug)]
pub(crate) struct Stored {
    pub seq: u64,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub spooled_ms: u64,
    pub event: Event,
}

/// A record read back: the event, or its sequence number and why it could
/// not be decoded.
pub(crate) type Read = Result<Stored, (u64, String)>;

/// A change to the spool, applied in the writer's next group commit.
#[derive(Debug)]
pub(crate) enum Op {
    /// The sink acknowledged the event.
    Delete { sink: Arc<str>, seq: u64 },
    /// The delivery failed; try again at `next_attempt_ms`.
    Reschedule {
        sink: Arc<str>,
        seq: u64,
        attempts: u32,
        next_attempt_ms: u64,
    },
    /// Give up on the event: move it to the dead letters.
    Kill {
        sink: Arc<str>,
        seq: u64,
        attempts: u32,
        reason: String,
    },
}

impl Op {
    /// The sequence number of the event the report is about.
    pub(crate) fn seq(&self) -> u64 {
        match self {
            Op::Delete { seq, .. } | Op::Reschedule { seq, .. } | Op::Kill { seq, .. } => *seq,
        }
    }
}

/// A new event for the spool.
#[derive(Debug)]
pub(crate) struct Append {
    pub sink: usize,
    pub seq: u64,
    pub spooled_ms: u64,
    pub event: Event,
}

/// What a commit changed, for the counters.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Per sink index: bytes of event records added.
    pub bytes_added: u64,
    /// Bytes of event records removed (deleted or moved to dead letters).
    pub bytes_removed: u64,
    /// Events removed per sink name (deleted or killed).
    pub removed: HashMap<Arc<str>, u64>,
    /// Events moved to dead letters per sink name.
    pub killed: HashMap<Arc<str>, u64>,
}

/// What the spool held when it was opened.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub next_seq: u64,
    /// Events and the largest sequence number per sink.
    pub sinks: HashMap<String, (u64, u64)>,
    pub bytes: u64,
    pub dead: HashMap<String, u64>,
}

pub(crate) struct Spool {
    db: Database,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The record of a new event: no attempt yet.
fn record(spooled_ms: u64, event: &Event) -> Vec<u8> {
    let (attempts, next_attempt_ms) = (0u32, 0u64);
    let mut record = Vec::with_capacity(HEADER + 512);
    record.push(VERSION);
    record.extend_from_slice(&attempts.to_le_bytes());
    record.extend_from_slice(&next_attempt_ms.to_le_bytes());
    record.extend_from_slice(&spooled_ms.to_le_bytes());
    serde_json::to_writer(&mut record, event).expect("an Event always serializes");
    record
}

fn header(record: &[u8]) -> Option<(u32, u64, u64)> {
    if record.len() < HEADER || record[0] != VERSION {
        return None;
    }
    let attempts = u32::from_le_bytes(record[1..5].try_into().ok()?);
    let next = u64::from_le_bytes(record[5..13].try_into().ok()?);
    let spooled = u64::from_le_bytes(record[13..21].try_into().ok()?);
    Some((attempts, next, spooled))
}

fn decode(seq: u64, record: &[u8]) -> Result<Stored, String> {
    let (attempts, next_attempt_ms, spooled_ms) =
        header(record).ok_or_else(|| "unknown spool record version".to_owned())?;
    let event = serde_json::from_slice(&record[HEADER..])
        .map_err(|e| format!("undecodable spooled event: {e}"))?;
    Ok(Stored {
        seq,
        attempts,
        next_attempt_ms,
        spooled_ms,
        event,
    })
}

/// Page cache of the spool database.
const SPOOL_CACHE_BYTES: usize = 16 * 1024 * 1024;

impl Spool {
    /// Opens (or creates) the spool at `path`, or an in-memory one.
    pub(crate) fn open(path: Option<&Path>) -> Result<(Spool, Recovered), SpoolError> {
        // redb caches up to 1 GiB by default; a spool is written once, read
        // once and deleted, so a small cache costs nothing and keeps the
        // proxy's memory small (a soak run showed RSS climbing toward it).
        let mut builder = Database::builder();
        builder.set_cache_size(SPOOL_CACHE_BYTES);
        let db = match path {
            Some(path) => builder.create(path).map_err(storage)?,
            None => builder
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(storage)?,
        };
        let txn = db.begin_write().map_err(storage)?;
        let mut recovered = Recovered::default();
        {
            let events = txn.open_table(EVENTS).map_err(storage)?;
            let dead = txn.open_table(DEAD).map_err(storage)?;
            let meta = txn.open_table(META).map_err(storage)?;
            let mut max_seq = None::<u64>;
            for entry in events.iter().map_err(storage)? {
                let (key, value) = entry.map_err(storage)?;
                let (sink, seq) = key.value();
                let slot = recovered.sinks.entry(sink.to_owned()).or_default();
                slot.0 += 1;
                slot.1 = slot.1.max(seq);
                recovered.bytes += value.value().len() as u64;
                max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
            }
            for entry in dead.iter().map_err(storage)? {
                let (key, _) = entry.map_err(storage)?;
                let (sink, seq) = key.value();
                *recovered.dead.entry(sink.to_owned()).or_default() += 1;
                max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
            }
            let stored = meta.get(NEXT_SEQ).map_err(storage)?.map(|v| v.value());
            recovered.next_seq = stored.unwrap_or(0).max(max_seq.map_or(0, |m| m + 1));
        }
        txn.commit().map_err(storage)?;
        Ok((Spool { db }, recovered))
    }

    /// Applies `appends` and `ops` in one transaction.
    pub(crate) fn commit(
        &self,
        names: &[Arc<str>],
        appends: &[Append],
        ops: &[Op],
        next_seq: u64,
        durability: Durability,
    ) -> Result<Applied, SpoolError> {
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(durability).map_err(storage)?;
        let mut applied = Applied::default();
        {
            let mut events = txn.open_table(EVENTS).map_err(storage)?;
            for append in appends {
                let record = record(append.spooled_ms, &append.event);
                applied.bytes_added += record.len() as u64;
                events
                    .insert((&*names[append.sink], append.seq), record.as_slice())
                    .map_err(storage)?;
            }
            let mut dead = None;
            for op in ops {
                match op {
                    Op::Delete { sink, seq } => {
                        if let Some(old) = events.remove((&**sink, *seq)).map_err(storage)? {
                            applied.bytes_removed += old.value().len() as u64;
                            *applied.removed.entry(sink.clone()).or_default() += 1;
                        }
                    }
                    Op::Reschedule {
                        sink,
                        seq,
                        attempts,
                        next_attempt_ms,
                    } => {
                        let updated = match events.get((&**sink, *seq)).map_err(storage)? {
                            Some(old) => {
                                let mut record = old.value().to_vec();
                                if header(&record).is_some() {
                                    record[1..5].copy_from_slice(&attempts.to_le_bytes());
                                    record[5..13].copy_from_slice(&next_attempt_ms.to_le_bytes());
                                }
                                Some(record)
                            }
                            None => None,
                        };
                        if let Some(record) = updated {
                            events
                                .insert((&**sink, *seq), record.as_slice())
                                .map_err(storage)?;
                        }
                    }
                    Op::Kill {
                        sink,
                        seq,
                        attempts,
                        reason,
                    } => {
                        let Some(old) = events.remove((&**sink, *seq)).map_err(storage)? else {
                            continue;
                        };
                        let record = old.value();
                        applied.bytes_removed += record.len() as u64;
                        *applied.removed.entry(sink.clone()).or_default() += 1;
                        *applied.killed.entry(sink.clone()).or_default() += 1;
                        let (spooled, body) = match header(record) {
                            Some((_, _, spooled)) => (spooled, &record[HEADER..]),
                            None => (0, record),
                        };
                        let mut letter = Vec::with_capacity(record.len() + reason.len() + 32);
                        letter.push(VERSION);
                        letter.extend_from_slice(&attempts.to_le_bytes());
                        letter.extend_from_slice(&spooled.to_le_bytes());
                        letter.extend_from_slice(&now_ms().to_le_bytes());
                        letter.extend_from_slice(&(reason.len() as u32).to_le_bytes());
                        letter.extend_from_slice(reason.as_bytes());
                        letter.extend_from_slice(body);
                        drop(old);
                        if dead.is_none() {
                            dead = Some(txn.open_table(DEAD).map_err(storage)?);
                        }
                        dead.as_mut()
                            .expect("opened above")
                            .insert((&**sink, *seq), letter.as_slice())
                            .map_err(storage)?;
                    }
                }
            }
            if !appends.is_empty() {
                let mut meta = txn.open_table(META).map_err(storage)?;
                meta.insert(NEXT_SEQ, next_seq).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        Ok(applied)
    }

    /// A durable commit that changes nothing: makes earlier non-durable
    /// commits durable.
    pub(crate) fn checkpoint(&self) -> Result<(), SpoolError> {
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        txn.commit().map_err(storage)
    }

    /// Up to `limit` events of `sink` from sequence number `from` on, in
    /// order. A record that no longer decodes comes back as its sequence
    /// number and the reason.
    pub(crate) fn read(
        &self,
        sink: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Read>, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let mut out = Vec::new();
        for entry in events
            .range((sink, from)..=(sink, u64::MAX))
            .map_err(storage)?
            .take(limit)
        {
            let (key, value) = entry.map_err(storage)?;
            let seq = key.value().1;
            out.push(decode(seq, value.value()).map_err(|reason| (seq, reason)));
        }
        Ok(out)
    }

    /// Up to `limit` dead letters that `filter` selects, by sink and
    /// sequence number. Records that no longer decode are skipped.
    pub(crate) fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let dead = txn.open_table(DEAD).map_err(storage)?;
        let now = now_ms();
        let mut out = Vec::new();
        let range = match &filter.sink {
            Some(sink) => dead.range((sink.as_str(), 0)..=(sink.as_str(), u64::MAX)),
            None => dead.iter(),
        }
        .map_err(storage)?;
        for entry in range {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(storage)?;
            let (sink, seq) = key.value();
            let Some(letter) = decode_letter(sink, seq, value.value()) else {
                continue;
            };
            if filter.matches(&letter, now) {
                out.push(letter);
            }
        }
        Ok(out)
    }

    /// Moves up to `limit` of the dead letters `filter` selects back to the
    /// events table, numbered from `next_seq` on, with no attempt made and
    /// accepted now, in one durable transaction. Returns, per moved event,
    /// its sink, new sequence number and record size, and the next free
    /// sequence number.
    pub(crate) fn redrive(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
        mut next_seq: u64,
    ) -> Result<(Vec<Redriven>, u64), SpoolError> {
        let now = now_ms();
        let txn = self.db.begin_write().map_err(storage)?;
        let mut moved = Vec::new();
        {
            let mut dead = txn.open_table(DEAD).map_err(storage)?;
            let mut events = txn.open_table(EVENTS).map_err(storage)?;
            let mut meta = txn.open_table(META).map_err(storage)?;
            let selected = select(&dead, filter, now, limit)?;
            for (sink, seq) in selected {
                let Some(old) = dead.remove((sink.as_str(), seq)).map_err(storage)? else {
                    continue;
                };
                let letter = decode_letter(&sink, seq, old.value());
                drop(old);
                let Some(letter) = letter else { continue };
                let record = record(now, &letter.event);
                events
                    .insert((sink.as_str(), next_seq), record.as_slice())
                    .map_err(storage)?;
                moved.push((sink, next_seq, record.len() as u64));
                next_seq += 1;
            }
            meta.insert(NEXT_SEQ, next_seq).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok((moved, next_seq))
    }

    /// Deletes the dead letters `filter` selects; returns how many per sink.
    pub(crate) fn purge(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<HashMap<String, u64>, SpoolError> {
        let now = now_ms();
        let txn = self.db.begin_write().map_err(storage)?;
        let mut purged = HashMap::new();
        {
            let mut dead = txn.open_table(DEAD).map_err(storage)?;
            for (sink, seq) in select(&dead, filter, now, usize::MAX)? {
                if dead
                    .remove((sink.as_str(), seq))
                    .map_err(storage)?
                    .is_some()
                {
                    *purged.entry(sink).or_default() += 1;
                }
            }
        }
        txn.commit().map_err(storage)?;
        Ok(purged)
    }

    /// Per sink: when its oldest event still waiting in the spool was
    /// accepted, ms since the epoch. Sequence numbers grow with acceptance,
    /// so that is each sink's first record.
    pub(crate) fn oldest(&self, sinks: &[Arc<str>]) -> Result<Vec<Option<u64>>, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let mut out = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let first = events
                .range((&**sink, 0)..=(&**sink, u64::MAX))
                .map_err(storage)?
                .next()
                .transpose()
                .map_err(storage)?;
            out.push(first.and_then(|(_, value)| header(value.value()).map(|h| h.2)));
        }
        Ok(out)
    }
}

/// A dead letter moved back: its sink, new sequence number and record size.
pub(crate) type Redriven = (String, u64, u64);

/// The keys of up to `limit` of the dead letters `filter` selects.
fn select(
    dead: &redb::Table<'_, (&'static str, u64), &'static [u8]>,
    filter: &DeadLetterFilter,
    now: u64,
    limit: usize,
) -> Result<Vec<(String, u64)>, SpoolError> {
    let range = match &filter.sink {
        Some(sink) => dead.range((sink.as_str(), 0)..=(sink.as_str(), u64::MAX)),
        None => dead.iter(),
    }
    .map_err(storage)?;
    let mut keys = Vec::new();
    for entry in range {
        if keys.len() >= limit {
            break;
        }
        let (key, value) = entry.map_err(storage)?;
        let (sink, seq) = key.value();
        if let Some(letter) = decode_letter(sink, seq, value.value()) {
            if filter.matches(&letter, now) {
                keys.push((sink.to_owned(), seq));
            }
        }
    }
    Ok(keys)
}

/// Reads a dead-letter record: `v1`, attempts, spooled at, dead since,
/// reason length, reason, event JSON.
fn decode_letter(sink: &str, seq: u64, record: &[u8]) -> Option<DeadLetter> {
    if record.len() < 25 || record[0] != VERSION {
        return None;
    }
    let attempts = u32::from_le_bytes(record[1..5].try_into().ok()?);
    let spooled_at_ms = u64::from_le_bytes(record[5..13].try_into().ok()?);
    let dead_since_ms = u64::from_le_bytes(record[13..21].try_into().ok()?);
    let reason_len = u32::from_le_bytes(record[21..25].try_into().ok()?) as usize;
    let reason = record.get(25..25 + reason_len)?;
    let event = serde_json::from_slice(&record[25 + reason_len..]).ok()?;
    Some(DeadLetter {
        sink: sink.to_owned(),
        seq,
        attempts,
        reason: String::from_utf8_lossy(reason).into_owned(),
        spooled_at_ms,
        dead_since_ms,
        event,
    })
}
