//! Every setting of the server: a flag, an environment variable and a default each.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgGroup, Parser, Subcommand};
use jsonwebtoken::Algorithm;

/// FastChat: real-time 1:1 chat over gRPC and grpc-web.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
// JWT sign-in takes a shared secret or a public key, never both.
#[command(group(ArgGroup::new("jwt").args(["jwt_secret", "jwt_public_key"])))]
pub struct Config {
    /// What to do; serving is the default.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address of the one port that serves gRPC, grpc-web and HTTP.
    #[arg(long, env = "FASTCHAT_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Connections the kernel may hold waiting to be accepted (capped by net.core.somaxconn).
    /// Thousands of clients arriving at once overflow a small queue, and each one dropped retries
    /// only after 1, 3, 7 s.
    #[arg(long, env = "FASTCHAT_LISTEN_BACKLOG", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub listen_backlog: u32,

    /// Database URL (`postgres://...` or `sqlite://...`); empty means an SQLite file in --data-dir.
    #[arg(long, env = "DATABASE_URL", default_value = "", hide_env_values = true)]
    pub database_url: String,

    /// Directory for the embedded SQLite database; created when missing.
    #[arg(long, env = "FASTCHAT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// This node's id among the nodes sharing the database (default: the host name and a random
    /// suffix). A live node's id is refused to a second one; a restart under the same id takes
    /// over and ends the sessions its earlier run left open.
    #[arg(long, env = "FASTCHAT_NODE_ID", default_value_t = crate::node::default_id(),
          hide_default_value = true)]
    pub node_id: String,

    /// NATS server(s) to exchange events with the other nodes through (`nats://host:4222`, several
    /// separated by commas); set, it turns cluster mode on, which needs PostgreSQL.
    #[arg(long, env = "FASTCHAT_NATS_URL")]
    pub nats_url: Option<String>,

    /// Prefix of every NATS subject this cluster uses, so several clusters (or test runs) can
    /// share one NATS server.
    #[arg(long, env = "FASTCHAT_CLUSTER_NAME", default_value = "fastchat",
          value_parser = cluster_name)]
    pub cluster_name: String,

    /// Longest message text, in characters.
    #[arg(long, env = "FASTCHAT_MAX_MESSAGE_CHARS", default_value_t = 4000,
          value_parser = clap::value_parser!(u32).range(1..=16_000))]
    pub max_message_chars: u32,

    /// Seconds after sending during which its author may edit a message (48 hours by default).
    #[arg(long, env = "FASTCHAT_EDIT_WINDOW_SECS", default_value_t = 172_800,
          value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
    pub edit_window_secs: u32,

    /// Days to keep messages; 0 keeps no history and delivers only to sessions online at the time.
    #[arg(long, env = "FASTCHAT_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(0..=36_500))]
    pub retention_days: u32,

    /// Seconds a stream may take to send its Hello.
    #[arg(long, env = "FASTCHAT_HELLO_TIMEOUT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub hello_timeout_secs: u64,

    /// Seconds of silence after which a stream gets a Heartbeat event.
    #[arg(long, env = "FASTCHAT_HEARTBEAT_INTERVAL_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub heartbeat_interval_secs: u64,

    /// Seconds a Heartbeat RPC keeps a user without a stream ONLINE.
    #[arg(long, env = "FASTCHAT_PRESENCE_TTL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub presence_ttl_secs: u64,

    /// Milliseconds a user whose last session closed stays ONLINE, so a quick reconnect does not flap.
    #[arg(long, env = "FASTCHAT_OFFLINE_GRACE_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub offline_grace_ms: u64,

    /// Milliseconds after the last `is_typing = true` at which the server ends the typing state.
    #[arg(long, env = "FASTCHAT_TYPING_TIMEOUT_MS", default_value_t = 6000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub typing_timeout_ms: u64,

    /// Events a session may have queued before it counts as too slow and is ended. At least 256:
    /// a burst of acks for one stream's sends in flight (64) must always fit.
    #[arg(long, env = "FASTCHAT_SESSION_QUEUE", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(256..=1_000_000))]
    pub session_queue: u64,

    /// Messages a session with receipts (Hello.receipts) may have unacknowledged before the server
    /// waits for a receipt; also how many stored messages a session reads at once. A session holds
    /// at most this many messages in memory (each at most --max-message-chars characters).
    #[arg(long, env = "FASTCHAT_RECEIVE_WINDOW", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub receive_window: u32,

    /// Origins allowed to call from a browser (comma-separated); `*` allows any. Unset: this
    /// server's own origin (localhost and 127.0.0.1 on its port) and the dev server on 5173.
    #[arg(long, env = "FASTCHAT_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Directory of the built web client, served at `/` (`npm run build` in web-client/ makes it).
    #[arg(long, env = "FASTCHAT_WEB_DIR", default_value = "web-client/dist")]
    pub web_dir: PathBuf,

    /// Write logs as JSON lines instead of text.
    #[arg(long, env = "FASTCHAT_LOG_JSON")]
    pub log_json: bool,

    /// Messages a user may send per minute; the allowance refills continuously.
    #[arg(long, env = "FASTCHAT_RATE_MESSAGES_PER_MINUTE", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_messages_per_minute: u32,

    /// Messages a user may send back to back before the per-minute rate applies.
    #[arg(long, env = "FASTCHAT_RATE_MESSAGES_BURST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_messages_burst: u32,

    /// Typing events a user may send per minute (the web client sends at most one per 2 s).
    #[arg(long, env = "FASTCHAT_RATE_TYPING_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_typing_per_minute: u32,

    /// Typing events a user may send back to back.
    #[arg(long, env = "FASTCHAT_RATE_TYPING_BURST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_typing_burst: u32,

    /// Pings (on a Chat stream) and Heartbeat calls a user may make per minute.
    #[arg(long, env = "FASTCHAT_RATE_PINGS_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_pings_per_minute: u32,

    /// Pings and heartbeats a user may send back to back.
    #[arg(long, env = "FASTCHAT_RATE_PINGS_BURST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_pings_burst: u32,

    /// Other calls a user may make per minute: read marks, history, conversations, status.
    #[arg(long, env = "FASTCHAT_RATE_REQUESTS_PER_MINUTE", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_requests_per_minute: u32,

    /// Other calls a user may make back to back.
    #[arg(long, env = "FASTCHAT_RATE_REQUESTS_BURST", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_requests_burst: u32,

    /// New sessions (streams) a user may open per minute, all at once if they like.
    #[arg(long, env = "FASTCHAT_RATE_SESSIONS_PER_MINUTE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_sessions_per_minute: u32,

    /// New sessions one client IP address may open per minute, all users together.
    #[arg(long, env = "FASTCHAT_RATE_SESSIONS_PER_MINUTE_PER_IP", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_sessions_per_minute_per_ip: u32,

    /// New user ids one client IP address may claim per minute (a Hello or Heartbeat without a
    /// token); a refused claim writes nothing. JWT sign-in claims nothing, so this never applies.
    #[arg(long, env = "FASTCHAT_RATE_CLAIMS_PER_MINUTE_PER_IP", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_claims_per_minute_per_ip: u32,

    /// New user ids one client IP address may claim back to back.
    #[arg(long, env = "FASTCHAT_RATE_CLAIMS_BURST_PER_IP", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_claims_burst_per_ip: u32,

    /// Seconds after which a claimed user who never opened a session, never sent nor received a
    /// message, and has not been online since, is deleted; 0 keeps every user. Checked hourly
    /// (or at this interval when it is shorter). JWT users are kept.
    #[arg(long, env = "FASTCHAT_PRUNE_UNUSED_USERS_AFTER_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(0..=315_360_000))]
    pub prune_unused_users_after_secs: u64,

    /// Sessions one user may have open at once.
    #[arg(long, env = "FASTCHAT_MAX_SESSIONS_PER_USER", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_sessions_per_user: u32,

    /// Users in the presence directory page: every session is told about these (plus its own
    /// conversation peers). While no more users are online, every session sees everyone. Each
    /// session keeps a buffer the size of its snapshot (about 80 bytes per listed user).
    #[arg(long, env = "FASTCHAT_PRESENCE_DIRECTORY_SIZE", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub presence_directory_size: u32,

    /// Streams that may watch every user's presence at once (WatchPresence with every_user).
    #[arg(long, env = "FASTCHAT_PRESENCE_WATCH_ALL_LIMIT", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub presence_watch_all_limit: u32,

    /// Sessions (streams) the server holds at once; beyond it new ones get UNAVAILABLE.
    #[arg(long, env = "FASTCHAT_MAX_SESSIONS", default_value_t = 200_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_sessions: u32,

    /// TCP connections the server holds at once; beyond it new ones are closed on accept. Stay
    /// below the process's open-file limit.
    #[arg(long, env = "FASTCHAT_MAX_CONNECTIONS", default_value_t = 16_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_connections: u32,

    /// HTTP/2 streams (calls) one connection may have open at once.
    #[arg(long, env = "FASTCHAT_MAX_STREAMS_PER_CONNECTION", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_streams_per_connection: u32,

    /// Calls the server works on at once (a stream counts until it is open); beyond it calls
    /// are shed with UNAVAILABLE so clients back off.
    #[arg(long, env = "FASTCHAT_MAX_CONCURRENT_REQUESTS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_concurrent_requests: u32,

    /// gRPC calls one client address (an IPv6 host's /64) may have in progress at once, so that
    /// one client cannot take every slot of --max-concurrent-requests; past it calls get
    /// RESOURCE_EXHAUSTED. Raise it behind a proxy, where every client shares its address.
    #[arg(long, env = "FASTCHAT_MAX_CALLS_PER_IP", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_calls_per_ip: u32,

    /// Seconds a call may take to answer (a stream: until it is open) before DEADLINE_EXCEEDED.
    #[arg(long, env = "FASTCHAT_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_secs: u64,

    /// Seconds of silence on an HTTP/2 connection after which the server pings it.
    #[arg(long, env = "FASTCHAT_HTTP2_KEEPALIVE_INTERVAL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http2_keepalive_interval_secs: u64,

    /// Seconds a keepalive ping may go unanswered before the connection counts as dead and is
    /// closed, ending its sessions.
    #[arg(long, env = "FASTCHAT_HTTP2_KEEPALIVE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub http2_keepalive_timeout_secs: u64,

    /// Seconds a new connection has to show its protocol (the HTTP/2 preface, or the start of an
    /// HTTP/1.1 request) before it is closed.
    #[arg(long, env = "FASTCHAT_HANDSHAKE_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub handshake_timeout_secs: u64,

    /// Shared secret (at least 32 bytes) that signs sign-in JWTs (HS256 unless --jwt-algorithm
    /// says otherwise). Turns JWT sign-in on: user ids come from tokens, not from claims.
    #[arg(long, env = "FASTCHAT_JWT_SECRET", hide_env_values = true,
          value_parser = jwt_secret)]
    pub jwt_secret: Option<String>,

    /// PEM file of the public key (RSA or EC) that verifies sign-in JWTs (RS256 or ES256 unless
    /// --jwt-algorithm says otherwise). Turns JWT sign-in on.
    #[arg(long, env = "FASTCHAT_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// The one algorithm sign-in JWTs may use; it must fit the secret or the key.
    #[arg(long, env = "FASTCHAT_JWT_ALGORITHM", requires = "jwt",
          value_parser = jwt_algorithm)]
    pub jwt_algorithm: Option<Algorithm>,

    /// The `iss` every sign-in JWT must carry; not checked when unset.
    #[arg(long, env = "FASTCHAT_JWT_ISSUER", requires = "jwt",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub jwt_issuer: Option<String>,

    /// A value the `aud` of every sign-in JWT must include; not checked when unset.
    #[arg(long, env = "FASTCHAT_JWT_AUDIENCE", requires = "jwt",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub jwt_audience: Option<String>,

    /// PEM certificate chain to serve TLS with (HTTP/2 and HTTP/1.1 over TLS); needs --tls-key.
    #[arg(long, env = "FASTCHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert; needs --tls-cert.
    #[arg(long, env = "FASTCHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Algorithms a sign-in JWT may be configured with: HMAC, RSA and ECDSA.
const JWT_ALGORITHMS: [&str; 11] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384",
];

fn jwt_algorithm(value: &str) -> Result<Algorithm, String> {
    match value.parse() {
        Ok(algorithm) if JWT_ALGORITHMS.contains(&value) => Ok(algorithm),
        _ => Err(format!("must be one of {}", JWT_ALGORITHMS.join(", "))),
    }
}

/// HMAC keys shorter than the hash are guessable (RFC 7518, section 3.2).
fn jwt_secret(value: &str) -> Result<String, String> {
    if value.len() < 32 {
        return Err("must be at least 32 bytes long".into());
    }
    Ok(value.to_owned())
}

/// Commands besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
}

/// A cluster name is one NATS subject token: letters, digits, `-` and `_`.
fn cluster_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err("use 1 to 64 letters, digits, '-' or '_'".into())
    }
}

/// The most different emoji one message's reactions may hold: enough for any real conversation,
/// few enough that a flood of reactions cannot grow a message without bound.
const MAX_REACTION_EMOJI: usize = 20;

impl Config {
    /// The database URL to connect to, with the SQLite default filled in.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            let path = self.data_dir.join("fastchat.db");
            format!("sqlite://{}?mode=rwc", path.display())
        } else {
            self.database_url.clone()
        }
    }

    /// The config of `fastchat` run without flags: environment variables, else defaults.
    pub fn from_env() -> Self {
        Self::parse_from(["fastchat"])
    }

    /// What edits, deletions and reactions are checked against.
    pub fn change_rules(&self) -> crate::db::ChangeRules {
        crate::db::ChangeRules {
            edit_window: chrono::Duration::seconds(i64::from(self.edit_window_secs)),
            max_reaction_emoji: MAX_REACTION_EMOJI,
        }
    }

    /// The limits Welcome tells clients.
    pub fn client_limits(&self) -> crate::proto::Limits {
        crate::proto::Limits {
            max_message_chars: self.max_message_chars,
            edit_window_seconds: self.edit_window_secs,
            max_reaction_emoji: MAX_REACTION_EMOJI as u32,
        }
    }

    pub fn hello_timeout(&self) -> Duration {
        Duration::from_secs(self.hello_timeout_secs)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(self.heartbeat_interval_secs)
    }

    pub fn presence_ttl(&self) -> Duration {
        Duration::from_secs(self.presence_ttl_secs)
    }

    pub fn offline_grace(&self) -> Duration {
        Duration::from_millis(self.offline_grace_ms)
    }

    pub fn typing_timeout(&self) -> Duration {
        Duration::from_millis(self.typing_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn http2_keepalive_interval(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_interval_secs)
    }

    pub fn http2_keepalive_timeout(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_timeout_secs)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// How long claimed users who were never used are kept; None: for good.
    pub fn prune_unused_users_after(&self) -> Option<Duration> {
        let secs = self.prune_unused_users_after_secs;
        (secs > 0).then(|| Duration::from_secs(secs))
    }
}
