//! systemd's readiness protocol for `Type=notify` units: `READY=1` the first time the
//! readiness task says ready (store writable, every task running, listeners bound), a
//! `STATUS=` line whenever the verdict changes, and `STOPPING=1` when shutdown begins.
//! Without `NOTIFY_SOCKET` (not started by systemd) nothing is sent.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::readiness::Verdict;

/// systemd shows the status line in `systemctl status`; keep it to one short line.
const MAX_STATUS_CHARS: usize = 200;

/// Follows the readiness verdict and tells the service manager; returns once it has sent
/// `STOPPING=1` (at shutdown), so the caller can wait for it before exiting.
pub async fn notify_readiness(mut verdict: watch::Receiver<Verdict>, shutdown: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut told_ready = false;
    loop {
        let current = verdict.borrow_and_update().clone();
        let ready = current.ready && !told_ready;
        told_ready |= ready;
        send(ready.then_some(Notice::Ready), status_line(&current)).await;
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = verdict.changed() => if changed.is_err() { break },
        }
    }
    send(Some(Notice::Stopping), "shutting down".into()).await;
}

/// One line, no control characters (a newline would start another assignment), bounded.
fn status_line(verdict: &Verdict) -> String {
    let text = if verdict.ready {
        "ready".to_string()
    } else {
        format!("not ready: {}", verdict.failed.join("; "))
    };
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_STATUS_CHARS)
        .collect()
}

#[derive(Clone, Copy)]
enum Notice {
    Ready,
    Stopping,
}

async fn send(notice: Option<Notice>, status: String) {
    use sd_notify::NotifyState;
    // A datagram send on a Unix socket can block when the receiver's queue is full.
    let sent = tokio::task::spawn_blocking(move || {
        let mut states = vec![NotifyState::Status(&status)];
        match notice {
            Some(Notice::Ready) => states.insert(0, NotifyState::Ready),
            Some(Notice::Stopping) => states.insert(0, NotifyState::Stopping),
            None => {}
        }
        sd_notify::notify(&states)
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(%err, "could not notify the service manager (NOTIFY_SOCKET)")
        }
        Err(err) => tracing::warn!(%err, "the service-manager notification task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_one_bounded_line() {
        let verdict = Verdict {
            ready: false,
            failed: vec!["a\nREADY=1".into(), "x".repeat(500)],
        };
        let line = status_line(&verdict);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(line.chars().count(), MAX_STATUS_CHARS);
        assert!(line.starts_with("not ready: a READY=1; x"));
    }
}
