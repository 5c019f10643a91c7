//! The job table: every submitted job and its progress in a redb file, so a
//! job survives a crash or restart and its status can be read at any time.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// Job id -> the job as JSON.
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// Frame.io interaction id -> job id: a form submitted twice (a retried
/// call, a double click) is one job.
const INTERACTIONS: TableDefinition<&str, &str> = TableDefinition::new("interactions");

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From B2 into Frame.io.
    Import,
    /// From Frame.io to B2.
    Export,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for the worker (new, or retrying after `next_attempt_ms`).
    Queued,
    /// The worker is copying. Found at start-up, it was interrupted.
    Running,
    /// Every object copied.
    Done,
    /// Given up: a permanent error, or retries exhausted.
    Failed,
}

/// One object of a job: where it comes from and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    /// The key in the source store.
    pub source: String,
    /// The key in the destination store.
    pub destination: String,
    /// Its size when the job was planned.
    pub size: u64,
    /// The multipart upload of an object bigger than one part, once started.
    #[serde(default)]
    pub upload: Option<Upload>,
}

/// A multipart upload in progress: enough to resume it after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The destination's upload id.
    pub id: String,
    /// Bytes per part (the last may be shorter).
    pub part_size: u64,
    /// The ETags of the parts uploaded so far, in order.
    pub etags: Vec<String>,
}

/// A submitted job: what to copy, and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// Its id (a UUID).
    pub id: String,
    /// The Frame.io interaction that submitted it.
    pub interaction_id: String,
    /// The Frame.io asset or folder the action ran on.
    pub resource_id: String,
    /// Import or export.
    pub direction: Direction,
    /// What to copy from the source: keys under this prefix, or this one
    /// key when `single` is set.
    pub source_prefix: String,
    /// `source_prefix` names one object, not a folder.
    pub single: bool,
    /// The part of each source key replaced by `destination_prefix`.
    pub strip: String,
    /// Where the objects go in the destination store.
    pub destination_prefix: String,
    /// Where the job stands.
    pub state: State,
    /// Attempts started (the first included).
    pub attempts: u32,
    /// Failed attempts that count toward giving up.
    pub failures: u32,
    /// Attempts cut short by a stop or a crash of the process.
    pub interrupted: u32,
    /// Not before this time (ms since the epoch) for the next attempt.
    pub next_attempt_ms: u64,
    /// When it was submitted (ms since the epoch).
    pub created_ms: u64,
    /// When it last changed (ms since the epoch).
    pub updated_ms: u64,
    /// The objects to copy, listed once at the first attempt.
    pub objects: Option<Vec<Planned>>,
    /// How many of `objects` are copied (they are copied in order).
    pub copied: usize,
    /// Bytes of the objects copied.
    pub copied_bytes: u64,
    /// Bytes of every object and part whose upload completed, over all
    /// attempts: more than `copied_bytes` when an attempt had to send
    /// something again.
    #[serde(default)]
    pub sent_bytes: u64,
    /// The last error, for the status answer.
    pub last_error: Option<String>,
}

impl Job {
    /// A new queued job.
    pub fn new(
        interaction_id: &str,
        resource_id: &str,
        direction: Direction,
        source_prefix: String,
        single: bool,
        strip: String,
        destination_prefix: String,
    ) -> Job {
        let now = now_ms();
        Job {
            id: uuid::Uuid::now_v7().to_string(),
            interaction_id: interaction_id.to_owned(),
            resource_id: resource_id.to_owned(),
            direction,
            source_prefix,
            single,
            strip,
            destination_prefix,
            state: State::Queued,
            attempts: 0,
            failures: 0,
            interrupted: 0,
            next_attempt_ms: now,
            created_ms: now,
            updated_ms: now,
            objects: None,
            copied: 0,
            copied_bytes: 0,
            sent_bytes: 0,
            last_error: None,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A failure of the job table itself (disk, corrupt file).
#[derive(Debug, thiserror::Error)]
#[error("job table: {0}")]
pub struct StoreError(String);

fn storage(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

/// The job table. Cheap to clone; every write is one committed (fsynced)
/// redb transaction, so what a call returned survives a crash.
#[derive(Clone)]
pub struct JobStore {
    db: Arc<Database>,
}

impl JobStore {
    /// Opens (or creates) the table at `path`.
    pub fn open(path: &Path) -> Result<JobStore, StoreError> {
        let db = Database::create(path).map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(JOBS).map_err(storage)?;
        txn.open_table(INTERACTIONS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(JobStore { db: Arc::new(db) })
    }

    /// Runs `f` on a blocking thread: redb's commits wait for the disk.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(storage)?
    }

    /// Stores `job` unless its interaction already submitted one; returns
    /// the job that stands for the interaction either way.
    pub async fn submit(&self, job: Job) -> Result<Job, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let job = {
                let mut interactions = txn.open_table(INTERACTIONS).map_err(storage)?;
                let mut jobs = txn.open_table(JOBS).map_err(storage)?;
                let existing = interactions
                    .get(job.interaction_id.as_str())
                    .map_err(storage)?
                    .map(|id| id.value().to_owned());
                match existing.and_then(|id| read(&jobs, &id).transpose()) {
                    Some(found) => found?,
                    None => {
                        interactions
                            .insert(job.interaction_id.as_str(), job.id.as_str())
                            .map_err(storage)?;
                        write(&mut jobs, &job)?;
                        job
                    }
                }
            };
            txn.commit().map_err(storage)?;
            Ok(job)
        })
        .await
    }

    /// One job by id.
    pub async fn get(&self, id: String) -> Result<Option<Job>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let jobs = txn.open_table(JOBS).map_err(storage)?;
            read(&jobs, &id)
        })
        .await
    }

    /// Every job, oldest first (ids are UUIDv7: they sort by time).
    pub async fn all(&self) -> Result<Vec<Job>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let jobs = txn.open_table(JOBS).map_err(storage)?;
            let mut out = Vec::new();
            for entry in jobs.iter().map_err(storage)? {
                let (_, value) = entry.map_err(storage)?;
                out.push(decode(value.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// Writes `job` as it is now.
    pub async fn save(&self, mut job: Job) -> Result<Job, StoreError> {
        job.updated_ms = now_ms();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut jobs = txn.open_table(JOBS).map_err(storage)?;
                write(&mut jobs, &job)?;
            }
            txn.commit().map_err(storage)?;
            Ok(job)
        })
        .await
    }

    /// At start-up: jobs left `running` were cut short by the stop or crash
    /// of the previous process; they are queued again at once.
    pub async fn requeue_interrupted(&self) -> Result<Vec<String>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_write().map_err(storage)?;
            let mut requeued = Vec::new();
            {
                let mut jobs = txn.open_table(JOBS).map_err(storage)?;
                let mut running = Vec::new();
                for entry in jobs.iter().map_err(storage)? {
                    let (_, value) = entry.map_err(storage)?;
                    let job = decode(value.value())?;
                    if job.state == State::Running {
                        running.push(job);
                    }
                }
                for mut job in running {
                    job.state = State::Queued;
                    job.interrupted += 1;
                    job.next_attempt_ms = now_ms();
                    job.updated_ms = now_ms();
                    write(&mut jobs, &job)?;
                    requeued.push(job.id);
                }
            }
            txn.commit().map_err(storage)?;
            Ok(requeued)
        })
        .await
    }

    /// The queued job due first, and the time the next one falls due
    /// when none is due yet.
    pub async fn next_due(&self) -> Result<(Option<Job>, Option<u64>), StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let jobs = txn.open_table(JOBS).map_err(storage)?;
            let now = now_ms();
            let mut soonest: Option<u64> = None;
            for entry in jobs.iter().map_err(storage)? {
                let (_, value) = entry.map_err(storage)?;
                let job = decode(value.value())?;
                if job.state != State::Queued {
                    continue;
                }
                if job.next_attempt_ms <= now {
                    return Ok((Some(job), None));
                }
                soonest = Some(soonest.map_or(job.next_attempt_ms, |s| s.min(job.next_attempt_ms)));
            }
            Ok((None, soonest))
        })
        .await
    }
}

fn read(
    jobs: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<Job>, StoreError> {
    jobs.get(id)
        .map_err(storage)?
        .map(|value| decode(value.value()))
        .transpose()
}

fn write(
    jobs: &mut redb::Table<'_, &'static str, &'static [u8]>,
    job: &Job,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(job).map_err(storage)?;
    jobs.insert(job.id.as_str(), bytes.as_slice())
        .map_err(storage)?;
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<Job, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError(format!("undecodable job: {e}")))
}
