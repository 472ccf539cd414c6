//! `GET /api/kpi?from=…&to=…`: the alarm KPIs of a period (RFC 3339; default the last 24 h)
//! for the KPI page. Any logged-in role may read them.

use super::{error, session, AppState};
use crate::kpis::{LONGEST_MS, RECENT_MS};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use riskwatch_core::Timestamp;
use serde::Deserialize;

/// The period asked for.
#[derive(Deserialize)]
pub(super) struct Period {
    from: Option<String>,
    to: Option<String>,
}

fn time(name: &str, v: &Option<String>) -> Result<Option<Timestamp>, Response> {
    match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => Timestamp::parse_rfc3339(text)
            .map(Some)
            .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_query", format!("{name} {text:?}: {e}"))),
    }
}

pub(super) async fn kpi(State(app): State<AppState>, headers: HeaderMap, Query(p): Query<Period>) -> Response {
    if let Err(r) = session(&app, &headers) {
        return r;
    }
    let (from, to) = match (time("from", &p.from), time("to", &p.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let to = to.unwrap_or_else(Timestamp::now);
    let from = from.unwrap_or(to.plus_millis(-RECENT_MS));
    if from >= to || to.millis() - from.millis() > LONGEST_MS {
        return error(StatusCode::BAD_REQUEST, "bad_query", "from must be before to, and at most 366 days before it");
    }
    match app.kpis(from, to) {
        Ok(k) => Json(k).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", format!("{e:#}")),
    }
}
