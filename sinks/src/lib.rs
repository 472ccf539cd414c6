//! riskwatch sinks: where readings, alert events and dead letters go.
//!
//! - [`sqlite::SqliteStore`]: the embedded store (readings, alert events, dead letters).
//! - [`questdb::IlpWriter`]: readings and alert events to QuestDB over its line protocol.
//! - [`questdb_tables`]: the QuestDB tables checked (or created) before the first write.
//! - [`mqtt_alerts::MqttAlertPublisher`]: alert events and rejections on MQTT topics.
//! - [`console`]: the colour-coded live feed printed by `riskwatch demo`.
//! - [`webhook::Notifier`]: alert events to webhooks (JSON, DingTalk, WeCom, Feishu, CAP).
//! - [`cap`]: OASIS CAP 1.2 XML for warning-publication platforms.
//!
//! Writes are idempotent (readings keyed by sensor and event time, alert events by their
//! stable id), so at-least-once delivery upstream never shows up as duplicates here.

pub mod cap;
mod checkpoint;
pub mod console;
pub mod mqtt_alerts;
pub mod questdb;
pub mod questdb_tables;
mod readings_table;
pub mod retry;
pub mod rule_state;
pub mod sqlite;
mod wal_writes;
pub mod webhook;

/// Lowers the calling thread's scheduling priority (nice 10): for threads whose work may wait —
/// saving the rule state — so that on a small machine their bursts do not hold up the threads
/// alerts pass through. Best effort: ignored where not supported.
pub(crate) fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; a failure changes nothing.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
