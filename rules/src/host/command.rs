//! Officers' commands as the rules host applies them: decoded from the bytes received,
//! routed to the live engine or to the drill, refused with a reason a sender can act on.

use crate::out_of_service::{ServiceAction, ServiceCommand};
use crate::{Command, Drill, Engine};
use riskwatch_core::{AlertEvent, Timestamp};

/// Why an officer's command was not applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    /// Machine-readable reason (wire-format.md §9.2).
    pub code: &'static str,
    /// The reason in words.
    pub error: String,
    /// The command's id, if it could be read.
    pub command_id: Option<String>,
    /// The alert concerned, if it could be read.
    pub alert_id: Option<String>,
}

impl Refused {
    /// The error report published on `riskwatch/v1/commands/errors`.
    pub fn report(&self, received_at: Timestamp) -> Vec<u8> {
        serde_json::json!({
            "command_id": self.command_id, "alert_id": self.alert_id, "code": self.code, "error": self.error,
            "received_at": received_at.to_rfc3339(),
        })
        .to_string()
        .into_bytes()
    }
}

/// Decodes a raw command and applies it to `engine`, or to `drill` for an exercise alert;
/// its events go to `out`. An out-of-service window command (wire-format.md §9.4) goes to the
/// live engine.
pub fn apply_command(
    engine: &mut Engine,
    drill: &mut Drill,
    raw: &[u8],
    now: Timestamp,
    out: &mut Vec<AlertEvent>,
) -> Result<(), Refused> {
    if let Some(cmd) = window_command(raw)? {
        return engine.service_command(&cmd, now, out).map_err(|e| Refused {
            code: e.code(),
            error: e.to_string(),
            command_id: cmd.command_id.clone(),
            alert_id: None,
        });
    }
    let cmd = serde_json::from_slice::<Command>(raw).map_err(|e| Refused {
        code: "bad_command",
        error: format!("not a valid command: {e}"),
        command_id: None,
        alert_id: None,
    })?;
    let result = match drill.command(&cmd, now) {
        Some(result) => result,
        None => engine.command(&cmd, now),
    };
    let ev = result.map_err(|e| Refused {
        code: e.code(),
        error: e.to_string(),
        command_id: cmd.command_id.clone(),
        alert_id: Some(cmd.alert_id.clone()),
    })?;
    out.push(ev);
    Ok(())
}

/// The command as a window command, if its `action` is one.
fn window_command(raw: &[u8]) -> Result<Option<ServiceCommand>, Refused> {
    #[derive(serde::Deserialize)]
    struct Peek {
        action: Option<String>,
    }
    let is_window =
        serde_json::from_slice::<Peek>(raw).ok().and_then(|p| p.action).is_some_and(|a| ServiceAction::is_one(&a));
    if !is_window {
        return Ok(None);
    }
    serde_json::from_slice::<ServiceCommand>(raw).map(Some).map_err(|e| Refused {
        code: "bad_command",
        error: format!("not a valid command: {e}"),
        command_id: None,
        alert_id: None,
    })
}
