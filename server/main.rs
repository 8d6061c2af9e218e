//! The `fastchat` binary: reads the config, sets up logging, binds the port and serves until
//! SIGINT or SIGTERM.

use anyhow::Context;
use clap::Parser;
use fastchat::config::{Command, Config};
use tokio::net::TcpListener;
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
            let listener = TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            fastchat::run(config, listener, shutdown_signal()).await
        }
    }
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
