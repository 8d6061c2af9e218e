//! The `fastchat` binary: reads the config, sets up logging, binds the port and serves until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use fastchat::config::{Command, Config};
use tokio::net::{TcpListener, TcpSocket};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log_json {
        logs.json().init();
    } else {
        logs.init();
    }

    match config.command {
        Some(Command::Migrate) => {
            fastchat::open_database(&config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some(Command::Serve) | None => {
            let listener = listen(config.listen, config.listen_backlog)
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            fastchat::run(config, listener, shutdown_signal()).await
        }
    }
}

/// Binds `addr` with room for `backlog` connections waiting to be accepted (tokio's own `bind`
/// leaves 1,024).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
