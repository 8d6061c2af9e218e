//! FastChat: a real-time 1:1 chat server over gRPC and grpc-web, on one port.
//!
//! - [`config`]: every setting, as flags and environment variables.
//! - [`api`]: the tonic services (ChatService, PresenceService): validate, call the hub, the
//!   pipeline or the database, map errors to statuses.
//! - [`hub`]: who is connected: the registry (sessions, presence, typing as plain data, checked
//!   by `check_invariants` in tests), and the fan-out seam ([`hub::FanOut`]) every event for a
//!   user's sessions leaves through.
//! - [`cluster`]: cluster mode: events for users on other nodes, over NATS.
//! - [`pipeline`]: the durable side: the message writer (group commit, acks after the commit,
//!   deliveries), the presence write-through, and the group-commit helper they share.
//! - [`db`]: SeaORM storage on SQLite or PostgreSQL, typed ids, and the transaction helper that
//!   runs a transaction again when it lost a conflict; the migrations live in the `migration`
//!   crate.
//! - [`identity`]: user ids claimed with a token, and checking that token; or JWT sign-in.
//! - [`limits`]: rate limits per user and kind of action, and per client address.
//! - [`connections`]: accepting TCP connections, at most a set number at once.
//! - [`concurrency`]: at most a set number of calls in progress per client address.
//! - [`framing`]: broken gRPC framing refused with INVALID_ARGUMENT before tonic decodes it.
//! - [`http`]: `/health`, `/health/db`, `/presence/online` and `/metrics`.
//! - [`error`]: the one error type and its mapping to gRPC statuses.
//! - [`codec`]: the protobuf codec, lenient with undecodable client events.
//! - [`metrics`]: what the server counts, for Prometheus and MetricsService (the service lives in
//!   [`api`]), with the hourly and daily buckets it stores.
//! - [`node`]: this node among those sharing the database: its registration, heartbeats, and
//!   cleaning up after nodes that died.
//! - [`snippet`]: what message search shows: a query's words, a snippet with the matches marked.
//! - [`handshake`]: a deadline for connections that never show their protocol.
//! - [`tls`]: optional TLS (rustls), offering HTTP/2 and HTTP/1.1.
//! - `testing` (tests only, or the `test-support` feature): fresh test databases on SQLite and
//!   PostgreSQL, and `on_both_databases!`, shared by the unit and the integration tests.
//!
//! [`run`] serves on a listener the caller binds, until a shutdown future completes, so tests
//! bind `127.0.0.1:0` and stop the server when they like.

pub mod api;
pub mod cluster;
pub mod codec;
pub mod concurrency;
pub mod config;
pub mod connections;
mod convert;
pub mod db;
pub mod error;
pub mod framing;
pub mod handshake;
pub mod http;
pub mod hub;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod pipeline;
pub mod snippet;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod tls;

/// Generated protobuf types, clients and servers for `fastchat.v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("fastchat.v1");

    /// The encoded descriptors of the API, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("fastchat_descriptor");
}

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use ::http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tokio_stream::Stream;
use tokio_util::either::Either;
use tonic::{Status, service::Routes};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::{BoxError, ServiceBuilder, limit::GlobalConcurrencyLimitLayer};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{
    api::{ChatApi, MetricsApi, PresenceApi},
    cluster::Cluster,
    config::Config,
    db::Database,
    hub::{Hub, HubConfig},
    identity::{Identity, jwt::JwtVerifier},
    limits::RateLimits,
    metrics::Metrics,
    pipeline::Pipeline,
    proto::{
        chat_service_server::ChatServiceServer, metrics_service_server::MetricsServiceServer,
        presence_service_server::PresenceServiceServer,
    },
};

/// Largest request the server decodes (64 KiB); tonic refuses larger ones with OUT_OF_RANGE.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long shutdown may wait for connections to finish after every stream was ended.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(8);
/// How long shutdown waits for the message writer to record the last deliveries.
const SHUTDOWN_WRITER_FLUSH: Duration = Duration::from_secs(3);
/// How often the database is checked for the gRPC health service.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// The port of the web client's dev server (`npm run dev`), allowed by the default CORS list.
const DEV_SERVER_PORT: u16 = 5173;
/// How often rate-limit buckets that are full again are dropped.
const FORGET_IDLE_LIMITS_INTERVAL: Duration = Duration::from_secs(60);

/// What every service shares.
#[derive(Debug)]
pub struct App {
    /// The server's settings.
    pub config: Config,
    /// Durable storage.
    pub db: Database,
    /// Sessions, presence and fan-out.
    pub hub: Arc<Hub>,
    /// The message writer and the other batched writes.
    pub pipeline: Arc<Pipeline>,
    /// User ids and tokens.
    pub identity: Identity,
    /// Rate limits per user and per client address.
    pub limits: RateLimits,
    /// What the server counts.
    pub metrics: Arc<Metrics>,
}

impl App {
    /// `sqlite` or `postgres`, for health answers.
    pub fn db_kind(&self) -> &'static str {
        match self.db.backend() {
            sea_orm::DbBackend::Postgres => "postgres",
            _ => "sqlite",
        }
    }
}

/// Connects to the database the config names (creating the SQLite data directory when it is the
/// default) and applies pending migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<Database> {
    if config.database_url.is_empty() {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    let db = Database::connect(&config.database_url()).await?;
    db.migrate().await?;
    Ok(db)
}

/// Serves FastChat on `listener` until `shutdown` completes, then ends every stream with
/// UNAVAILABLE, marks this node's sessions offline and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Key and certificate files are read first, so a bad one stops the start at once.
    let tls = tls::from_config(&config)?;
    let Started {
        app,
        health,
        health_route,
        stats_flusher,
    } = start(config).await?;
    let routes = routes(&app, health_route)?;

    let local_addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let sign_in = if app.identity.uses_jwt() {
        "jwt"
    } else {
        "claim"
    };
    let node = app.config.node_id.as_str();
    let cluster = app
        .config
        .nats_url
        .as_ref()
        .map(|_| app.config.cluster_name.as_str());
    tracing::info!(%local_addr, scheme, sign_in, database = app.db_kind(), node, cluster, "FastChat listening (gRPC, grpc-web, HTTP)");

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let end_streams = {
        let hub = app.hub.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: ending streams");
            hub.shutdown().await;
            end_health_watches(health).await;
            let _ = stopping_tx.send(());
        }
    };
    serve(&app, listener, tls, routes, end_streams, stopping_rx).await?;
    finish(&app, stats_flusher).await;
    tracing::info!("stopped");
    Ok(())
}

/// What [`start`] set going.
struct Started {
    /// What every service shares.
    app: Arc<App>,
    /// Sets the gRPC health service's answers.
    health: HealthReporter,
    /// The gRPC health service (NOT_SERVING until the database answers), the first route.
    health_route: Routes,
    /// Stores the hourly and daily statistics; stopped by [`finish`].
    stats_flusher: (
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    ),
}

/// Everything before the first connection: the JWT keys (read first, like the TLS files, so a bad
/// one stops the start at once), the database (migrated, this node registered and what its
/// earlier run left cleaned up), the hub, and the background tasks.
async fn start(config: Config) -> anyhow::Result<Started> {
    let jwt = JwtVerifier::from_config(&config)?;
    check_cluster_mode(&config)?;
    let metrics = Arc::new(Metrics::new());
    let mut db = open_database(&config).await?;
    db.observe_queries(metrics.query_observer());
    let hub_config = HubConfig::from(&config);
    node::join(&db, &hub_config.node_id, hub_config.boot_id).await?;
    let cluster = match &config.nats_url {
        Some(url) => {
            let (name, node) = (&config.cluster_name, &config.node_id);
            Some(Cluster::connect(url, name, node, hub_config.boot_id).await?)
        }
        None => None,
    };
    let hub = Hub::start(db.clone(), hub_config, metrics.clone(), cluster.clone());
    if let Some(cluster) = &cluster {
        cluster.start_presence(&hub).await?;
        cluster.start_status(&hub).await?;
    }
    let app = Arc::new(App {
        identity: Identity::new(db.clone(), jwt, cluster.clone()),
        limits: RateLimits::new(&config, metrics.clone()),
        pipeline: hub.pipeline().clone(),
        hub,
        db,
        config,
        metrics,
    });
    let stop_flusher = tokio_util::sync::CancellationToken::new();
    let flusher = tokio::spawn(metrics::run_stats_flusher(
        app.metrics.clone(),
        app.db.clone(),
        stop_flusher.clone(),
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    // tonic-health starts the server as SERVING; it is not until the database has answered.
    for service in HEALTH_SERVICES {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
    tokio::spawn(watch_database(app.clone(), health.clone()));
    if let Some(cluster) = app.hub.cluster() {
        let (db, metrics) = (app.db.clone(), app.metrics.clone());
        cluster.start_link(db, health.clone(), metrics).await?;
        cluster.start_renames(Arc::downgrade(&app)).await?;
    }
    tokio::spawn(forget_idle_limits(Arc::downgrade(&app)));
    tokio::spawn(identity::prune_unused_users(Arc::downgrade(&app)));
    if app.db.backend() == sea_orm::DbBackend::Postgres {
        tokio::spawn(node::keep_alive(Arc::downgrade(&app)));
    }
    Ok(Started {
        app,
        health,
        health_route: Routes::new(health_service),
        stats_flusher: (stop_flusher, flusher),
    })
}

/// Cluster mode's needs: a database the nodes share, and stored messages (a node cannot know
/// whether another node's session took a message, so what it did not deliver must wait in the
/// database).
fn check_cluster_mode(config: &Config) -> anyhow::Result<()> {
    if config.nats_url.is_none() {
        return Ok(());
    }
    if !config.database_url().starts_with("postgres") {
        anyhow::bail!(
            "cluster mode (--nats-url) needs PostgreSQL, which the nodes share: set DATABASE_URL to a postgres:// URL"
        );
    }
    if config.retention_days == 0 {
        anyhow::bail!(
            "cluster mode (--nats-url) needs stored messages: set --retention-days above 0"
        );
    }
    Ok(())
}

/// Serves `routes` on `listener` (through TLS when given) behind the server-wide limits, until
/// `end_streams` has run and the connections have drained (at most [`SHUTDOWN_DRAIN`] after
/// `stopping` fires).
async fn serve(
    app: &App,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    routes: Routes,
    end_streams: impl Future<Output = ()>,
    stopping: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let config = &app.config;
    let local_addr = listener.local_addr()?;
    let handshake_timeout = config.handshake_timeout();
    let incoming = connections::accept(listener, config.max_connections as usize);
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(config.http2_keepalive_interval()))
        .http2_keepalive_timeout(Some(config.http2_keepalive_timeout()))
        .max_concurrent_streams(config.max_streams_per_connection)
        .layer(cors(&allowed_origins(config, local_addr)))
        .layer(
            ServiceBuilder::new()
                .map_err({
                    let metrics = app.metrics.clone();
                    move |err| overload_status(err, &metrics)
                })
                // Before the global limit, so that a call one address may not make takes no
                // slot of it.
                .layer(concurrency::PerAddressLimitLayer::new(
                    config.max_calls_per_ip as usize,
                ))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(
                    config.max_concurrent_requests as usize,
                ))
                .timeout(config.request_timeout()),
        )
        .add_routes(routes);
    let metrics = app.metrics.clone();
    let server = match tls {
        Some(acceptor) => {
            let incoming = established(
                tls::incoming(incoming, acceptor),
                handshake_timeout,
                metrics,
            );
            Either::Left(router.serve_with_incoming_shutdown(incoming, end_streams))
        }
        None => {
            let incoming = established(incoming, handshake_timeout, metrics);
            Either::Right(router.serve_with_incoming_shutdown(incoming, end_streams))
        }
    };
    tokio::select! {
        result = server => result?,
        () = async {
            let _ = stopping.await;
            tokio::time::sleep(SHUTDOWN_DRAIN).await;
        } => tracing::warn!("connections still open after the drain period; closing them"),
    }
    Ok(())
}

/// After the last connection: records the deliveries the last streams reported (so they are not
/// sent again) and stores the last hourly and daily statistics.
async fn finish(
    app: &App,
    (stop_flusher, flusher): (
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    ),
) {
    if tokio::time::timeout(SHUTDOWN_WRITER_FLUSH, app.pipeline.flush_writer())
        .await
        .is_err()
    {
        tracing::warn!("the message writer did not finish within the shutdown limit");
    }
    if let Some(cluster) = app.hub.cluster() {
        cluster.leave().await;
    }
    stop_flusher.cancel();
    let _ = flusher.await;
    if let Err(err) = app.metrics.flush_stats(&app.db).await {
        tracing::warn!(error = %err, "could not store the last hourly and daily statistics");
    }
}

/// Every route on the port: the gRPC services (`health` holds the gRPC health service) behind
/// tonic-web and the middlewares around it, then the plain HTTP routes and the fallback.
fn routes(app: &Arc<App>, health: Routes) -> anyhow::Result<Routes> {
    let chat = ChatServiceServer::new(ChatApi::new(app.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let presence = PresenceServiceServer::new(PresenceApi::new(app.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let metrics_service = MetricsServiceServer::new(MetricsApi::new(app.clone()))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let grpc = health
        .add_service(chat)
        .add_service(presence)
        .add_service(metrics_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    // tonic-web answers plain HTTP/1.1 requests with 400, so it wraps the gRPC routes only.
    // Framing is checked and error statuses are counted inside it (plain gRPC there), the
    // transport is noted outside it (before it turns grpc-web into gRPC), and each call runs in a
    // span.
    let unary_methods = framing::UnaryMethods::from_descriptor_sets(&[
        proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])?;
    let grpc = grpc
        .into_axum_router()
        .layer(axum::middleware::map_request_with_state(
            unary_methods,
            framing::check_framing,
        ))
        .layer(axum::middleware::map_response_with_state(
            app.metrics.clone(),
            metrics::count_error_statuses,
        ))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(
            tower_http::trace::TraceLayer::new_for_grpc()
                .make_span_with(api::rpc_span)
                // Failures are counted in the metrics; the database errors behind INTERNAL are
                // logged where they happen. A warning for every stream ended at shutdown is noise.
                .on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ),
        )
        .layer(axum::middleware::map_request(metrics::tag_transport));
    let routes = grpc
        .merge(http::router(app.clone()))
        .fallback(http::fallback(app.config.web_dir.clone()));
    Ok(Routes::from(routes))
}

/// The connections the server serves, from those accepted (decrypted first under TLS): each must
/// show its protocol within `handshake_timeout` (under TLS the deadline watches the decrypted
/// bytes; the TLS handshake has its own) and is counted open once it is established.
fn established<IO>(
    accepted: impl Stream<Item = std::io::Result<IO>>,
    handshake_timeout: Duration,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = std::io::Result<metrics::CountedConnection<handshake::HandshakeDeadline<IO>>>>
{
    metrics::count_connections(
        handshake::with_deadline(accepted, handshake_timeout),
        metrics,
    )
}

/// Reflection over the API, health, and the google.rpc error details (so grpcurl can show a
/// BadRequest or RetryInfo).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// The names the gRPC health service reports on: the whole server ("") and each service.
const HEALTH_SERVICES: [&str; 4] = [
    "",
    "fastchat.v1.ChatService",
    "fastchat.v1.PresenceService",
    "fastchat.v1.MetricsService",
];

/// Reports SERVING only while the database answers, until shutdown.
async fn watch_database(app: Arc<App>, health: HealthReporter) {
    let mut last = None;
    while !app.hub.is_shutting_down() {
        let status = match app.db.ping().await {
            Ok(()) => ServingStatus::Serving,
            Err(err) => {
                tracing::warn!(error = %err, "database ping failed");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            for service in HEALTH_SERVICES {
                health.set_service_status(service, status).await;
            }
            last = Some(status);
        }
        tokio::time::sleep(HEALTH_CHECK_INTERVAL).await;
    }
}

/// At shutdown: tells health watchers NOT_SERVING, then ends their streams (tonic-health ends a
/// Watch stream only when its status is cleared), so they do not hold the server open.
async fn end_health_watches(mut health: HealthReporter) {
    for service in HEALTH_SERVICES.into_iter().chain([cluster::HEALTH_SERVICE]) {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
        health.clear_service_status(service).await;
    }
}

/// Drops the rate-limit buckets of users who have been quiet, until the server is gone.
async fn forget_idle_limits(app: std::sync::Weak<App>) {
    loop {
        tokio::time::sleep(FORGET_IDLE_LIMITS_INTERVAL).await;
        let Some(app) = app.upgrade() else { return };
        app.limits.forget_idle();
    }
}

/// The statuses for calls the tower layers refuse: shed calls get UNAVAILABLE (so clients back
/// off and retry) and slow ones DEADLINE_EXCEEDED, where tonic's own layers would say
/// RESOURCE_EXHAUSTED and CANCELLED; a call past its address's cap gets RESOURCE_EXHAUSTED (the
/// client's own doing). They are counted here: these refusals never reach the middleware that
/// counts the services' statuses.
fn overload_status(err: BoxError, metrics: &Metrics) -> BoxError {
    let status = if let Some(busy) = err.downcast_ref::<concurrency::AddressBusy>() {
        Status::resource_exhausted(format!("{busy}; retry with backoff"))
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        Status::unavailable("the server is busy with too many calls at once; retry with backoff")
    } else if err.is::<tower::timeout::error::Elapsed>() {
        Status::deadline_exceeded("the call took longer than the server's request timeout")
    } else {
        return err;
    };
    metrics.error(error::code_name(status.code()));
    Box::new(status)
}

/// The origins browsers may call from: the configured list, else this server's own origin
/// (reached as localhost, 127.0.0.1 or the address it listens on) and the Vite dev server.
fn allowed_origins(config: &Config, local_addr: SocketAddr) -> Vec<String> {
    if !config.cors_origins.is_empty() {
        return config.cors_origins.clone();
    }
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let port = local_addr.port();
    let mut origins = vec![
        format!("{scheme}://localhost:{port}"),
        format!("{scheme}://127.0.0.1:{port}"),
        format!("http://localhost:{DEV_SERVER_PORT}"),
        format!("http://127.0.0.1:{DEV_SERVER_PORT}"),
    ];
    let ip = local_addr.ip();
    if !ip.is_loopback() && !ip.is_unspecified() {
        origins.push(format!("{scheme}://{local_addr}"));
    }
    origins
}

/// CORS for grpc-web from the allowed origins.
fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header("content-type"),
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
            header("authorization"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(24 * 3600))
}
