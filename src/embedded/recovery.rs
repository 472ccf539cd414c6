//! Start-up of the embedded wiring: the rules host exactly as it was when the process stopped,
//! however it stopped.
//!
//! The last saved state is restored (`store.db.state`: the host's snapshot, each sensor's state
//! apart), the inputs journaled after it are applied again (the
//! events they cause are the very events the crashed process produced or was about to, same
//! ids), and only then are new messages taken in. Two inputs are then journaled like any other:
//! `resume` (sensors count their silence from now, not from before the stop) and, when the
//! rules or registry file changed while riskwatch was stopped, `reload`.

use anyhow::{Context, Result};
use riskwatch_core::{AlertEvent, Registry, Timestamp};
use riskwatch_rules::{HostSnapshot, Input, Outcome, RulesHost, SensorState, Snapshot};
use riskwatch_sinks::rule_state::{LoadedState, StateFile};
use riskwatch_sinks::sqlite::{SqliteStore, StoreItem};
use std::sync::Arc;
use tracing::{info, warn};

/// A recovered host and what recovering it produced.
pub struct Recovered {
    /// The host, ready for new inputs.
    pub host: RulesHost,
    /// Events to publish (again): replayed from the journal, or caused by changed files.
    pub events: Vec<AlertEvent>,
}

/// Builds the rules host from the store: saved state, then the journal after it, then the
/// restart's own inputs (written to the store before returning).
pub fn recover(
    store: &mut SqliteStore,
    state: &StateFile,
    rules_text: &str,
    registry: Arc<Registry>,
    registry_digest: &str,
    now: Timestamp,
) -> Result<Recovered> {
    let began = std::time::Instant::now();
    let mut events = Vec::new();
    let recover = |snap: HostSnapshot, events: &mut Vec<AlertEvent>| -> Result<RulesHost> {
        let rec = RulesHost::recover(snap, Arc::clone(&registry), registry_digest, None)
            .context("the saved rule state cannot be restored")?;
        if !rec.exact {
            warn!("the registry changed while riskwatch was stopped: saved rule state re-bound to the new one");
        }
        events.extend(rec.events);
        Ok(rec.host)
    };
    let mut host = match state.load()? {
        Some(loaded) => recover(assemble(loaded)?, &mut events)?,
        // A store from before the state file: the engine's state alone, kept in the store.
        None => {
            let mut host = RulesHost::new(rules_text, Arc::clone(&registry), registry_digest, None)?;
            if let Some(json) = store.load_snapshot()? {
                match serde_json::from_str::<Snapshot>(&json) {
                    Ok(snap) => host.adopt_engine_snapshot(snap, now, &mut events)?,
                    Err(e) => warn!(error = %e, "saved engine state not readable; starting fresh"),
                }
            }
            host
        }
    };
    let restored = began.elapsed();
    let replayed = store.each_journal_entry(host.position(), |position, body| {
        if position != host.position() + 1 {
            warn!(expected = host.position() + 1, found = position, "gap in the input journal");
        }
        match Input::from_bytes(body) {
            Ok(mut input) => {
                host.apply(&mut input, &mut events);
            }
            Err(e) => warn!(position, error = %e, "journal entry not readable; skipped"),
        }
    })?;
    if replayed > 0 || host.position() > 0 {
        info!(
            replayed,
            position = host.position(),
            open_alerts = host.engine().open_alerts().count(),
            restore_ms = restored.as_millis() as u64,
            replay_ms = (began.elapsed() - restored).as_millis() as u64,
            "rule state recovered"
        );
    }
    // The restart itself, and files edited meanwhile, are inputs like any other.
    let mut restart = vec![Input::Resume { at: now }];
    // A changed registry was taken in by `RulesHost::recover` (re-bound); changed rules are a
    // reload, so the open alerts of rules that still exist carry over.
    if host.rules_text() != rules_text {
        restart.push(Input::Reload { at: now, rules: Some(rules_text.to_string()), registry: None });
    }
    let mut items = Vec::new();
    for mut input in restart {
        let position = host.position() + 1;
        items.push(StoreItem::Input { position, body: input.to_bytes() });
        match host.apply(&mut input, &mut events) {
            Outcome::ReloadRefused(e) => anyhow::bail!("the rules file does not fit the saved state: {e}"),
            Outcome::Reloaded => println!("rules changed while riskwatch was stopped; now in effect"),
            _ => {}
        }
    }
    items.push(StoreItem::Events(events.clone()));
    store.write(&items).context("writing the restart to the input journal")?;
    Ok(Recovered { host, events })
}

/// The saved state as one snapshot: the rest of it with every sensor's state put back.
fn assemble(loaded: LoadedState) -> Result<HostSnapshot> {
    let meta: HostSnapshot = serde_json::from_str(&loaded.meta).context("the saved rule state is not readable")?;
    let mut sensors = Vec::with_capacity(loaded.sensors.len());
    for json in &loaded.sensors {
        sensors.push(serde_json::from_str::<SensorState>(json).context("a saved sensor state is not readable")?);
    }
    Ok(HostSnapshot { engine: meta.engine.with_sensors(sensors), ..meta })
}
