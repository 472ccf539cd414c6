//! The embedded wiring's outbox: everything riskwatch publishes on MQTT, from one task.
//!
//! Alert events arrive here only once the store has committed the inputs that caused them
//! (the store's `OnCommit` hands them over), so a published event always belongs to a
//! transition the input journal can replay: after a crash the same event comes out again with
//! the same id, never a different one. Rejections and command errors change no state and are
//! sent at once. A bounded queue: when the broker is slow, back-pressure reaches the store and
//! the rules stage instead of memory growing.

use riskwatch_core::{AlertEvent, DeadLetter};
use riskwatch_sinks::mqtt_alerts::MqttAlertPublisher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// Hand-overs waiting for the publisher, at most (each the events of one committed message):
/// enough to keep the publisher busy, small enough that a slow broker holds up the pipeline
/// rather than filling memory.
const QUEUE: usize = 64;

/// Alert events waiting to be printed on the terminal, at most.
const FEED: usize = 1024;

/// The terminal's live feed of alert events. It never holds up the pipeline: when the terminal
/// falls behind (a slow pipe, a paused screen), events beyond [`FEED`] are not printed — they
/// are stored and published all the same — and the printer says how many it skipped.
pub struct LiveFeed {
    tx: mpsc::Sender<AlertEvent>,
    skipped: Arc<AtomicU64>,
}

impl LiveFeed {
    /// A feed and the task printing it with `print`.
    pub fn spawn(print: impl Fn(&AlertEvent) + Send + 'static) -> (LiveFeed, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<AlertEvent>(FEED);
        let skipped = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&skipped);
        let report_skipped = move || {
            let n = seen.swap(0, Ordering::Relaxed);
            if n > 0 {
                println!("… {n} alert events not shown here (the terminal fell behind); all are stored and published");
            }
        };
        let task = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                report_skipped();
                print(&e);
            }
            report_skipped();
        });
        (LiveFeed { tx, skipped }, task)
    }

    fn offer(&self, e: AlertEvent) {
        if self.tx.try_send(e).is_err() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Something to publish.
#[derive(Debug)]
pub enum Outgoing {
    /// Alert events whose inputs are committed, in order.
    Events(Vec<AlertEvent>),
    /// A rejection notice for a gateway.
    Rejection(DeadLetter),
    /// A refused command's error report.
    CommandError(Vec<u8>),
    /// After a restart: the stored events of every open alert, to publish their retained state.
    Retained(Vec<AlertEvent>),
}

/// Starts the outbox task; it ends (returning the publisher, to close) once every sender is
/// dropped.
pub fn spawn(
    publisher: MqttAlertPublisher,
    feed: Option<LiveFeed>,
) -> (mpsc::Sender<Outgoing>, JoinHandle<MqttAlertPublisher>) {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(QUEUE);
    let task = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Outgoing::Events(events) => {
                    for e in events {
                        if let Err(err) = publisher.publish_event(&e).await {
                            warn!(error = %err, event = %e.event_id, "could not publish alert event");
                        }
                        if let Some(f) = &feed {
                            f.offer(e);
                        }
                    }
                }
                Outgoing::Rejection(d) => {
                    if let Err(err) = publisher.publish_rejection(&d).await {
                        warn!(error = %err, "could not publish rejection notice");
                    }
                }
                Outgoing::CommandError(report) => {
                    if let Err(err) = publisher.publish_command_error(report).await {
                        warn!(error = %err, "could not publish command error");
                    }
                }
                Outgoing::Retained(events) => match publisher.restore_retained(&events).await {
                    Ok(n) if n > 0 => tracing::info!(alerts = n, "retained alert state published again"),
                    Ok(_) => {}
                    Err(err) => warn!(error = %err, "could not publish retained alert state"),
                },
            }
        }
        publisher
    });
    (tx, task)
}
