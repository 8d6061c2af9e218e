//! Plain HTTP on the gRPC port (`/health`, `/health/db`, `/presence/online`) and the standard
//! `grpc.health.v1.Health` service, including a PostgreSQL outage and its recovery.

mod common;

use std::time::Duration;

use common::{ChatSession, TestServer, authed, http_get};
use fastchat::proto::{PresenceStatus, SetStatusRequest};
use fastchat::testing::{Backend, on_both_databases, postgres_base_url};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The gRPC services the health service reports on ("" is the server as a whole).
const HEALTH_SERVICES: [&str; 4] = [
    "",
    "fastchat.v1.ChatService",
    "fastchat.v1.PresenceService",
    "fastchat.v1.MetricsService",
];

/// GETs `path` over HTTP/1.1; returns the status code and the body as JSON.
async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let (status, content_type, body) = http_get(server, path).await;
    assert!(
        content_type.starts_with("application/json"),
        "GET {path}: content-type {content_type:?}"
    );
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|err| panic!("GET {path}: body is not JSON ({err}): {body:?}"));
    (status, json)
}

/// The gRPC health of `service`.
async fn grpc_health(server: &TestServer, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(server.channel().await.unwrap());
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap_or_else(|status| panic!("health check of {service:?} failed: {status:?}"))
        .into_inner();
    response.status()
}

/// `/health` answers `{"status":"ok"}`; `/health/db` runs a query and names the database.
async fn health_endpoints_answer(backend: Backend) {
    let server = TestServer::start(backend).await;
    assert_eq!(
        get(&server, "/health").await,
        (200, json!({"status": "ok"}))
    );

    let (status, body) = get(&server, "/health/db").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    let kind = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["database"], kind);
    server.stop().await;
}

/// `/presence/online` lists who is connected, with status and session count.
async fn presence_online_lists_connected_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (status, body) = get(&server, "/presence/online").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 0);
    assert_eq!(body["users"], json!([]));

    let alice = ChatSession::new_user(&server, "Alice").await;
    let bob = ChatSession::new_user(&server, "Bob").await;
    let _bob_phone = bob.again(&server).await;
    let mut presence = server.presence().await.unwrap();
    presence
        .set_status(authed(
            &bob.token(),
            SetStatusRequest {
                status: PresenceStatus::Away as i32,
                session_id: String::new(),
            },
        ))
        .await
        .unwrap();

    let (status, body) = get(&server, "/presence/online").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 2, "{body}");
    let users = body["users"].as_array().unwrap();
    let find = |id: &str| {
        users
            .iter()
            .find(|u| u["user_id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed in {body}"))
    };
    let a = find(&alice.user_id());
    assert_eq!(a["display_name"], "Alice");
    assert_eq!(a["status"], "online");
    assert_eq!(a["sessions"], 1);
    let b = find(&bob.user_id());
    assert_eq!(b["display_name"], "Bob");
    assert_eq!(b["status"], "away");
    assert_eq!(b["sessions"], 2);
    server.stop().await;
}

/// The standard gRPC health service reports SERVING for the server and both services.
async fn grpc_health_is_serving(backend: Backend) {
    let server = TestServer::start(backend).await;
    for service in HEALTH_SERVICES {
        assert_eq!(
            grpc_health(&server, service).await,
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    server.stop().await;
}

on_both_databases!(
    health_endpoints_answer,
    presence_online_lists_connected_users,
    grpc_health_is_serving,
);

/// Sets whether PostgreSQL accepts connections to `name`; when it stops, ends the open ones.
async fn allow_connections(admin: &sea_orm::DatabaseConnection, name: &str, allow: bool) {
    admin
        .execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"))
        .await
        .unwrap();
    if !allow {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .await
            .unwrap();
    }
}

/// Polls `/health/db` until it answers `want`.
async fn wait_for_health_db(server: &TestServer, want: u16) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get(server, "/health/db").await;
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health/db never answered {want}; last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PostgreSQL only: when the database stops answering, `/health/db` says 503 and the gRPC health
/// service turns NOT_SERVING (it re-checks every 5 s); both recover once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_turns_health_unavailable_and_back() {
    let Some(base_url) = postgres_base_url() else {
        return;
    };
    let server = TestServer::start(Backend::Postgres).await;
    let name = server
        .database_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let admin = sea_orm::Database::connect(&base_url).await.unwrap();

    let mut health = HealthClient::new(server.channel().await.unwrap());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut next_status = async || {
        tokio::time::timeout(Duration::from_secs(15), watch.message())
            .await
            .expect("the health status did not change in time")
            .expect("health watch failed")
            .expect("health watch ended")
            .status()
    };
    assert_eq!(next_status().await, ServingStatus::Serving);

    // (A failed assertion leaves the database closed to connections: dropping it still works.)
    allow_connections(&admin, &name, false).await;
    let body = wait_for_health_db(&server, 503).await;
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(next_status().await, ServingStatus::NotServing);
    for service in HEALTH_SERVICES {
        assert_eq!(
            grpc_health(&server, service).await,
            ServingStatus::NotServing,
            "{service:?}"
        );
    }

    allow_connections(&admin, &name, true).await;
    let body = wait_for_health_db(&server, 200).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(next_status().await, ServingStatus::Serving);
    for service in HEALTH_SERVICES {
        assert_eq!(grpc_health(&server, service).await, ServingStatus::Serving);
    }
    admin.close().await.ok();
    // An open health watch holds the shutdown for its whole drain period: see tests/shutdown.rs.
    drop(watch);
    server.stop().await;
}
