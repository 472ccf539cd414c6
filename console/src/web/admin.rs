//! The admin's operator management: list, add, change display name or role, reset a password,
//! remove. Every change re-reads the users file, is refused on a stale view, rewrites the file
//! atomically, ends the sessions it must, and goes in the audit log (never the password).

use super::{audit, cookie_token, entry, error, require, AppState};
use crate::auth::{hash_password, Role, Session};
use crate::users_edit::{self, Edit, Refused};
use crate::App;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// The operators (no hashes) and the file's version, re-read from the users file.
pub(super) async fn list(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = require(&app, &headers, Role::Admin) {
        return r;
    }
    let _edit = App::lock(&app.users_edit);
    let (version, note) = match users_edit::read(&app.users_path) {
        Ok((version, users)) => {
            let ended = App::lock(&app.sessions).sync(&users);
            if !ended.is_empty() {
                tracing::info!(operators = ?ended, "users file changed by hand: their sessions ended");
            }
            *app.users.write().unwrap_or_else(|e| e.into_inner()) = users;
            (Some(version), None)
        }
        Err(e) => (None, Some(format!("users file not reloaded: {}", e.message))),
    };
    let users = app.users.read().unwrap_or_else(|e| e.into_inner());
    let list: Vec<_> =
        users.list().iter().map(|u| json!({"name": u.name, "display_name": u.display_name, "role": u.role})).collect();
    Json(json!({"users": list, "version": version, "note": note})).into_response()
}

/// A JSON body, or the API's error shape (400 / 415 / 422) instead of axum's plain text.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Response> {
    b.map(|Json(t)| t).map_err(|e| error(e.status(), "bad_request", e.body_text()))
}

/// The admin routes' prologue: an admin's session, then the JSON body (in that order, so a
/// non-admin learns nothing about the body's shape).
fn admin_request<T>(
    app: &App,
    headers: &HeaderMap,
    b: Result<Json<T>, JsonRejection>,
) -> Result<(Session, T), Response> {
    let s = require(app, headers, Role::Admin)?;
    Ok((s, body(b)?))
}

fn role(s: &str) -> Result<Role, Response> {
    Role::parse(s).ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad_role", "role: one of viewer, officer, admin"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AddBody {
    name: String,
    #[serde(default)]
    display_name: String,
    role: String,
    password: String,
    #[serde(default)]
    version: Option<String>,
}

pub(super) async fn add(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    b: Result<Json<AddBody>, JsonRejection>,
) -> Response {
    let (s, b) = match admin_request(&app, &headers, b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let role = match role(&b.role) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let detail = format!("operator {}: add as {} ({:?})", b.name, role.as_str(), b.display_name);
    let checked = users_edit::check_name(&b.name)
        .and_then(|_| users_edit::check_display_name(&b.display_name))
        .and_then(|_| users_edit::check_password(&b.password));
    let password = b.password;
    let edit = move || {
        Ok(Edit::Add {
            name: b.name,
            display_name: b.display_name,
            role,
            password_hash: hash_password(&password)
                .map_err(|e| Refused { code: "users_file", message: e.to_string() })?,
        })
    };
    change(app, s, remote, &headers, "user_add", detail, checked.map(|_| edit), b.version, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateBody {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

pub(super) async fn update(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    b: Result<Json<UpdateBody>, JsonRejection>,
) -> Response {
    let (s, b) = match admin_request(&app, &headers, b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let new_role = match b.role.as_deref().map(role).transpose() {
        Ok(r) => r,
        Err(r) => return r,
    };
    if new_role.is_none() && b.display_name.is_none() {
        return error(StatusCode::BAD_REQUEST, "bad_request", "send display_name and / or role");
    }
    let mut said = Vec::new();
    if let Some(r) = new_role {
        said.push(format!("set role {}", r.as_str()));
    }
    if let Some(d) = &b.display_name {
        said.push(format!("set display name {d:?}"));
    }
    let detail = format!("operator {name}: {}", said.join(", "));
    let edit = move || Ok(Edit::Update { name, display_name: b.display_name, role: new_role });
    change(app, s, remote, &headers, "user_update", detail, Ok(edit), b.version, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    password: String,
    #[serde(default)]
    version: Option<String>,
}

pub(super) async fn password(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    b: Result<Json<PasswordBody>, JsonRejection>,
) -> Response {
    let (s, b) = match admin_request(&app, &headers, b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let detail = format!("operator {name}: reset password");
    let checked = users_edit::check_password(&b.password);
    let password = b.password;
    let edit = move || {
        let password_hash =
            hash_password(&password).map_err(|e| Refused { code: "users_file", message: e.to_string() })?;
        Ok(Edit::Password { name, password_hash })
    };
    change(app, s, remote, &headers, "user_password", detail, checked.map(|_| edit), b.version, true).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveBody {
    #[serde(default)]
    version: Option<String>,
}

pub(super) async fn remove(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    b: Result<Json<RemoveBody>, JsonRejection>,
) -> Response {
    let (s, b) = match admin_request(&app, &headers, b) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let detail = format!("operator {name}: remove");
    let edit = move || Ok(Edit::Remove { name });
    change(app, s, remote, &headers, "user_remove", detail, Ok(edit), b.version, false).await
}

fn status(code: &str) -> StatusCode {
    match code {
        "bad_name" | "bad_display_name" | "bad_password" => StatusCode::BAD_REQUEST,
        "unknown_user" => StatusCode::NOT_FOUND,
        "duplicate_name" | "stale" | "last_admin" | "own_account" => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Makes the change (off the async workers: hashing and file I/O), ends the sessions it must,
/// audits it either way and answers. `make` builds the edit (hashing a password) unless the
/// input was already refused. A password reset (`end_target`) also ends the operator's
/// sessions, except the admin's own.
#[allow(clippy::too_many_arguments)]
async fn change(
    app: AppState,
    s: Session,
    remote: SocketAddr,
    headers: &HeaderMap,
    action: &str,
    detail: String,
    make: Result<impl FnOnce() -> Result<Edit, Refused> + Send + 'static, Refused>,
    version: Option<String>,
    end_target: bool,
) -> Response {
    let keep = cookie_token(headers);
    let app2 = Arc::clone(&app);
    let by = s.name.clone();
    let done = tokio::task::spawn_blocking(move || {
        let edit = make?()?;
        let _edit = App::lock(&app2.users_edit);
        let (version, users) = users_edit::commit(&app2.users_path, &edit, &by, version.as_deref())?;
        let target = match &edit {
            Edit::Add { name, .. }
            | Edit::Update { name, .. }
            | Edit::Password { name, .. }
            | Edit::Remove { name } => name.clone(),
        };
        let mut sessions = App::lock(&app2.sessions);
        let mut ended = sessions.sync(&users).len();
        if end_target {
            ended += sessions.end_user(&target, keep.as_deref());
        }
        drop(sessions);
        let user = users.get(&target).map(|u| json!({"name": u.name, "display_name": u.display_name, "role": u.role}));
        *app2.users.write().unwrap_or_else(|e| e.into_inner()) = users;
        Ok::<_, Refused>((version, user, ended))
    })
    .await
    .unwrap_or_else(|e| Err(Refused { code: "users_file", message: format!("the change did not finish: {e}") }));
    let mut e = entry(Some(&s), "", action, remote);
    match done {
        Ok((version, user, ended)) => {
            e.detail = if ended > 0 { format!("{detail}; {ended} session(s) ended") } else { detail };
            audit(&app, e);
            let code = if action == "user_add" { StatusCode::CREATED } else { StatusCode::OK };
            (code, Json(json!({"ok": true, "user": user, "version": version, "sessions_ended": ended}))).into_response()
        }
        Err(r) => {
            e.detail = detail;
            e.outcome = format!("refused: {}: {}", r.code, r.message);
            audit(&app, e);
            if r.code == "users_file" {
                tracing::error!(error = %r.message, "users file not changed");
            }
            error(status(r.code), r.code, r.message)
        }
    }
}
