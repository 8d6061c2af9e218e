//! `connect`: N users connect at once, each with a session that receives presence; reports how
//! long until each is welcomed and has its presence snapshot, and the server's CPU meanwhile.

use clap::Args;
use fastchat::proto::Hello;
use serde::Serialize;

use crate::{
    Common, Transport,
    client::{self, Links, Opening},
    stats::{CpuUse, Errors, Latency, ServerProcess, histogram, record},
};

/// The `connect` scenario's settings.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Users connecting at once, each a new user with one session.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sessions: u32,
}

/// What `connect` measured.
#[derive(Debug, Serialize)]
struct ConnectReport {
    /// "connect".
    scenario: &'static str,
    /// gRPC or grpc-web.
    transport: Transport,
    /// Users that connected.
    sessions: u32,
    /// Sessions that were welcomed and got their presence snapshot.
    sessions_welcomed: usize,
    /// Sessions that were not.
    sessions_failed: u64,
    /// Why, by code.
    errors: Errors,
    /// Connections the sessions went over.
    connections: usize,
    /// From the start until the last session was welcomed (or failed).
    all_welcomed_secs: f64,
    /// Each session's time from its start to its Welcome.
    welcome_latency: Latency,
    /// Each session's time from its start to its presence snapshot.
    snapshot_latency: Latency,
    /// The server's CPU while the users connected.
    server_cpu: Option<CpuUse>,
}

/// Runs `connect`.
pub async fn run(common: &Common, args: &ConnectArgs) -> anyhow::Result<impl Serialize> {
    let server = ServerProcess::new(common.server_pid)?;
    let count = args.sessions as usize;
    let links = Links::new(common, count)?;
    let cpu_before = server.cpu_secs();
    let opening = Opening {
        wait_snapshot: true,
        keep_events: false,
        timeout: common.timeout(),
    };
    let opened = client::open_all(&links, count, count, opening, |index| Hello {
        display_name: format!("connect-{index}"),
        ..Default::default()
    })
    .await;
    let cpu_after = server.cpu_secs();

    let (mut welcome, mut snapshot) = (histogram(), histogram());
    for (_, session) in &opened.sessions {
        record(&mut welcome, session.welcomed_after);
        if let Some(after) = session.snapshot_after {
            record(&mut snapshot, after);
        }
    }
    Ok(ConnectReport {
        scenario: "connect",
        transport: common.transport,
        sessions: args.sessions,
        sessions_welcomed: opened.sessions.len(),
        sessions_failed: opened.errors.total(),
        errors: opened.errors,
        connections: links.len(),
        all_welcomed_secs: opened.elapsed.as_secs_f64(),
        welcome_latency: Latency::of(&welcome),
        snapshot_latency: Latency::of(&snapshot),
        server_cpu: CpuUse::between(cpu_before, cpu_after, opened.elapsed),
    })
}
