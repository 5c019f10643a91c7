//! [`JsonLinesSink`]: one JSON event per line to stdout or a file, the
//! embedded default when no other sink is configured.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{BoxFuture, Sink, SinkBuildError, SinkError};
use crate::notify::Event;

enum Target {
    Stdout,
    File(File),
}

/// Writes each event as one line of JSON in s3tap's event schema
/// ([`native`](crate::notify::format::native), `s3tap.event/1`) to stdout
/// or appends it to a file.
///
/// Each batch is written with one `write` and flushed before it is
/// acknowledged; with [`fsync(true)`](JsonLinesSinkBuilder::fsync) a file is also synced to
/// the disk, so an acknowledged event survives a power loss. The writing
/// happens on tokio's blocking pool, never on the runtime's threads.
///
/// ```
/// use std::sync::Arc;
/// use s3tap::sink::{JsonLinesSink, Sink};
///
/// let sink: Arc<dyn Sink> = Arc::new(JsonLinesSink::builder().max_batch(256).build()?);
/// assert_eq!(sink.name(), "jsonl:stdout");
/// # Ok::<(), s3tap::sink::SinkBuildError>(())
/// ```
pub struct JsonLinesSink {
    name: String,
    target: Arc<Mutex<Target>>,
    fsync: bool,
    max_batch: usize,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("name", &self.name)
            .field("fsync", &self.fsync)
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl JsonLinesSink {
    /// Starts building a sink that writes to standard output (or to a
    /// [`file`](JsonLinesSinkBuilder::file)).
    ///
    /// Defaults: name `jsonl:stdout` or `jsonl:<path>`, no fsync, batches
    /// of up to 1000 events.
    pub fn builder() -> JsonLinesSinkBuilder {
        JsonLinesSinkBuilder {
            path: None,
            name: None,
            fsync: false,
            max_batch: 1000,
        }
    }

    /// Writes to the process's standard output: `builder().build()`.
    pub fn stdout() -> Self {
        JsonLinesSink::builder()
            .build()
            .expect("standard output needs no opening")
    }

    /// Appends to the file at `path`, creating it if needed:
    /// `builder().file(path).build()`, with the I/O error as it is.
    pub fn file(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLinesSink {
            name: format!("jsonl:{}", path.display()),
            target: Arc::new(Mutex::new(Target::File(file))),
            fsync: false,
            max_batch: 1000,
        })
    }
}

/// Configures a [`JsonLinesSink`]; [`build`](Self::build) opens the file.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until built"]
pub struct JsonLinesSinkBuilder {
    path: Option<PathBuf>,
    name: Option<String>,
    fsync: bool,
    max_batch: usize,
}

impl JsonLinesSinkBuilder {
    /// Appends to the file at `path` (created if needed) instead of
    /// standard output.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The sink's name in logs and metrics (default `jsonl:stdout` or
    /// `jsonl:<path>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Syncs a file to the disk after each batch (default off: flushed to
    /// the OS only). No effect on stdout.
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// The largest batch written at once (default 1000).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// Opens the file, if any, and builds the sink.
    pub fn build(self) -> Result<JsonLinesSink, SinkBuildError> {
        let (default_name, target) = match &self.path {
            None => ("jsonl:stdout".to_owned(), Target::Stdout),
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| SinkBuildError::Open(format!("{}: {e}", path.display())))?;
                (format!("jsonl:{}", path.display()), Target::File(file))
            }
        };
        Ok(JsonLinesSink {
            name: self.name.unwrap_or(default_name),
            target: Arc::new(Mutex::new(target)),
            fsync: self.fsync,
            max_batch: self.max_batch,
        })
    }
}

impl Sink for JsonLinesSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn deliver<'a>(&'a self, batch: &'a [Event]) -> BoxFuture<'a, Result<(), SinkError>> {
        let lines = crate::notify::format::native::encode_lines(batch);
        let target = self.target.clone();
        let fsync = self.fsync;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut target = target.lock().unwrap_or_else(|e| e.into_inner());
                match &mut *target {
                    Target::Stdout => {
                        let mut out = io::stdout().lock();
                        out.write_all(&lines)?;
                        out.flush()
                    }
                    Target::File(file) => {
                        file.write_all(&lines)?;
                        file.flush()?;
                        if fsync {
                            file.sync_data()?;
                        }
                        Ok(())
                    }
                }
            })
            .await
            .map_err(|e| SinkError::transient(format!("writer task failed: {e}")))?
            .map_err(|e| SinkError::transient(format!("write failed: {e}")))
        })
    }
}
