//! `fastchat-loadgen`: drives a running FastChat server over real connections and reports what
//! it measured, as a human summary and then one JSON line (the last line of stdout). It takes
//! the generated proto types from the `fastchat` library. The binary parses its arguments into a
//! [`Cli`], calls [`run`] and prints the report; `tests/loadgen.rs` calls [`run`] itself.
//!
//! - `client`: connections (bound to chosen source addresses, one or many sessions each) and
//!   sessions over native gRPC (`Chat`) or grpc-web (`Subscribe` plus `SendMessage`).
//! - `receipts`: a session's delivery receipts, coalesced as the web client sends them.
//! - `stats`: latency summaries, error tallies, and the server's memory and CPU from /proc.
//! - One file per scenario: `idle`, `connect`, `chat`, `presence`, `baseline`.
//!
//! Every phase has a deadline, so a run stops by itself even when the server stops answering.

mod baseline;
mod chat;
mod client;
mod connect;
mod idle;
mod presence;
mod receipts;
mod stats;

use std::{net::IpAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

pub use stats::print_report;

/// Load generator for FastChat.
#[derive(Debug, Parser)]
#[command(name = "fastchat-loadgen", version)]
pub struct Cli {
    /// Settings every scenario shares.
    #[command(flatten)]
    common: Common,
    /// The scenario to run.
    #[command(subcommand)]
    scenario: Scenario,
}

/// Settings every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The server's URL; several, comma-separated, spread the sessions over the nodes of a
    /// cluster: session `i` goes to the `i % n`th, so the two users of a chat pair are on
    /// different nodes.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8000"
    )]
    pub server: Vec<String>,
    /// The server's process id, to read its memory and CPU from /proc (same machine only);
    /// several, comma-separated, are added up (the nodes of a cluster).
    #[arg(long, global = true, value_delimiter = ',')]
    pub server_pid: Vec<i32>,
    /// How long the measured phase lasts (holding sessions, sending messages, joining users).
    #[arg(long, global = true, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration_secs: u64,
    /// How sessions reach the server: native gRPC or grpc-web.
    #[arg(long, global = true, value_enum, default_value_t = Transport::Grpc)]
    pub transport: Transport,
    /// Local addresses client sockets are bound to, in turn (e.g. 127.0.0.1,127.0.0.2), so more
    /// connections fit than one source address has ports for.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1"
    )]
    pub source_ips: Vec<IpAddr>,
    /// Sessions multiplexed as HTTP/2 streams over one connection (1: a connection each, as
    /// separate devices; more: as an L7 proxy in front of the server would). grpc-web with 1
    /// speaks HTTP/1.1, as browsers do over plain http; with more, HTTP/2.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub streams_per_connection: u32,
    /// Sessions being opened at once, at most (`connect` opens them all at once regardless).
    #[arg(long, global = true, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub open_concurrency: u32,
    /// How long any one step (opening a session, an ack, a delivery) may take before it counts
    /// as failed.
    #[arg(long, global = true, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub timeout_secs: u64,
}

impl Common {
    /// The measured phase's length.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    /// How long one step may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// How sessions reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Native gRPC: one bidirectional `Chat` stream per session.
    Grpc,
    /// grpc-web: a `Subscribe` stream per session, messages sent with unary `SendMessage`.
    GrpcWeb,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
enum Scenario {
    /// Opens sessions, holds them, and reports the server's memory per session.
    Idle(idle::IdleArgs),
    /// Connects users all at once and reports how long until each is welcomed.
    Connect(connect::ConnectArgs),
    /// Pairs of users message each other; reports throughput, latency, loss and duplicates.
    Chat(chat::ChatArgs),
    /// Users join while watchers look on; reports how long each change takes to reach them.
    Presence(presence::PresenceArgs),
    /// A plain TCP echo on loopback with the same message sizes: what the machine can do at all.
    Baseline(baseline::BaselineArgs),
}

/// Runs the scenario `cli` names and returns its report, as [`print_report`] prints it.
pub async fn run(cli: &Cli) -> anyhow::Result<Value> {
    let common = &cli.common;
    Ok(match &cli.scenario {
        Scenario::Idle(args) => serde_json::to_value(idle::run(common, args).await?)?,
        Scenario::Connect(args) => serde_json::to_value(connect::run(common, args).await?)?,
        Scenario::Chat(args) => serde_json::to_value(chat::run(common, args).await?)?,
        Scenario::Presence(args) => serde_json::to_value(presence::run(common, args).await?)?,
        Scenario::Baseline(args) => serde_json::to_value(baseline::run(common, args).await?)?,
    })
}
