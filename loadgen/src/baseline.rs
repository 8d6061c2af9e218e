//! `baseline`: a plain TCP echo on loopback, in this process, with the same message sizes: each
//! connection writes a message and waits for it to come back, as fast as it can. What the
//! machine's loopback can do at all, so the server's figures can be given as ratios to it.

use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};

use crate::{
    Common,
    stats::{Latency, histogram, record},
};

/// The `baseline` scenario's settings.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Echo connections, each sending its next message when the last one came back.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    connections: u32,
    /// Bytes per message.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    message_bytes: u32,
}

/// What the echo measured.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// Echo connections.
    pub connections: u32,
    /// Bytes per message.
    pub message_bytes: u32,
    /// How long it ran.
    pub secs: f64,
    /// Messages that came back.
    pub round_trips: u64,
    /// The same per second.
    pub round_trips_per_sec: f64,
    /// From writing a message to reading it back.
    pub round_trip_latency: Latency,
}

/// What `baseline` reports.
#[derive(Debug, Serialize)]
struct BaselineReport {
    /// "baseline".
    scenario: &'static str,
    /// The measurement.
    #[serde(flatten)]
    baseline: Baseline,
}

/// Runs `baseline`.
pub async fn run(common: &Common, args: &BaselineArgs) -> anyhow::Result<impl Serialize> {
    let baseline = measure(args.connections, args.message_bytes, common.duration()).await?;
    Ok(BaselineReport {
        scenario: "baseline",
        baseline,
    })
}

/// Echoes `message_bytes`-byte messages over `connections` loopback connections for `duration`.
pub async fn measure(
    connections: u32,
    message_bytes: u32,
    duration: Duration,
) -> anyhow::Result<Baseline> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let mut echoes = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            echoes.spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut reader, mut writer) = stream.into_split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });

    let started = Instant::now();
    let deadline = started + duration;
    let mut clients = JoinSet::new();
    for _ in 0..connections {
        clients.spawn(async move {
            let mut stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let message = vec![b'x'; message_bytes as usize];
            let mut back = vec![0; message_bytes as usize];
            let mut latency = histogram();
            while Instant::now() < deadline {
                let sent = Instant::now();
                stream.write_all(&message).await?;
                stream.read_exact(&mut back).await?;
                record(&mut latency, sent.elapsed());
            }
            anyhow::Ok(latency)
        });
    }
    let mut latency = histogram();
    while let Some(joined) = clients.join_next().await {
        latency.add(joined??)?;
    }
    let secs = started.elapsed().as_secs_f64();
    echo.abort();
    Ok(Baseline {
        connections,
        message_bytes,
        secs,
        round_trips: latency.len(),
        round_trips_per_sec: latency.len() as f64 / secs,
        round_trip_latency: Latency::of(&latency),
    })
}
