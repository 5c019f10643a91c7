//! Shutdown: the supervisor task that drains the workers and closes the
//! writer and the spool, and the [`DispatcherTask`] that waits for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::DispatcherError;
use super::messages::Cmd;
use super::spool::Spool;
use super::stats::{Counters, DispatcherStats};

/// The task of a running dispatcher; completes when it has shut down.
#[derive(Debug)]
pub struct DispatcherTask(pub(super) JoinHandle<Result<(), DispatcherError>>);

impl Future for DispatcherTask {
    type Output = Result<(), DispatcherError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined
                .map_err(|e| DispatcherError::Task(e.to_string()))
                .and_then(std::convert::identity)
        })
    }
}

pub(super) struct Supervisor {
    pub(super) writer: JoinHandle<Result<(), DispatcherError>>,
    pub(super) workers: Vec<JoinHandle<()>>,
    pub(super) shutdown: watch::Sender<Option<Instant>>,
    pub(super) cmds: mpsc::Sender<Cmd>,
    pub(super) requests: mpsc::Receiver<Instant>,
    pub(super) done: watch::Sender<Option<DispatcherStats>>,
    pub(super) counters: Arc<Counters>,
    pub(super) names: Vec<Arc<str>>,
    pub(super) spool: Arc<Mutex<Option<Arc<Spool>>>>,
}

impl Supervisor {
    pub(super) async fn run(mut self) -> Result<(), DispatcherError> {
        // No request and no handle left: flush to the spool, deliver nothing.
        let deadline = self.requests.recv().await.unwrap_or_else(Instant::now);
        let (reply, flushed) = oneshot::channel();
        if self.cmds.send(Cmd::Flush(reply)).await.is_ok() {
            let _ = flushed.await;
        }
        let _ = self.shutdown.send(Some(deadline));
        let mut result = Ok(());
        for worker in self.workers.drain(..) {
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "a sink worker failed");
                result = Err(DispatcherError::Task(e.to_string()));
            }
        }
        let (reply, closed) = oneshot::channel();
        if self.cmds.send(Cmd::Close(reply)).await.is_ok() {
            if let Ok(Err(e)) = closed.await {
                result = Err(e.into());
            }
        }
        drop(self.cmds);
        match (&mut self.writer).await {
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(DispatcherError::Task(e.to_string())),
            Ok(Ok(())) => {}
        }
        // The writer and the workers are done: this was the last handle
        // but the producers' (and any dead_letters() in flight), so the file
        // closes and a new dispatcher may open it.
        self.spool.lock().unwrap_or_else(|e| e.into_inner()).take();
        let stats = self.counters.snapshot(&self.names);
        let _ = self.done.send(Some(stats));
        result
    }
}
