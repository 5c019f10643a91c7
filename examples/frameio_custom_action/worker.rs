//! The worker: takes due jobs from the job table one at a time, copies their
//! objects stream to stream, records each finished object, and retries a
//! failed job with backoff.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use s3tap::body::BoxError;
use s3tap::notify::RetryPolicy;
use serde::Serialize;
use tokio::sync::Notify;

use crate::jobs::{now_ms, Direction, Job, JobStore, Planned, State, Upload};
use crate::transfer::{Body, ObjectStore, TransferError};

/// The object the worker is copying right now, for the status answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Current {
    /// The job.
    pub job: String,
    /// The source key.
    pub key: String,
    /// Bytes sent so far.
    pub bytes: u64,
    /// The object's size.
    pub size: u64,
}

/// What the worker shares with the HTTP side.
#[derive(Default)]
pub struct Shared {
    /// Rung when a job is submitted.
    pub wake: Notify,
    /// The copy in progress, if any.
    pub current: Mutex<Option<Current>>,
}

/// The worker's settings.
pub struct Worker {
    /// The job table.
    pub store: JobStore,
    /// Frame.io's side.
    pub frameio: Arc<dyn ObjectStore>,
    /// B2.
    pub b2: Arc<dyn ObjectStore>,
    /// When to retry a failed job and when to give up.
    pub retry: RetryPolicy,
    /// Bandwidth cap for a copy (bytes per second), if any.
    pub max_bytes_per_sec: Option<u64>,
    /// Objects bigger than this are copied as multipart uploads of parts
    /// this big.
    pub part_size: u64,
    /// Shared with the HTTP side.
    pub shared: Arc<Shared>,
}

impl Worker {
    /// Runs forever: re-queues what the last process left running, then
    /// works through the due jobs, sleeping until the next is due or a new
    /// one is submitted.
    pub async fn run(self) {
        match self.store.requeue_interrupted().await {
            Ok(ids) => {
                for id in ids {
                    println!("worker: job {id} was interrupted; resuming it");
                }
            }
            Err(error) => eprintln!("worker: {error}"),
        }
        loop {
            let (due, soonest) = match self.store.next_due().await {
                Ok(found) => found,
                Err(error) => {
                    eprintln!("worker: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            match due {
                Some(job) => {
                    if let Err(error) = self.attempt(job).await {
                        eprintln!("worker: {error}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                None => {
                    let wait = soonest.map_or(Duration::from_secs(60), |at| {
                        Duration::from_millis(at.saturating_sub(now_ms()))
                    });
                    tokio::select! {
                        _ = self.shared.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// One attempt at `job`; its outcome is written to the table.
    async fn attempt(&self, mut job: Job) -> Result<(), crate::jobs::StoreError> {
        job.state = State::Running;
        job.attempts += 1;
        let mut job = self.store.save(job).await?;
        println!(
            "worker: job {} attempt {} ({} of {} copied)",
            job.id,
            job.attempts,
            job.copied,
            job.objects.as_ref().map_or(0, Vec::len)
        );
        let outcome = self.copy_all(&mut job).await;
        *self.shared.current.lock().unwrap() = None;
        match outcome {
            Ok(()) => {
                job.state = State::Done;
                job.last_error = None;
                println!(
                    "worker: job {} done: {} objects, {} bytes",
                    job.id, job.copied, job.copied_bytes
                );
            }
            Err(error) => {
                job.failures += 1;
                job.last_error = Some(error.to_string());
                let age = Duration::from_millis(now_ms().saturating_sub(job.created_ms));
                let give_up = matches!(error, TransferError::Permanent(_))
                    || self.retry.gives_up(job.failures, age);
                if give_up {
                    job.state = State::Failed;
                    println!("worker: job {} failed: {error}", job.id);
                } else {
                    let delay = self.retry.delay(job.failures, None);
                    job.state = State::Queued;
                    job.next_attempt_ms = now_ms() + delay.as_millis() as u64;
                    println!(
                        "worker: job {} will be retried in {} ms: {error}",
                        job.id,
                        delay.as_millis()
                    );
                }
            }
        }
        self.store.save(job).await?;
        Ok(())
    }

    fn ends(&self, direction: Direction) -> (&dyn ObjectStore, &dyn ObjectStore) {
        match direction {
            Direction::Import => (&*self.b2, &*self.frameio),
            Direction::Export => (&*self.frameio, &*self.b2),
        }
    }

    /// Plans the job at its first attempt, then copies every object not yet
    /// copied, saving the job after each object (and each part).
    async fn copy_all(&self, job: &mut Job) -> Result<(), TransferError> {
        let (source, destination) = self.ends(job.direction);
        if job.objects.is_none() {
            let planned = plan(source, job).await?;
            println!(
                "worker: job {} copies {} objects from {} to {}",
                job.id,
                planned.len(),
                source.name(),
                destination.name()
            );
            job.objects = Some(planned);
            self.save(job).await?;
        }
        let count = job.objects.as_ref().map_or(0, Vec::len);
        while job.copied < count {
            let object = job.objects.as_ref().expect("planned")[job.copied].clone();
            if object.size > self.part_size {
                self.copy_in_parts(job, source, destination).await?;
            } else {
                self.copy_whole(job, source, destination, &object).await?;
                job.sent_bytes += object.size;
            }
            job.copied += 1;
            job.copied_bytes += object.size;
            self.save(job).await?;
        }
        Ok(())
    }

    async fn save(&self, job: &mut Job) -> Result<(), TransferError> {
        *job = self.store.save(job.clone()).await.map_err(store_error)?;
        Ok(())
    }

    /// Streams one object: the GET's body is the PUT's body, frame by frame,
    /// so memory holds a few frames whatever the object's size.
    async fn copy_whole(
        &self,
        job: &Job,
        source: &dyn ObjectStore,
        destination: &dyn ObjectStore,
        object: &Planned,
    ) -> Result<(), TransferError> {
        let download = source.get(&object.source, None).await?;
        self.show(job, object, 0, download.size);
        let body = metered(
            download.body,
            download.size,
            0,
            self.max_bytes_per_sec,
            self.shared.clone(),
        );
        destination
            .put(&object.destination, download.size, body)
            .await
    }

    /// Copies the object `job.copied` as a multipart upload, each part a
    /// ranged GET streamed into an UploadPart. The upload id and each
    /// part's ETag are saved as they come, so an attempt after a crash goes
    /// on from the first part not uploaded.
    async fn copy_in_parts(
        &self,
        job: &mut Job,
        source: &dyn ObjectStore,
        destination: &dyn ObjectStore,
    ) -> Result<(), TransferError> {
        let index = job.copied;
        let object = job.objects.as_ref().expect("planned")[index].clone();
        let mut upload = match object.upload.clone() {
            Some(upload) => {
                println!(
                    "worker: job {} resumes {} at part {}",
                    job.id,
                    object.source,
                    upload.etags.len() + 1
                );
                upload
            }
            None => {
                let id = destination.create_upload(&object.destination).await?;
                // S3 takes at most 10,000 parts: bigger parts for huge objects.
                let part_size = self.part_size.max(object.size.div_ceil(10_000));
                let upload = Upload {
                    id,
                    part_size,
                    etags: Vec::new(),
                };
                self.set_upload(job, index, Some(upload.clone())).await?;
                upload
            }
        };
        let parts = object.size.div_ceil(upload.part_size) as usize;
        while upload.etags.len() < parts {
            let number = upload.etags.len() + 1;
            let start = (number as u64 - 1) * upload.part_size;
            let end = (start + upload.part_size).min(object.size);
            self.show(job, &object, start, object.size);
            let etag = match self
                .copy_part(&object, &upload, number, start..end, source, destination)
                .await
            {
                Ok(etag) => etag,
                Err(TransferError::UploadGone(message)) => {
                    // The next attempt starts this object over.
                    self.set_upload(job, index, None).await?;
                    return Err(TransferError::Transient(message));
                }
                Err(error) => return Err(error),
            };
            upload.etags.push(etag);
            job.sent_bytes += end - start;
            self.set_upload(job, index, Some(upload.clone())).await?;
        }
        match destination
            .complete_upload(&object.destination, &upload.id, &upload.etags)
            .await
        {
            Err(TransferError::UploadGone(message)) => {
                self.set_upload(job, index, None).await?;
                Err(TransferError::Transient(message))
            }
            other => other,
        }
    }

    async fn copy_part(
        &self,
        object: &Planned,
        upload: &Upload,
        number: usize,
        range: Range<u64>,
        source: &dyn ObjectStore,
        destination: &dyn ObjectStore,
    ) -> Result<String, TransferError> {
        let length = range.end - range.start;
        let offset = range.start;
        let download = source.get(&object.source, Some(range)).await?;
        if download.size != length {
            return Err(TransferError::Permanent(format!(
                "{}: asked for {length} bytes at {offset}, got {}",
                object.source, download.size
            )));
        }
        let body = metered(
            download.body,
            length,
            offset,
            self.max_bytes_per_sec,
            self.shared.clone(),
        );
        destination
            .put_part(&object.destination, &upload.id, number, length, body)
            .await
    }

    async fn set_upload(
        &self,
        job: &mut Job,
        index: usize,
        upload: Option<Upload>,
    ) -> Result<(), TransferError> {
        if let Some(objects) = job.objects.as_mut() {
            objects[index].upload = upload;
        }
        self.save(job).await
    }

    /// Publishes the copy in progress for the status answer.
    fn show(&self, job: &Job, object: &Planned, bytes: u64, size: u64) {
        *self.shared.current.lock().unwrap() = Some(Current {
            job: job.id.clone(),
            key: object.source.clone(),
            bytes,
            size,
        });
    }
}

fn store_error(error: crate::jobs::StoreError) -> TransferError {
    TransferError::Transient(error.to_string())
}

/// Lists what the job copies and where each object goes.
async fn plan(source: &dyn ObjectStore, job: &Job) -> Result<Vec<Planned>, TransferError> {
    let listing = source.list(&job.source_prefix, None, usize::MAX).await?;
    let mut planned = Vec::new();
    for entry in listing.objects {
        // A single object is listed by its key as a prefix: keep only it.
        if job.single && entry.key != job.source_prefix {
            continue;
        }
        let relative = entry.key.strip_prefix(&job.strip).unwrap_or(&entry.key);
        planned.push(Planned {
            destination: format!("{}{relative}", job.destination_prefix),
            source: entry.key,
            size: entry.size,
            upload: None,
        });
    }
    if planned.is_empty() {
        return Err(TransferError::Permanent(format!(
            "nothing to copy: no object {} {}",
            if job.single { "named" } else { "under" },
            job.source_prefix
        )));
    }
    Ok(planned)
}

/// Passes `body` on, counting bytes (from `offset` in the object) into the
/// shared progress, holding to
/// the bandwidth cap, and failing when it ends short of `size` (so the PUT
/// is aborted rather than storing a truncated object).
fn metered(
    body: Body,
    size: u64,
    offset: u64,
    max_bytes_per_sec: Option<u64>,
    shared: Arc<Shared>,
) -> Body {
    struct Meter {
        body: Body,
        seen: u64,
        started: Instant,
        finished: bool,
    }
    let meter = Meter {
        body,
        seen: 0,
        started: Instant::now(),
        finished: false,
    };
    let stream = futures_util::stream::unfold(meter, move |mut meter| {
        let shared = shared.clone();
        async move {
            if meter.finished {
                return None;
            }
            loop {
                match meter.body.frame().await {
                    None if meter.seen == size => return None,
                    None => {
                        meter.finished = true;
                        let error: BoxError =
                            format!("the source ended after {} of {size} bytes", meter.seen).into();
                        return Some((Err(error), meter));
                    }
                    Some(Err(error)) => {
                        meter.finished = true;
                        return Some((Err(error), meter));
                    }
                    Some(Ok(frame)) => {
                        // Trailers of the GET are not the PUT's.
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        meter.seen += data.len() as u64;
                        if let Some(current) = shared.current.lock().unwrap().as_mut() {
                            current.bytes = offset + meter.seen;
                        }
                        if let Some(rate) = max_bytes_per_sec.filter(|r| *r > 0) {
                            let due = Duration::from_secs_f64(meter.seen as f64 / rate as f64);
                            let elapsed = meter.started.elapsed();
                            if due > elapsed {
                                tokio::time::sleep(due - elapsed).await;
                            }
                        }
                        return Some((Ok(Frame::data(data)), meter));
                    }
                }
            }
        }
    });
    UnsyncBoxBody::new(StreamBody::new(stream))
}
