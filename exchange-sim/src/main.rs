//! The `exchange-sim` binary: parses flags (each also an environment variable), starts a
//! [`SimServer`], prints `listening on http://IP:PORT` and runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use exchange_sim::{Faults, SimConfig, SimServer};

/// Binance-compatible REST exchange simulator with deterministic synthetic market data.
#[derive(Parser, Debug)]
#[command(name = "exchange-sim", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "EXCHANGE_SIM_LISTEN", default_value = "127.0.0.1:9900")]
    listen: SocketAddr,
    /// Request-weight budget per window.
    #[arg(long, env = "EXCHANGE_SIM_WEIGHT_LIMIT", default_value_t = 6000)]
    weight_limit: u32,
    /// Length of the rate-limit window in milliseconds (rounded up to whole seconds).
    #[arg(long, env = "EXCHANGE_SIM_WEIGHT_WINDOW_MS", default_value_t = 60_000)]
    weight_window_ms: u64,
    /// Requests tolerated while over the budget after a 429 before a 418 ban.
    #[arg(long, env = "EXCHANGE_SIM_STRIKES_BEFORE_BAN", default_value_t = 3)]
    strikes_before_ban: u32,
    /// Ban duration in milliseconds.
    #[arg(long, env = "EXCHANGE_SIM_BAN_MS", default_value_t = 120_000)]
    ban_ms: u64,
    /// Latency added to every REST response, in milliseconds.
    #[arg(long, env = "EXCHANGE_SIM_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Every Nth data request gets HTTP 503 (0 = never).
    #[arg(long, env = "EXCHANGE_SIM_ERROR_5XX_EVERY", default_value_t = 0)]
    error_5xx_every: u32,
    /// Every Nth data request has its connection dropped without a response (0 = never).
    #[arg(long, env = "EXCHANGE_SIM_DROP_EVERY", default_value_t = 0)]
    drop_every: u32,
    /// Mean milliseconds between aggregate trades.
    #[arg(long, env = "EXCHANGE_SIM_AGG_TRADE_SPACING_MS", default_value_t = 250)]
    agg_trade_spacing_ms: i64,
    /// First data time of every symbol, in ms since the epoch (default 2017-08-17T00:00:00Z).
    #[arg(
        long,
        env = "EXCHANGE_SIM_LISTED_AT_MS",
        default_value_t = 1_502_928_000_000
    )]
    listed_at_ms: i64,
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = SimConfig {
        weight_limit: args.weight_limit,
        weight_window: Duration::from_millis(args.weight_window_ms),
        strikes_before_ban: args.strikes_before_ban,
        ban_duration: Duration::from_millis(args.ban_ms),
        agg_trade_spacing_ms: args.agg_trade_spacing_ms,
        listed_at_ms: args.listed_at_ms,
        faults: Faults {
            latency: Duration::from_millis(args.latency_ms),
            error_5xx_every: args.error_5xx_every,
            drop_every: args.drop_every,
            ..Faults::default()
        },
    };
    let server = SimServer::start(cfg, args.listen).await?;
    println!("listening on {}", server.base_url());
    wait_for_signal().await;
    let stats = server.stats();
    server.shutdown().await;
    eprintln!(
        "exchange-sim stopped: {}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
    Ok(())
}
