//! `fastchat-loadgen`: parses its arguments, runs the scenario and prints the report.

use clap::Parser;
use fastchat_loadgen::{Cli, print_report, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    print_report(&run(&Cli::parse()).await?);
    Ok(())
}
