//! A Binance-compatible REST exchange simulator serving deterministic synthetic market data.
//!
//! The crate owns the simulator's public face: its configuration ([`SimConfig`], [`Faults`],
//! [`Storm`]), its counters ([`SimStats`]), the running server ([`SimServer`]), the kline
//! [`Interval`] type shared with the loader, and the [`data`] module that lets tests compute the
//! exact records the server returns without going through HTTP.
//!
//! The server mirrors what a loader meets on `api.binance.com`: the market-data endpoints
//! (`/api/v3/ping`, `time`, `exchangeInfo`, `klines`, `aggTrades`, `historicalTrades`,
//! `depth`) with Binance's parameters, shapes and error codes; request weights with
//! `x-mbx-used-weight*` headers on every response; HTTP 429 once a fixed window's budget is
//! spent and HTTP 418 bans for clients that keep sending; and injectable faults (latency, 503s,
//! dropped connections, 429/418 storms, holes in the aggregate-trade ids).
//!
//! Two extra endpoints, never rate-limited nor faulted, serve tests and demos:
//! `GET /sim/stats` returns [`SimStats`] as JSON, and `GET`/`POST /sim/faults` reads or replaces
//! the faults (JSON: `{"latency_ms":0,"error_5xx_every":0,"drop_every":0,
//! "storm":{"status":429,"count":5,"retry_after_secs":1},"missing_agg_ids":[[10,20]]}`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use exchange_sim::{SimConfig, SimServer};
//! let server = SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! let url = format!("{}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=0", server.base_url());
//! // … fetch `url` with any HTTP client …
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

mod api;
pub mod data;
mod fmt;
mod interval;
mod limiter;
mod query;
mod server;
pub mod symbols;

pub use interval::{Interval, ParseIntervalError};
pub use server::SimServer;

/// Settings of a simulated exchange.
///
/// Build it with struct-update syntax so new fields keep old code compiling:
/// `SimConfig { weight_limit: 100, ..SimConfig::default() }`.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Request-weight budget per window (Binance: 6000 per minute).
    pub weight_limit: u32,
    /// Length of the fixed rate-limit window, aligned to multiples of it since the Unix epoch.
    /// Rounded up to whole seconds (at least 1 s), since Binance describes limits in seconds,
    /// minutes, hours or days.
    pub weight_window: Duration,
    /// How many requests a client may send while over the budget, after its first 429 in the
    /// window, and still get 429; the next one is banned with 418.
    pub strikes_before_ban: u32,
    /// How long a ban lasts (Binance: from 2 minutes).
    pub ban_duration: Duration,
    /// Mean milliseconds between two aggregate trades of a symbol.
    pub agg_trade_spacing_ms: i64,
    /// First data time of every symbol: aggregate trade 0 and the first candle open time at or
    /// after it.
    pub listed_at_ms: i64,
    /// Injected faults; can be changed while running with [`SimServer::set_faults`].
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            weight_limit: 6000,
            weight_window: Duration::from_secs(60),
            strikes_before_ban: 3,
            ban_duration: Duration::from_secs(120),
            agg_trade_spacing_ms: data::DEFAULT_AGG_TRADE_SPACING_MS,
            listed_at_ms: data::DEFAULT_LISTED_AT_MS,
            faults: Faults::default(),
        }
    }
}

impl SimConfig {
    /// The aggregate-trade settings this configuration serves (spacing, listing time and the
    /// missing ids of its faults).
    pub fn data(&self) -> data::Data {
        data::Data::new(
            self.agg_trade_spacing_ms,
            self.listed_at_ms,
            self.faults.missing_agg_ids.clone(),
        )
    }
}

/// Faults injected into REST responses (never into `/sim/*`).
#[derive(Clone, Default, Debug)]
pub struct Faults {
    /// Delay added before every REST response.
    pub latency: Duration,
    /// `0` = never; otherwise every Nth data request (klines, aggTrades, historicalTrades,
    /// depth) that passes the rate limiter gets HTTP 503 with Binance's -1001 body.
    pub error_5xx_every: u32,
    /// `0` = never; otherwise every Nth data request that passes the rate limiter has its
    /// connection closed without any response. When both this and `error_5xx_every` pick the
    /// same request, it gets the 503.
    pub drop_every: u32,
    /// The next `count` requests get `status` whatever the budget.
    pub storm: Option<Storm>,
    /// Inclusive ranges of aggregate trade ids that do not exist (nor do their raw trades).
    pub missing_agg_ids: Vec<(u64, u64)>,
}

/// A burst of rate-limit rejections that the client did not cause (e.g. many clients of one
/// IP reconnecting at once).
#[derive(Clone, Debug)]
pub struct Storm {
    /// 429 or 418.
    pub status: u16,
    /// How many requests get it.
    pub count: u32,
    /// The `Retry-After` header value.
    pub retry_after_secs: u64,
}

/// Counters of everything the server answered since it started.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimStats {
    /// REST requests received (not counting `/sim/*`).
    pub requests: u64,
    /// Request weight charged to the budget (rejected requests' weight included, requests
    /// refused during a ban or a storm not).
    pub weight_total: u64,
    /// HTTP 429 responses (over budget or storm).
    pub responses_429: u64,
    /// HTTP 418 responses (banned or storm).
    pub responses_418: u64,
    /// HTTP 5xx responses (injected).
    pub responses_5xx: u64,
    /// Connections closed without a response (injected).
    pub dropped: u64,
    /// The highest weight accepted (served, not rejected) within any single window.
    pub max_window_weight: u32,
    /// Requests that were over the budget or banned when they arrived: each 429/418 the client
    /// caused (storm responses excluded).
    pub budget_violations: u64,
    /// Requests per path (`"other"` for unknown paths).
    pub per_endpoint: BTreeMap<String, u64>,
}
