//! The `spirers.sync.v1` change stream: a notice from the server triggers a sync at once.

use super::*;

impl Manager {
    pub(super) async fn run_watch(&self) -> Result<(), ManagerError> {
        if !self.cfg.use_push {
            return std::future::pending().await;
        }
        let mut backoff =
            Backoff::new(Duration::from_secs(1)).with_max_interval(Duration::from_secs(30));
        loop {
            match self.client.watch_changes().await {
                Err(e) if e.is_unimplemented() => {
                    tracing::info!(
                        subsystem_name = "manager",
                        "Server does not stream change notifications; polling every sync_interval"
                    );
                    return std::future::pending().await;
                }
                Err(e) => {
                    tracing::debug!(subsystem_name = "manager", error = %e, "Change notification stream unavailable");
                }
                Ok(mut stream) => {
                    tracing::info!(
                        subsystem_name = "manager",
                        "Receiving change notifications from the server"
                    );
                    self.push_active.store(true, Ordering::Relaxed);
                    backoff.reset();
                    loop {
                        match stream.message().await {
                            Ok(Some(_)) => self.sync_now.notify_one(),
                            Ok(None) => break,
                            Err(status) => {
                                tracing::debug!(subsystem_name = "manager", error = %status, "Change notification stream ended");
                                break;
                            }
                        }
                    }
                    self.push_active.store(false, Ordering::Relaxed);
                    // Catch up on whatever happened while the stream was down.
                    self.sync_now.notify_one();
                }
            }
            let wait = backoff
                .next(rand::random())
                .unwrap_or(Duration::from_secs(30));
            tokio::time::sleep(wait).await;
        }
    }
}
