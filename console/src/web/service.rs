//! Out-of-service windows from the console: an officer takes a sensor, a site or a rule out of
//! service for a planned window, or returns it to service (rules.md §4.3). Sent as a command
//! like any other action, answered by the pipeline, audited.

use super::{audit, entry, error, require, send_command, session, AppState};
use crate::auth::Role;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

#[derive(Deserialize, Default)]
pub(super) struct WindowBody {
    /// `sensor`, `site` or `rule`.
    target: String,
    /// Its id.
    id: String,
    /// The site: a sensor's (for routing), or the one site a rule is out of service at.
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    minutes: Option<u32>,
    #[serde(default)]
    note: String,
}

/// The data-quality rule ids a window can name where the rules configure them (rules.md §4.3):
/// the tests', then stale detection's. Offered when the console has no `--rules`.
const DQ_RULE_IDS: [&str; 6] =
    ["dq.gross_range", "dq.spike", "dq.flat_line", "dq.rate_of_change", "dq.timing", "dq.stale"];

/// `GET /api/service/rules`: the rule ids a window on a rule can name (the form's choices):
/// the configured ones (`--rules`), else the data-quality ids alone (any id may then be typed).
pub(super) async fn rules(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&app, &headers) {
        return r;
    }
    let (rules, configured) = offered(&app.window_rules);
    Json(json!({"rules": rules, "configured": configured})).into_response()
}

/// The form's rule choices, and whether they come from the rules file.
fn offered(window_rules: &[String]) -> (Vec<String>, bool) {
    let configured = !window_rules.is_empty();
    let rules = if configured { window_rules.to_vec() } else { DQ_RULE_IDS.map(str::to_string).to_vec() };
    (rules, configured)
}

/// `POST /api/service/{out_of_service|return_to_service}`.
pub(super) async fn window(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(action): Path<String>,
    Json(body): Json<WindowBody>,
) -> Response {
    let s = match require(&app, &headers, Role::Officer) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !matches!(action.as_str(), "out_of_service" | "return_to_service") {
        return error(StatusCode::NOT_FOUND, "unknown_action", format!("no action {action:?}"));
    }
    let id = body.id.trim();
    if !matches!(body.target.as_str(), "sensor" | "site" | "rule") || id.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "target_required",
            "say what goes out of service: a sensor, a site or a rule, by id",
        );
    }
    if opening_rule(&action, &body.target) && !app.window_rules.is_empty() && !app.window_rules.iter().any(|r| r == id)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "unknown_rule",
            format!("rule: no rule {id:?} to take out of service; one of {}", app.window_rules.join(", ")),
        );
    }
    let opening = action == "out_of_service";
    if opening && body.note.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "note_required", "taking out of service needs the reason");
    }
    if opening && body.minutes.is_none() {
        return error(StatusCode::BAD_REQUEST, "minutes_required", "say for how many minutes");
    }
    // A sensor's site routes the command (the production path needs it): from its alerts on
    // the board when not given.
    let given = body.site.as_deref().map(str::trim).filter(|x| !x.is_empty()).map(str::to_string);
    let site = match given {
        Some(site) => Some(site),
        None if body.target == "sensor" => {
            let board = crate::App::lock(&app.board);
            board.sorted().into_iter().find(|a| a.subject.as_str() == id).map(|a| a.site.as_str().to_string())
        }
        None => None,
    };
    let command_id = format!("console-{}", &crate::auth::random_token()[..16]);
    let mut cmd = json!({"command_id": command_id, "action": action, "by": s.name, "note": body.note});
    cmd[body.target.as_str()] = json!(id);
    if let Some(site) = &site {
        if body.target != "site" {
            cmd["site"] = json!(site);
        }
    }
    if opening {
        cmd["minutes"] = json!(body.minutes);
    }
    let mut e = entry(Some(&s), "", &action, remote);
    let at = match &site {
        Some(site) if body.target == "rule" => format!(" at {site}"),
        _ => String::new(),
    };
    e.detail = match body.minutes {
        Some(m) if opening => format!("{} {id}{at}: {m} min; reason: {}", body.target, body.note),
        _ => format!("{} {id}{at}: {}", body.target, body.note),
    };
    e.outcome = "sent".into();
    let logged = audit(&app, e);
    send_command(&app, &command_id, cmd, logged.as_ref()).await
}

/// Whether a request opens a window on a rule (closing one on a rule the rules file no longer
/// has stays possible).
fn opening_rule(action: &str, target: &str) -> bool {
    action == "out_of_service" && target == "rule"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_rules_file_the_form_offers_every_data_quality_id_a_window_can_name() {
        let (rules, configured) = offered(&[]);
        assert!(!configured);
        assert_eq!(rules, ["dq.gross_range", "dq.spike", "dq.flat_line", "dq.rate_of_change", "dq.timing", "dq.stale"]);
        let given = vec!["water-level".to_string(), "dq.spike".to_string()];
        assert_eq!(offered(&given), (given.clone(), true));
    }
}
