//! Plain HTTP on the gRPC port: liveness, a database check, and who is online, as JSON.

use std::sync::Arc;

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{App, proto::PresenceStatus};

/// The HTTP routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/db", get(health_db))
        .route("/presence/online", get(presence_online))
        .with_state(app)
}

/// The process is up.
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// A real query against the database: 503 when it fails.
async fn health_db(State(app): State<Arc<App>>) -> (StatusCode, Json<Value>) {
    match app.db.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "database": app.db_kind() })),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "database health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "status": "unavailable", "database": app.db_kind(), "error": "database did not answer" }),
                ),
            )
        }
    }
}

/// One user in `/presence/online`.
#[derive(Debug, Serialize)]
struct OnlineUser {
    /// The user's id.
    user_id: String,
    /// The user's display name.
    display_name: String,
    /// `online` or `away`.
    status: &'static str,
    /// Open sessions.
    sessions: u32,
    /// Last activity, RFC 3339.
    last_seen: Option<String>,
}

/// Everyone ONLINE or AWAY.
async fn presence_online(State(app): State<Arc<App>>) -> Json<Value> {
    let users: Vec<OnlineUser> = app
        .hub
        .list_online(None)
        .into_iter()
        .map(|p| {
            let user = p.user.clone().unwrap_or_default();
            OnlineUser {
                user_id: user.user_id,
                display_name: user.display_name,
                status: if p.status() == PresenceStatus::Away {
                    "away"
                } else {
                    "online"
                },
                sessions: p.sessions,
                last_seen: p.last_seen.and_then(|t| {
                    chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32)
                        .map(|t| t.to_rfc3339())
                }),
            }
        })
        .collect();
    Json(json!({ "count": users.len(), "users": users }))
}
