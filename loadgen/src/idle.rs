//! `idle`: opens N sessions, holds them for the run's duration while reading what the server
//! sends, and reports the server's resident memory per session.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use clap::Args;
use fastchat::proto::Hello;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{
    Common, Transport,
    client::{self, Links, Opening},
    stats::{CpuUse, Errors, Latency, ServerProcess, histogram, record},
};

/// The `idle` scenario's settings.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Sessions to open, each as a new user.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sessions: u32,
    /// Seconds to wait, once every session is open, before the measured hold, so the server's
    /// CPU figure leaves out the tail of the connecting (write-through, the last presence counts).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    settle_secs: u64,
}

/// What `idle` measured.
#[derive(Debug, Serialize)]
struct IdleReport {
    /// "idle".
    scenario: &'static str,
    /// gRPC or grpc-web.
    transport: Transport,
    /// Sessions asked for.
    sessions: u32,
    /// Sessions that were welcomed.
    sessions_open: usize,
    /// Sessions that were not, for any reason.
    sessions_failed: u64,
    /// Open sessions whose stream ended or failed while held.
    sessions_dropped: u64,
    /// Why sessions failed, by code.
    errors: Errors,
    /// Connections the sessions went over.
    connections: usize,
    /// Sessions per connection.
    streams_per_connection: u32,
    /// From the first attempt until every session was welcomed or had failed.
    connect_all_secs: f64,
    /// Each session's time to its Welcome.
    welcome_latency: Latency,
    /// How long the sessions were held and measured (after the settling time).
    held_secs: u64,
    /// How long the sessions were held before that, unmeasured.
    settle_secs: u64,
    /// The server's resident memory before the first session.
    server_rss_before_bytes: Option<u64>,
    /// The server's resident memory at the end of the hold.
    server_rss_after_bytes: Option<u64>,
    /// The growth divided by the open sessions.
    server_rss_per_session_bytes: Option<f64>,
    /// The server's CPU while the sessions were held (heartbeats and all).
    server_cpu_held: Option<CpuUse>,
}

/// Runs `idle`.
pub async fn run(common: &Common, args: &IdleArgs) -> anyhow::Result<impl Serialize> {
    let server = ServerProcess::new(&common.server_pid)?;
    let count = args.sessions as usize;
    let links = Links::new(common, count)?;
    let rss_before = server.rss_bytes();

    let opening = Opening {
        wait_snapshot: false,
        keep_events: false,
        timeout: common.timeout(),
    };
    let opened = client::open_all(
        &links,
        count,
        common.open_concurrency as usize,
        opening,
        |index| Hello {
            display_name: format!("idle-{index}"),
            ..Default::default()
        },
    )
    .await;
    let mut welcome = histogram();
    for (_, session) in &opened.sessions {
        record(&mut welcome, session.welcomed_after);
    }
    let sessions_open = opened.sessions.len();

    // Hold every session (its events are read and dropped as they come, as a client would read
    // them) and count the streams that end early.
    let stop = CancellationToken::new();
    let dropped = Arc::new(AtomicU64::new(0));
    let mut holders = tokio::task::JoinSet::new();
    for (_, mut session) in opened.sessions {
        let (stop, dropped) = (stop.clone(), dropped.clone());
        holders.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    next = session.events.recv() => {
                        if !matches!(next, Some(Ok(_))) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
            // The session (and its outbox) lives until here.
            drop(session);
        });
    }
    tokio::time::sleep(std::time::Duration::from_secs(args.settle_secs)).await;
    let cpu_before = server.cpu_secs();
    let held = std::time::Instant::now();
    tokio::time::sleep(common.duration()).await;
    let server_cpu_held = CpuUse::between(cpu_before, server.cpu_secs(), held.elapsed());
    let rss_after = server.rss_bytes();
    stop.cancel();
    while holders.join_next().await.is_some() {}

    let sessions_failed = opened.errors.total();
    Ok(IdleReport {
        scenario: "idle",
        transport: common.transport,
        sessions: args.sessions,
        sessions_open,
        sessions_failed,
        sessions_dropped: dropped.load(Ordering::Relaxed),
        errors: opened.errors,
        connections: links.len(),
        streams_per_connection: common.streams_per_connection,
        connect_all_secs: opened.elapsed.as_secs_f64(),
        welcome_latency: Latency::of(&welcome),
        held_secs: common.duration_secs,
        settle_secs: args.settle_secs,
        server_rss_before_bytes: rss_before,
        server_rss_after_bytes: rss_after,
        server_cpu_held,
        server_rss_per_session_bytes: rss_before
            .zip(rss_after)
            .filter(|_| sessions_open > 0)
            .map(|(before, after)| (after as f64 - before as f64) / sessions_open as f64),
    })
}
