//! `connect`: N users connect at once, each with a session that receives presence; reports how
//! long until each is welcomed and has its presence snapshot, and the server's CPU meanwhile.
//! The users are new (each claims its id as it connects) or, with `--returning`, users who were
//! claimed before and come back with their tokens, as after a restart or a network outage.

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
    /// Claim the users first (sessions opened and closed, not measured), wait until they are
    /// OFFLINE, then measure them connecting again with their tokens.
    #[arg(long)]
    returning: bool,
    /// With --returning: how long to wait for the users to go OFFLINE (the server's grace
    /// period, 5 s by default, plus a margin).
    #[arg(long, default_value_t = 7)]
    offline_wait_secs: u64,
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
    /// Whether they were returning users (claimed before) rather than new ones.
    returning: bool,
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
    let server = ServerProcess::new(&common.server_pid)?;
    let count = args.sessions as usize;
    let links = Links::new(common, count)?;
    let opening = Opening {
        wait_snapshot: true,
        keep_events: false,
        timeout: common.timeout(),
    };
    let new_user = |index| Hello {
        display_name: format!("connect-{index}"),
        ..Default::default()
    };
    let returning: Vec<Hello> = if args.returning {
        let claimed = client::open_all(
            &links,
            count,
            common.open_concurrency as usize,
            opening,
            new_user,
        )
        .await;
        anyhow::ensure!(
            claimed.errors.total() == 0,
            "claiming the users failed: {:?}",
            claimed.errors
        );
        let hellos = claimed
            .sessions
            .into_iter()
            .map(|(_, session)| Hello {
                user_id: session.user_id,
                token: session.token,
                ..Default::default()
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_secs(args.offline_wait_secs)).await;
        hellos
    } else {
        Vec::new()
    };
    let cpu_before = server.cpu_secs();
    let opened = client::open_all(&links, count, count, opening, |index| {
        returning
            .get(index)
            .cloned()
            .unwrap_or_else(|| new_user(index))
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
        returning: args.returning,
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
