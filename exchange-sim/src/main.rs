//! The `exchange-sim` binary: parses flags (each also an environment variable), starts a
//! [`SimServer`], prints `listening on http://IP:PORT` (then `websocket on ws://IP:PORT`, the
//! same port, and the USD-M and COIN-M futures bases `usdm on …/usdm`, `coinm on …/coinm`) and
//! runs until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use exchange_sim::{ArchiveFaults, Faults, SimConfig, SimServer, WsFaults};

/// Binance-compatible REST and WebSocket exchange simulator with deterministic synthetic
/// market data.
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
    /// WebSocket: milliseconds between the server's pings.
    #[arg(
        long,
        env = "EXCHANGE_SIM_WS_PING_INTERVAL_MS",
        default_value_t = 20_000
    )]
    ws_ping_interval_ms: u64,
    /// WebSocket: a ping unanswered this many milliseconds closes the connection.
    #[arg(
        long,
        env = "EXCHANGE_SIM_WS_PONG_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    ws_pong_timeout_ms: u64,
    /// WebSocket: connections are closed this many milliseconds after they opened.
    #[arg(
        long,
        env = "EXCHANGE_SIM_WS_MAX_LIFETIME_MS",
        default_value_t = 86_400_000
    )]
    ws_max_lifetime_ms: u64,
    /// WebSocket: milliseconds between a serverShutdown event and the close.
    #[arg(
        long,
        env = "EXCHANGE_SIM_WS_SHUTDOWN_GRACE_MS",
        default_value_t = 1_000
    )]
    ws_shutdown_grace_ms: u64,
    /// WebSocket: drop every connection abruptly this many milliseconds after it opened
    /// (0 = never).
    #[arg(long, env = "EXCHANGE_SIM_WS_DROP_EVERY_MS", default_value_t = 0)]
    ws_drop_every_ms: u64,
    /// WebSocket: every connection goes silent this many milliseconds after it opened
    /// (0 = never).
    #[arg(long, env = "EXCHANGE_SIM_WS_STALL_AFTER_MS", default_value_t = 0)]
    ws_stall_after_ms: u64,
    /// WebSocket: every Nth diff-depth event of a stream is swallowed (0 = never).
    #[arg(long, env = "EXCHANGE_SIM_WS_DEPTH_GAP_EVERY", default_value_t = 0)]
    ws_depth_gap_every: u32,
    /// WebSocket: incoming messages per second above which a connection is closed (0 = no
    /// limit).
    #[arg(
        long,
        env = "EXCHANGE_SIM_WS_MAX_INCOMING_PER_SEC",
        default_value_t = 5
    )]
    ws_max_incoming_per_sec: u32,
    /// WebSocket: streams per connection.
    #[arg(long, env = "EXCHANGE_SIM_WS_MAX_STREAMS", default_value_t = 1024)]
    ws_max_streams: usize,
    /// WebSocket: connections per IP per window (0 = no limit); more get HTTP 429.
    #[arg(long, env = "EXCHANGE_SIM_WS_MAX_CONNECTIONS", default_value_t = 300)]
    ws_max_connections: u32,
    /// WebSocket: the connection-limit window in milliseconds.
    #[arg(
        long,
        env = "EXCHANGE_SIM_WS_CONNECTION_WINDOW_MS",
        default_value_t = 300_000
    )]
    ws_connection_window_ms: u64,
    /// WebSocket: milliseconds between updates of the current candle on kline streams.
    #[arg(long, env = "EXCHANGE_SIM_WS_KLINE_UPDATE_MS", default_value_t = 1_000)]
    ws_kline_update_ms: u64,
    /// Archive: a daily file is published this many milliseconds after its day ends.
    #[arg(long, env = "EXCHANGE_SIM_ARCHIVE_DAILY_DELAY_MS", default_value_t = 0)]
    archive_daily_delay_ms: u64,
    /// Archive: a monthly file is published this many milliseconds after its month ends.
    #[arg(
        long,
        env = "EXCHANGE_SIM_ARCHIVE_MONTHLY_DELAY_MS",
        default_value_t = 0
    )]
    archive_monthly_delay_ms: u64,
    /// Archive: days (YYYY-MM-DD, comma-separated) whose daily files are missing (404).
    #[arg(
        long,
        env = "EXCHANGE_SIM_ARCHIVE_MISSING_DAYS",
        value_delimiter = ',',
        value_name = "YYYY-MM-DD"
    )]
    archive_missing_days: Vec<String>,
    /// Archive: months (YYYY-MM, comma-separated) whose monthly files are missing (404).
    #[arg(
        long,
        env = "EXCHANGE_SIM_ARCHIVE_MISSING_MONTHS",
        value_delimiter = ',',
        value_name = "YYYY-MM"
    )]
    archive_missing_months: Vec<String>,
    /// Archive: zips (comma-separated NAME.zip[:COUNT]) whose next COUNT downloads (default:
    /// every one) have bytes flipped; their CHECKSUM states the true hash.
    #[arg(
        long,
        env = "EXCHANGE_SIM_ARCHIVE_CORRUPT",
        value_delimiter = ',',
        value_name = "NAME[:COUNT]",
        value_parser = counted
    )]
    archive_corrupt: Vec<(String, u32)>,
    /// Archive: zips (comma-separated names) whose CHECKSUM states a wrong hash.
    #[arg(
        long,
        env = "EXCHANGE_SIM_ARCHIVE_BAD_CHECKSUM",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    archive_bad_checksum: Vec<String>,
    /// Archive: zips (comma-separated NAME.zip[:COUNT]) whose next COUNT downloads (default:
    /// every one) are cut off after about half of the bytes.
    #[arg(
        long,
        env = "EXCHANGE_SIM_ARCHIVE_TRUNCATE",
        value_delimiter = ',',
        value_name = "NAME[:COUNT]",
        value_parser = counted
    )]
    archive_truncate: Vec<(String, u32)>,
    /// Archive: zips (comma-separated names) whose CSV repeats every 1000th and the last row.
    #[arg(
        long,
        env = "EXCHANGE_SIM_ARCHIVE_DUPLICATE_ROWS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    archive_duplicate_rows: Vec<String>,
    /// Archive: zips (comma-separated names) whose CSV lacks the rows of a tenth of its span,
    /// from the middle on, with a CHECKSUM that matches the short file.
    #[arg(
        long,
        env = "EXCHANGE_SIM_ARCHIVE_MISSING_ROWS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    archive_missing_rows: Vec<String>,
    /// Archive: zips (comma-separated names) holding a second copy of the CSV at
    /// NAME/NAME.csv.
    #[arg(
        long,
        env = "EXCHANGE_SIM_ARCHIVE_NESTED_COPY",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    archive_nested_copy: Vec<String>,
    /// Archive: every CSV starts with a header row (like futures files).
    #[arg(long, env = "EXCHANGE_SIM_ARCHIVE_HEADER")]
    archive_header: bool,
    /// Archive: latency added to every archive response, in milliseconds.
    #[arg(long, env = "EXCHANGE_SIM_ARCHIVE_LATENCY_MS", default_value_t = 0)]
    archive_latency_ms: u64,
    /// Archive: bytes per second at which each zip is sent (0 = unlimited).
    #[arg(long, env = "EXCHANGE_SIM_ARCHIVE_BANDWIDTH", default_value_t = 0)]
    archive_bandwidth: u64,
    /// USD-M futures (/usdm): request-weight budget per window.
    #[arg(long, env = "EXCHANGE_SIM_USDM_WEIGHT_LIMIT", default_value_t = 2400)]
    usdm_weight_limit: u32,
    /// COIN-M futures (/coinm): request-weight budget per window.
    #[arg(long, env = "EXCHANGE_SIM_COINM_WEIGHT_LIMIT", default_value_t = 2400)]
    coinm_weight_limit: u32,
    /// Futures: aggTrades serve trades no older than this many days before the clock (Binance:
    /// 365); 0 serves every trade.
    #[arg(
        long,
        env = "EXCHANGE_SIM_FUTURES_AGG_TRADES_HORIZON_DAYS",
        default_value_t = 365
    )]
    futures_agg_trades_horizon_days: u64,
    /// Futures: fundingRate requests per window and market.
    #[arg(long, env = "EXCHANGE_SIM_FUNDING_RATE_LIMIT", default_value_t = 500)]
    funding_rate_limit: u32,
    /// Futures: the fundingRate request window in milliseconds.
    #[arg(
        long,
        env = "EXCHANGE_SIM_FUNDING_RATE_WINDOW_MS",
        default_value_t = 300_000
    )]
    funding_rate_window_ms: u64,
    /// Futures: /futures/data/* requests per window and market.
    #[arg(long, env = "EXCHANGE_SIM_FUTURES_DATA_LIMIT", default_value_t = 1000)]
    futures_data_limit: u32,
    /// Futures: the /futures/data/* request window in milliseconds.
    #[arg(
        long,
        env = "EXCHANGE_SIM_FUTURES_DATA_WINDOW_MS",
        default_value_t = 300_000
    )]
    futures_data_window_ms: u64,
    /// Futures WebSocket: milliseconds between the server's pings.
    #[arg(
        long,
        env = "EXCHANGE_SIM_FUTURES_WS_PING_INTERVAL_MS",
        default_value_t = 180_000
    )]
    futures_ws_ping_interval_ms: u64,
    /// Futures WebSocket: a ping unanswered this many milliseconds closes the connection.
    #[arg(
        long,
        env = "EXCHANGE_SIM_FUTURES_WS_PONG_TIMEOUT_MS",
        default_value_t = 600_000
    )]
    futures_ws_pong_timeout_ms: u64,
    /// Futures WebSocket: incoming messages per second above which a connection is closed.
    #[arg(
        long,
        env = "EXCHANGE_SIM_FUTURES_WS_MAX_INCOMING_PER_SEC",
        default_value_t = 10
    )]
    futures_ws_max_incoming_per_sec: u32,
    /// Futures WebSocket: streams per connection (COIN-M never more than 200).
    #[arg(
        long,
        env = "EXCHANGE_SIM_FUTURES_WS_MAX_STREAMS",
        default_value_t = 1024
    )]
    futures_ws_max_streams: usize,
}

/// Parses `NAME[:COUNT]`; no count means every download.
fn counted(s: &str) -> Result<(String, u32), String> {
    match s.rsplit_once(':') {
        Some((name, count)) => count
            .trim()
            .parse()
            .map(|n| (name.trim().to_string(), n))
            .map_err(|_| format!("'{count}' is not a download count")),
        None => Ok((s.trim().to_string(), u32::MAX)),
    }
}

fn never_if_zero(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Registers SIGTERM and SIGINT handlers at once (so a signal sent as soon as the address is
/// printed is not missed) and returns a future that completes on the first of them.
#[cfg(unix)]
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async fn recv(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            _ = recv(term) => {}
            _ = recv(int) => {}
        }
    }
}

#[cfg(not(unix))]
fn stop_signal() -> impl std::future::Future<Output = ()> {
    async {
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
        ws: WsFaults {
            ping_interval: Duration::from_millis(args.ws_ping_interval_ms),
            pong_timeout: Duration::from_millis(args.ws_pong_timeout_ms),
            max_lifetime: Duration::from_millis(args.ws_max_lifetime_ms),
            shutdown_grace: Duration::from_millis(args.ws_shutdown_grace_ms),
            drop_every: never_if_zero(args.ws_drop_every_ms),
            stall: false,
            stall_after: never_if_zero(args.ws_stall_after_ms),
            depth_gap_every: args.ws_depth_gap_every,
            max_incoming_per_sec: args.ws_max_incoming_per_sec,
            max_streams: args.ws_max_streams,
            max_connections_per_window: args.ws_max_connections,
            connection_window: Duration::from_millis(args.ws_connection_window_ms),
            kline_update: Duration::from_millis(args.ws_kline_update_ms),
        },
        archive: ArchiveFaults {
            daily_delay: Duration::from_millis(args.archive_daily_delay_ms),
            monthly_delay: Duration::from_millis(args.archive_monthly_delay_ms),
            missing_days: args.archive_missing_days,
            missing_months: args.archive_missing_months,
            corrupt: args.archive_corrupt,
            bad_checksum: args.archive_bad_checksum,
            truncate: args.archive_truncate,
            duplicate_rows: args.archive_duplicate_rows,
            missing_rows: args.archive_missing_rows,
            nested_copy: args.archive_nested_copy,
            header: args.archive_header,
            latency: Duration::from_millis(args.archive_latency_ms),
            bandwidth: args.archive_bandwidth,
        },
        usdm_weight_limit: args.usdm_weight_limit,
        coinm_weight_limit: args.coinm_weight_limit,
        funding_rate_limit: args.funding_rate_limit,
        funding_rate_window: Duration::from_millis(args.funding_rate_window_ms),
        futures_data_limit: args.futures_data_limit,
        futures_data_window: Duration::from_millis(args.futures_data_window_ms),
        futures_agg_trades_horizon: (args.futures_agg_trades_horizon_days > 0)
            .then(|| Duration::from_secs(args.futures_agg_trades_horizon_days * 86_400)),
        // The spot WebSocket fault flags (drops, stalls, depth gaps, lifetime, connection
        // limit) apply to the futures connections too.
        futures_ws: WsFaults {
            ping_interval: Duration::from_millis(args.futures_ws_ping_interval_ms),
            pong_timeout: Duration::from_millis(args.futures_ws_pong_timeout_ms),
            max_lifetime: Duration::from_millis(args.ws_max_lifetime_ms),
            shutdown_grace: Duration::from_millis(args.ws_shutdown_grace_ms),
            drop_every: never_if_zero(args.ws_drop_every_ms),
            stall: false,
            stall_after: never_if_zero(args.ws_stall_after_ms),
            depth_gap_every: args.ws_depth_gap_every,
            max_incoming_per_sec: args.futures_ws_max_incoming_per_sec,
            max_streams: args.futures_ws_max_streams,
            max_connections_per_window: args.ws_max_connections,
            connection_window: Duration::from_millis(args.ws_connection_window_ms),
            ..WsFaults::futures()
        },
    };
    let stop = stop_signal();
    let server = SimServer::start(cfg, args.listen).await?;
    {
        // One write, errors ignored: a reader may close the pipe after the first line.
        use std::io::Write;
        let text = format!(
            "listening on {}\nwebsocket on {}\nusdm on {} ({})\ncoinm on {} ({})\n",
            server.base_url(),
            server.ws_url(),
            server.fapi_url(),
            server.fws_url(),
            server.dapi_url(),
            server.dws_url()
        );
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    stop.await;
    let stats = server.stats();
    server.shutdown().await;
    eprintln!(
        "exchange-sim stopped: {}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
    Ok(())
}
