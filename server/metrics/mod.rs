//! What the server counts, for Prometheus (`GET /metrics`) and MetricsService.
//!
//! One [`Metrics`] per server, shared by [`crate::App`] and the hub, owns its own Prometheus
//! registry, so several servers in one process (the tests) never mix their figures. Next to the
//! Prometheus series it keeps what GetMetrics answers with and Prometheus leaves to queries: peaks,
//! last-minute rates, a p99, rate-limit hits per user, and hourly counts not yet stored.
//!
//! - `connections`: counts TCP connections around the listener's stream.
//! - `grpc`: middleware that tags grpc-web requests and counts error statuses.
//! - `stats`: hourly and daily buckets, stored through the database so they survive restarts.
//! - `window`: counts over the last minute.

mod connections;
mod grpc;
mod stats;
mod window;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram as HdrHistogram;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};

pub use connections::{CountedConnection, count_connections};
pub use grpc::{count_error_statuses, tag_transport};
pub use stats::run_stats_flusher;

use crate::{
    db::{BucketCounts, BucketKind, StoredStatus, ids::UserId},
    proto::GetMetricsResponse,
};
use window::LastMinute;

/// Upper bounds of the processing-time buckets, in seconds.
const PROCESSING_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the delivery-latency buckets, in seconds: from a live session's few
/// milliseconds to a recipient who comes back after a day.
const DELIVERY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
];
/// Upper bounds of the database query-time buckets, in seconds.
const QUERY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Largest processing time the p99 histogram tells apart (longer ones count as this), in µs.
const PROCESSING_MAX_MICROS: u64 = 60_000_000;

/// How a request reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Native gRPC over HTTP/2.
    Grpc,
    /// grpc-web (browsers), over HTTP/1.1 or HTTP/2.
    GrpcWeb,
}

impl Transport {
    /// The `transport` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
        }
    }

    /// The transport [`tag_transport`] noted on a request (plain gRPC when untagged).
    pub fn of(extensions: &http::Extensions) -> Self {
        extensions.get::<Self>().copied().unwrap_or(Self::Grpc)
    }
}

/// What a client message asked for, as `fastchat_messages_total{kind}` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A chat message (`send_message` event or SendMessage call).
    SendMessage,
    /// Typing started or stopped (`typing` event or SetTyping call).
    Typing,
    /// A read mark (`mark_read` event or MarkRead call).
    MarkRead,
    /// A ping on a Chat stream.
    Ping,
    /// ONLINE or AWAY (`presence` event, Presence stream update or SetStatus call).
    Presence,
    /// A Heartbeat call.
    Heartbeat,
    /// A delivery receipt (`received` event or Acknowledge call).
    Received,
    /// An EditMessage call.
    Edit,
    /// A DeleteMessage call.
    Delete,
    /// A React call.
    React,
    /// A SearchMessages or SearchUsers call.
    Search,
    /// An event that is empty, does not decode, or is a second hello.
    Invalid,
}

impl MessageKind {
    /// Every kind.
    const ALL: [Self; 12] = [
        Self::SendMessage,
        Self::Typing,
        Self::MarkRead,
        Self::Ping,
        Self::Presence,
        Self::Heartbeat,
        Self::Received,
        Self::Edit,
        Self::Delete,
        Self::React,
        Self::Search,
        Self::Invalid,
    ];

    /// The `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendMessage => "send_message",
            Self::Typing => "typing",
            Self::MarkRead => "mark_read",
            Self::Ping => "ping",
            Self::Presence => "presence",
            Self::Heartbeat => "heartbeat",
            Self::Received => "received",
            Self::Edit => "edit",
            Self::Delete => "delete",
            Self::React => "react",
            Self::Search => "search",
            Self::Invalid => "invalid",
        }
    }
}

/// The server's figures. Recording is cheap: an atomic add, plus a short lock for the few
/// figures that change together.
#[derive(Debug)]
pub struct Metrics {
    /// Every series below; rendered at `GET /metrics`.
    registry: Registry,
    /// When the server started, for the uptime.
    started: Instant,
    /// `fastchat_connections_total`: TCP connections accepted.
    connections_total: IntCounter,
    /// `fastchat_connections_active`: TCP connections open now.
    connections_active: IntGauge,
    /// `fastchat_connections_peak`: most TCP connections open at once.
    connections_peak: IntGauge,
    /// `fastchat_sessions_total{transport}`: sessions opened.
    sessions_total: IntCounterVec,
    /// `fastchat_sessions_active{transport}`: sessions open now.
    sessions_active: IntGaugeVec,
    /// `fastchat_sessions_peak`: most sessions open at once.
    sessions_peak: IntGauge,
    /// `fastchat_messages_total{kind}`: client messages received.
    messages: IntCounterVec,
    /// `fastchat_message_processing_seconds`: receiving a chat message to sending its ack.
    processing: Histogram,
    /// `fastchat_delivery_latency_seconds`: a message's arrival (its `sent_at`, stamped before it
    /// is queued for storage) to its recipient's first session taking it.
    delivery_latency: Histogram,
    /// `fastchat_errors_total{code}`: error statuses and error events.
    errors: IntCounterVec,
    /// `fastchat_rate_limited_total{kind}`: requests the rate limiter refused.
    rate_limited: IntCounterVec,
    /// `fastchat_db_query_seconds{statement}`: database query time.
    db_queries: HistogramVec,
    /// `fastchat_presence_changes_total{status}`: presence changes published.
    presence_changes: IntCounterVec,
    /// `fastchat_dead_nodes_cleaned_total`: nodes this one found silent and cleaned up after.
    dead_nodes_cleaned: IntCounter,
    /// `fastchat_cluster_link_up`: 1 while this node's NATS link is up (cluster mode).
    cluster_link_up: IntGauge,
    /// What changes together. A std mutex: held for a few map and counter updates, never across
    /// an `.await`.
    live: Mutex<Live>,
    /// Held while buckets are stored or read, so a reader never sees counts both pending and
    /// stored (or neither).
    flushing: tokio::sync::Mutex<()>,
}

/// Figures that change together, under [`Metrics::live`].
#[derive(Debug)]
struct Live {
    /// TCP connections open now, and the most at once.
    connections: Peaked,
    /// Sessions open now, and the most at once.
    sessions: Peaked,
    /// Client messages received in the last minute.
    messages_last_minute: LastMinute,
    /// TCP connections accepted in the last minute.
    connections_last_minute: LastMinute,
    /// Processing times of chat messages in microseconds, for the mean and the p99.
    processing_micros: HdrHistogram<u64>,
    /// Rate-limit hits per user since the server started.
    rate_limited_users: HashMap<UserId, u64>,
    /// Counts per hour (keyed by the hour's start) not yet stored in `stats_buckets`.
    pending: BTreeMap<DateTime<Utc>, BucketCounts>,
}

/// A number of open things and the most there have been at once.
#[derive(Debug, Default)]
struct Peaked {
    /// Open now.
    open: i64,
    /// Most open at once.
    peak: i64,
}

impl Peaked {
    /// One more is open; returns the new peak.
    fn opened(&mut self) -> i64 {
        self.open += 1;
        self.peak = self.peak.max(self.open);
        self.peak
    }
}

/// Decrements the open connections when the connection is dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    /// The figures to update.
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connections_active.dec();
        self.metrics.live().connections.open -= 1;
    }
}

impl Metrics {
    /// Fresh figures with every series registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help));
        let gauge = |name: &str, help: &str| register(&registry, IntGauge::new(name, help));
        let counters = |name: &str, help: &str, label: &str| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), &[label]),
            )
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            register(&registry, Histogram::with_opts(opts))
        };
        Self {
            connections_total: counter(
                "fastchat_connections_total",
                "TCP connections accepted.",
            ),
            connections_active: gauge("fastchat_connections_active", "TCP connections open now."),
            connections_peak: gauge(
                "fastchat_connections_peak",
                "Most TCP connections open at once since the server started.",
            ),
            sessions_total: counters(
                "fastchat_sessions_total",
                "Sessions (Chat, Subscribe, Presence, WatchPresence streams) opened, by transport.",
                "transport",
            ),
            sessions_active: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "fastchat_sessions_active",
                        "Sessions open now, by transport.",
                    ),
                    &["transport"],
                ),
            ),
            sessions_peak: gauge(
                "fastchat_sessions_peak",
                "Most sessions open at once since the server started.",
            ),
            messages: counters(
                "fastchat_messages_total",
                "Client messages received (stream events and the unary calls like them), by kind.",
                "kind",
            ),
            processing: histogram(
                "fastchat_message_processing_seconds",
                "Time from receiving a chat message to sending its ack after the commit.",
                PROCESSING_BUCKETS,
            ),
            delivery_latency: histogram(
                "fastchat_delivery_latency_seconds",
                "Time from a message's arrival (stamped before it is queued for storage) to the first session of its recipient taking it (acknowledging it, with receipts).",
                DELIVERY_BUCKETS,
            ),
            errors: counters(
                "fastchat_errors_total",
                "Calls and streams ended with an error status, and error events sent, by code.",
                "code",
            ),
            rate_limited: counters(
                "fastchat_rate_limited_total",
                "Requests refused by the rate limiter, by kind.",
                "kind",
            ),
            db_queries: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "fastchat_db_query_seconds",
                        "Database query time, by statement (select, insert, update, delete, other).",
                    )
                    .buckets(QUERY_BUCKETS.to_vec()),
                    &["statement"],
                ),
            ),
            presence_changes: counters(
                "fastchat_presence_changes_total",
                "Presence changes published, by the new status.",
                "status",
            ),
            dead_nodes_cleaned: counter(
                "fastchat_dead_nodes_cleaned_total",
                "Nodes sharing the database that this node found silent past the dead-node timeout and cleaned up after (their sessions ended, their users' presence rows removed).",
            ),
            cluster_link_up: gauge(
                "fastchat_cluster_link_up",
                "1 while this node's link to NATS is up in cluster mode; 0 while it is down (users on other nodes then miss this node's events until it is back) or outside cluster mode.",
            ),
            live: Mutex::new(Live {
                connections: Peaked::default(),
                sessions: Peaked::default(),
                messages_last_minute: LastMinute::default(),
                connections_last_minute: LastMinute::default(),
                processing_micros: HdrHistogram::new_with_bounds(1, PROCESSING_MAX_MICROS, 2)
                    .expect("valid bounds"),
                rate_limited_users: HashMap::new(),
                pending: BTreeMap::new(),
            }),
            flushing: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            registry,
        }
        .with_known_labels()
    }

    /// Creates the series of every known label value at zero, so dashboards see them before
    /// the first event.
    fn with_known_labels(self) -> Self {
        for transport in [Transport::Grpc, Transport::GrpcWeb] {
            self.sessions_total.with_label_values(&[transport.as_str()]);
            self.sessions_active
                .with_label_values(&[transport.as_str()]);
        }
        for kind in MessageKind::ALL {
            self.messages.with_label_values(&[kind.as_str()]);
        }
        for status in [
            StoredStatus::Online,
            StoredStatus::Away,
            StoredStatus::Offline,
        ] {
            self.presence_changes.with_label_values(&[status.as_str()]);
        }
        self
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        // The figures stay usable after a panic elsewhere; at worst one update is lost.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A TCP connection was accepted; it counts as open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_total.inc();
        self.connections_active.inc();
        let now = Utc::now();
        let mut live = self.live();
        self.connections_peak.set(live.connections.opened());
        live.connections_last_minute.add(now);
        live.pending_at(now).connections += 1;
        ConnectionGuard {
            metrics: self.clone(),
        }
    }

    /// A session (stream) opened.
    pub fn session_opened(&self, transport: Transport) {
        self.sessions_total
            .with_label_values(&[transport.as_str()])
            .inc();
        self.sessions_active
            .with_label_values(&[transport.as_str()])
            .inc();
        self.sessions_peak.set(self.live().sessions.opened());
    }

    /// A session opened with `transport` ended.
    pub fn session_closed(&self, transport: Transport) {
        self.sessions_active
            .with_label_values(&[transport.as_str()])
            .dec();
        self.live().sessions.open -= 1;
    }

    /// A client message of `kind` arrived.
    pub fn message(&self, kind: MessageKind) {
        self.messages.with_label_values(&[kind.as_str()]).inc();
        let now = Utc::now();
        let mut live = self.live();
        live.messages_last_minute.add(now);
        live.pending_at(now).messages += 1;
    }

    /// A chat message was acked (or refused) `elapsed` after it was received.
    pub fn message_processed(&self, elapsed: Duration) {
        self.processing.observe(elapsed.as_secs_f64());
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.live()
            .processing_micros
            .saturating_record(micros.max(1));
    }

    /// A recipient session took a message `latency` after it arrived.
    pub fn delivered(&self, latency: Duration) {
        self.delivery_latency.observe(latency.as_secs_f64());
    }

    /// A call or stream ended with the error `code`, or a stream got an error event with it.
    pub fn error(&self, code: &str) {
        self.errors.with_label_values(&[code]).inc();
        self.live().pending_at(Utc::now()).errors += 1;
    }

    /// This node cleaned up after a dead one.
    pub fn dead_node_cleaned(&self) {
        self.dead_nodes_cleaned.inc();
    }

    /// This node's NATS link went up or down.
    pub fn cluster_link(&self, up: bool) {
        self.cluster_link_up.set(i64::from(up));
    }

    /// The rate limiter refused a request of `kind` from `user` (None: an anonymous watcher).
    pub fn rate_limited(&self, kind: &'static str, user: Option<UserId>) {
        self.rate_limited.with_label_values(&[kind]).inc();
        if let Some(user) = user {
            *self.live().rate_limited_users.entry(user).or_default() += 1;
        }
    }

    /// How often the rate limiter refused `user` since the server started.
    pub fn rate_limit_hits_of(&self, user: UserId) -> u64 {
        self.live()
            .rate_limited_users
            .get(&user)
            .copied()
            .unwrap_or(0)
    }

    /// A user's presence changed to `status`.
    pub fn presence_changed(&self, status: StoredStatus) {
        self.presence_changes
            .with_label_values(&[status.as_str()])
            .inc();
    }

    /// What [`crate::db::Database::observe_queries`] calls after each query.
    pub fn query_observer(
        self: &Arc<Self>,
    ) -> impl Fn(&sea_orm::metric::Info<'_>) + Send + Sync + 'static {
        let metrics = self.clone();
        move |info| {
            metrics
                .db_queries
                .with_label_values(&[statement_kind(&info.statement.sql)])
                .observe(info.elapsed.as_secs_f64());
        }
    }

    /// Every series in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        // Encoding into a Vec fails only for malformed metric names, which `new` does not make.
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(error = %err, "could not render metrics");
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The live figures GetMetrics answers with.
    pub fn snapshot(&self) -> GetMetricsResponse {
        let by_label = |family: &IntCounterVec| -> HashMap<String, u64> {
            family
                .collect()
                .iter()
                .flat_map(|family| family.get_metric())
                .map(|metric| {
                    let label = metric
                        .get_label()
                        .first()
                        .map(|pair| pair.value().to_owned())
                        .unwrap_or_default();
                    (label, metric.get_counter().get_value() as u64)
                })
                .collect()
        };
        let messages_by_kind = by_label(&self.messages);
        let errors_by_code = by_label(&self.errors);
        let rate_limit_hits_by_kind = by_label(&self.rate_limited);
        let now = Utc::now();
        let live = self.live();
        let processing = &live.processing_micros;
        let (avg_processing_ms, p99_processing_ms) = if processing.is_empty() {
            (0.0, 0.0)
        } else {
            (
                processing.mean() / 1000.0,
                processing.value_at_quantile(0.99) as f64 / 1000.0,
            )
        };
        GetMetricsResponse {
            uptime_seconds: self.started.elapsed().as_secs(),
            connections_total: self.connections_total.get(),
            connections_active: live.connections.open.max(0) as u64,
            connections_peak: live.connections.peak as u64,
            sessions_total: by_label(&self.sessions_total).values().sum(),
            sessions_active: live.sessions.open.max(0) as u64,
            sessions_peak: live.sessions.peak as u64,
            messages_total: messages_by_kind.values().sum(),
            messages_by_kind,
            avg_processing_ms,
            p99_processing_ms,
            errors_total: errors_by_code.values().sum(),
            errors_by_code,
            rate_limit_hits_total: rate_limit_hits_by_kind.values().sum(),
            rate_limit_hits_by_kind,
            messages_per_second: live.messages_last_minute.count(now) as f64 / 60.0,
            connections_per_minute: live.connections_last_minute.count(now),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    /// The not-yet-stored counts of the hour holding `at`.
    fn pending_at(&mut self, at: DateTime<Utc>) -> &mut BucketCounts {
        self.pending
            .entry(BucketKind::Hour.start_of(at))
            .or_default()
    }
}

/// Registers a new series; its name is a literal of this module, unique and well formed.
fn register<T: Collector + Clone + 'static>(registry: &Registry, made: prometheus::Result<T>) -> T {
    let series = made.expect("valid metric definition");
    registry
        .register(Box::new(series.clone()))
        .expect("metric names are unique");
    series
}

/// The `statement` label of a query: its first SQL keyword.
fn statement_kind(sql: &str) -> &'static str {
    let keyword = sql.split_whitespace().next().unwrap_or_default();
    ["select", "insert", "update", "delete"]
        .into_iter()
        .find(|kind| keyword.eq_ignore_ascii_case(kind))
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Action;

    /// Hits count by kind for Prometheus and GetMetrics, and per user for GetUserMetrics;
    /// anonymous ones by kind only.
    #[test]
    fn rate_limit_hits_count_by_kind_and_by_user() {
        let metrics = Metrics::new();
        let (ann, ben) = (UserId::new_random(), UserId::new_random());
        // The names the limits use.
        let (message, typing) = (Action::Message.name(), Action::Typing.name());
        metrics.rate_limited(message, Some(ann));
        metrics.rate_limited(message, Some(ann));
        metrics.rate_limited(typing, Some(ben));
        metrics.rate_limited(typing, None);

        let text = metrics.render();
        assert!(
            text.contains("fastchat_rate_limited_total{kind=\"message\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("fastchat_rate_limited_total{kind=\"typing\"} 2\n"),
            "{text}"
        );
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.rate_limit_hits_total, 4);
        assert_eq!(snapshot.rate_limit_hits_by_kind["message"], 2);
        assert_eq!(metrics.rate_limit_hits_of(ann), 2);
        assert_eq!(metrics.rate_limit_hits_of(ben), 1);
        assert_eq!(metrics.rate_limit_hits_of(UserId::new_random()), 0);
    }

    #[test]
    fn statements_are_labelled_by_their_first_keyword() {
        assert_eq!(statement_kind("SELECT 1"), "select");
        assert_eq!(statement_kind("  insert INTO t"), "insert");
        assert_eq!(statement_kind("UPDATE t SET"), "update");
        assert_eq!(statement_kind("DELETE FROM t"), "delete");
        assert_eq!(statement_kind("WITH x AS (SELECT 1) SELECT"), "other");
    }
}
