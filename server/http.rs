//! Plain HTTP on the gRPC port: liveness, a database check, who is online (JSON), Prometheus
//! metrics, and the built web client.

use std::sync::Arc;

use std::{
    path::{Path, PathBuf},
    pin::Pin,
};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use serde_json::{Value, json};
use tonic::Status;
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::{App, proto::PresenceStatus};

/// The HTTP routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/db", get(health_db))
        .route("/presence/online", get(presence_online))
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// How long browsers may keep the build's hashed files (`/assets/*`: a new build gives new
/// names) without asking again.
const HASHED_ASSETS: &str = "public, max-age=31536000, immutable";
/// Everything else (index.html, the favicon) is asked for again on every load, so a new build
/// is seen at once.
const REVALIDATE: &str = "no-cache";

/// What every path no route claims gets: gRPC UNIMPLEMENTED for gRPC requests (an unknown method),
/// otherwise the web client from `web_dir`: its files, brotli- or gzip-compressed when the build
/// left a `.br` or `.gz` beside them and the browser takes it, hashed assets cached for good and
/// the rest revalidated; unknown paths without a file extension get index.html, so the client's
/// own routes survive a reload, and other unknown files are 404.
pub fn fallback(
    web_dir: PathBuf,
) -> impl Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Clone + Send + Sync + 'static
{
    let index = web_dir.join("index.html");
    let built = index.is_file();
    let index = ServeFile::new(index)
        .precompressed_br()
        .precompressed_gzip();
    let files = ServeDir::new(&web_dir)
        .precompressed_br()
        .precompressed_gzip();
    let files_or_index = files.clone().fallback(index);
    move |request: Request| {
        let (files, files_or_index) = (files.clone(), files_or_index.clone());
        let web_dir = web_dir.clone();
        Box::pin(async move {
            let grpc = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("application/grpc"));
            if grpc {
                let path = request.uri().path().to_owned();
                return Status::unimplemented(format!("no such method: {path}"))
                    .into_http::<axum::body::Body>()
                    .into_response();
            }
            if !built {
                return web_client_missing(&web_dir).into_response();
            }
            let path = request.uri().path();
            let hashed = path.starts_with("/assets/");
            let client_route = !path.rsplit('/').next().unwrap_or_default().contains('.');
            let served = if client_route {
                files_or_index.oneshot(request).await
            } else {
                files.oneshot(request).await
            };
            let mut response = match served {
                Ok(response) => response.into_response(),
                Err(never) => match never {},
            };
            let cache = if hashed { HASHED_ASSETS } else { REVALIDATE };
            let headers = response.headers_mut();
            headers.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static(cache),
            );
            // The body depends on Accept-Encoding (precompressed copies): caches must know.
            headers.append(
                header::VARY,
                header::HeaderValue::from_static("accept-encoding"),
            );
            response
        })
    }
}

/// What `/` shows when the web client has not been built.
fn web_client_missing(web_dir: &Path) -> (StatusCode, Html<String>) {
    let page = format!(
        "<!doctype html><title>FastChat</title><h1>FastChat is running</h1>\
         <p>The web client is not built: no <code>{}</code>. Build it with \
         <code>npm ci &amp;&amp; npm run build</code> in <code>web-client/</code>, or point \
         <code>--web-dir</code> at a build. gRPC and grpc-web clients can connect now.</p>",
        web_dir.join("index.html").display()
    );
    (StatusCode::NOT_FOUND, Html(page))
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

/// Every metric in the Prometheus text format.
async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        app.metrics.render(),
    )
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
