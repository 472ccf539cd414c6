//! Stopping: every long-running command ends on Ctrl-C or SIGTERM (how docker and systemd stop
//! a service), or after its `--duration`.

use std::time::Duration;

/// Completes on Ctrl-C or SIGTERM (how docker and systemd stop a service).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Completes after `duration` (if given) or on a stop signal, whichever comes first.
pub async fn wait_for_stop(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = shutdown_signal() => {}
        },
        None => shutdown_signal().await,
    }
}
