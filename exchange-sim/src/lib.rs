//! A Binance-compatible REST and WebSocket exchange simulator serving deterministic synthetic
//! market data, with a Bybit venue beside it ([`bybit`]: its v5 REST market data under
//! `/bybit`, [`SimServer::bybit_url`]; its v5 public WebSocket under `/bybit-ws`, [`bybit_ws`],
//! [`SimServer::bybit_ws_url`], with the topics `publicTrade`, `kline`, `orderbook` and, on
//! `linear` and `inverse`, `allLiquidation`) and an OKX venue ([`okx`]: its v5 REST market data
//! under `/okx`, [`SimServer::okx_url`]; its v5 public WebSocket under `/okx-ws`, [`okx_ws`],
//! [`SimServer::okx_ws_url`], with the channels `trades`, `books`, `bbo-tbt`,
//! `liquidation-orders` (by `instType`) and the candles). The two venues' liquidations are
//! public through [`data`] ([`data::bybit_liquidations`], [`data::okx_liquidations`],
//! [`data::okx_liquidation_instruments`]).
//!
//! The crate owns the simulator's public face: its configuration ([`SimConfig`], [`Faults`],
//! [`Storm`], [`WsFaults`], [`ArchiveFaults`]), its counters ([`SimStats`]), the running server
//! ([`SimServer`]), the kline [`Interval`] type shared with the loader, and the [`data`] module
//! that lets tests compute the exact records the server returns without going through HTTP or
//! WebSocket.
//!
//! Modules: `server` (accept loop, request pipeline, `/sim/*`), `clock` ([`SimClock`]),
//! `market` ([`SimMarket`]: prefixes, per-market symbols, salts), `api` (REST endpoints of
//! every market), `futures_api` (the futures-only endpoints), `limiter` (request weights,
//! 429/418, request counts), `query` (query strings), `fmt` (number formatting), [`data`] (the deterministic
//! records), `futures` (mark/index/premium prices, funding, open interest, ratios,
//! liquidations; public through [`data`]), `venue_liquidations` (the Bybit and OKX venues'
//! liquidation schedules; public through [`data`]), [`symbols`] (symbol rules), `ws` and `streams`
//! (WebSocket sessions and market streams), and `archive` (the bulk archive: `layout` of paths
//! and publication, `generate` of CSV-in-zip files, `body` for ranges and streamed,
//! fault-injected downloads).
//!
//! Three markets share one port ([`SimMarket`]): spot at the root (below), USD-M futures
//! under `/usdm` ([`SimServer::fapi_url`], [`SimServer::fws_url`]) and COIN-M futures under
//! `/coinm` ([`SimServer::dapi_url`], [`SimServer::dws_url`]); see "Futures" below. Each
//! market's data differs from the others' for the same symbol name (a salted seed); within a
//! market, REST, WebSocket and archive agree exactly.
//!
//! The server mirrors what a loader meets on `api.binance.com`: the market-data endpoints
//! (`/api/v3/ping`, `time`, `exchangeInfo`, `klines`, `aggTrades`, `historicalTrades`,
//! `depth`) with Binance's parameters, shapes and error codes; request weights with
//! `x-mbx-used-weight*` headers on every response; HTTP 429 once a fixed window's budget is
//! spent and HTTP 418 bans for clients that keep sending; and injectable faults (latency, 503s,
//! dropped connections, 429/418 storms, holes in the aggregate-trade ids).
//!
//! On the same port, WebSocket upgrades on `/ws`, `/ws/<stream>` and `/stream?streams=a/b`
//! serve Binance's market streams (`<s>@trade`, `<s>@aggTrade`, `<s>@kline_<iv>`, `<s>@depth`,
//! `<s>@depth@100ms`, `<s>@bookTicker`) with live SUBSCRIBE/UNSUBSCRIBE requests, computed from
//! the same deterministic data as the REST endpoints, plus Binance's connection behaviours
//! (pings, 24-hour rotation, `serverShutdown`, message and connection limits) and injectable
//! faults ([`WsFaults`]); see [`SimServer::ws_url`].
//!
//! Also on the same port, the bulk archive of `data.binance.vision` (point a loader's archive
//! URL at [`SimServer::base_url`]), GET and HEAD, computed from the same data:
//! - `/data/spot/daily/klines/<SYM>/<iv>/<SYM>-<iv>-YYYY-MM-DD.zip` (intervals `1s` … `1d`),
//!   `/data/spot/monthly/klines/<SYM>/<iv>/<SYM>-<iv>-YYYY-MM.zip` (every interval, `1M`
//!   spelled `1mo`), `/data/spot/{daily,monthly}/aggTrades/<SYM>/<SYM>-aggTrades-<date>.zip`
//!   and `/data/spot/{daily,monthly}/trades/<SYM>/<SYM>-trades-<date>.zip`;
//! - beside each, `<file>.zip.CHECKSUM`: `<sha256 hex>  <file>.zip`, with a trailing newline
//!   only for even days (daily) or even months (monthly), since Binance's are inconsistent;
//! - each zip holds one deflated `<file>.csv` without header row, `\n` line ends, ascending:
//!   klines with the 12 REST columns (`ignore` = `0`, candles opened in the span), aggTrades
//!   `aggId,price,qty,firstId,lastId,time,isBuyerMaker,isBestMatch` and trades
//!   `id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch` (booleans `True`/`False`), with
//!   the REST endpoints' values; times in ms, or in µs for spans from 2025-01-01 on (a kline
//!   close time then is the next open time in µs minus 1);
//! - a daily file exists once its day is at or after the listing day and ended
//!   [`ArchiveFaults::daily_delay`] ago; a monthly one once its month is at or after the
//!   listing month and ended [`ArchiveFaults::monthly_delay`] ago (server clock). Anything else
//!   under `/data/` is HTTP 404 with S3's XML body (`<Error><Code>NoSuchKey</Code>…`);
//! - zips are generated once, streamed into a file of a temporary directory that the server
//!   removes when it stops, and sent from disk with `Content-Length`, `ETag` (the quoted
//!   SHA-256), `Last-Modified` (publication time) and `Range` support (206, 416);
//! - no weight, no `x-mbx-*` headers, no rate limit, no REST [`Faults`]; instead
//!   [`ArchiveFaults`] (publication delays, missing days and months, corrupted or truncated
//!   downloads, wrong checksums, duplicated rows, a nested duplicate CSV, header rows, latency,
//!   bandwidth). [`SimStats`] counts them in its `archive_*` fields.
//!
//! Extra endpoints, never rate-limited nor faulted, serve tests and demos:
//! `GET /sim/stats` returns [`SimStats`] as JSON, and `GET`/`POST /sim/faults` reads or replaces
//! the faults (JSON: `{"latency_ms":0,"error_5xx_every":0,"drop_every":0,
//! "storm":{"status":429,"count":5,"retry_after_secs":1},"missing_agg_ids":[[10,20]]}`).
//! `GET`/`POST /sim/ws` reads or replaces the [`WsFaults`] (JSON with durations in ms, `0` =
//! never for the optional ones: `{"ping_interval_ms":20000,"pong_timeout_ms":60000,
//! "max_lifetime_ms":86400000,"shutdown_grace_ms":1000,"drop_every_ms":0,"stall":false,
//! "stall_after_ms":0,"depth_gap_every":0,"max_incoming_per_sec":5,"max_streams":1024,
//! "max_connections_per_window":300,"connection_window_ms":300000,"kline_update_ms":1000}`;
//! a POST may send only some fields), and `POST /sim/ws/disconnect`, `/sim/ws/shutdown`,
//! `/sim/ws/stall` and `/sim/ws/lag?ms=N` do what [`SimServer::disconnect_all`],
//! [`SimServer::send_server_shutdown`], [`SimServer::stall_all`] and [`SimServer::lag_all`]
//! do, answering `{"connections":N}`.
//! `GET`/`POST /sim/archive` reads or changes the [`ArchiveFaults`] (JSON with durations in ms,
//! file names as zip names, counted faults as `[name, downloads]` pairs, `4294967295` = every
//! download: `{"daily_delay_ms":0,"monthly_delay_ms":0,"missing_days":["2024-01-03"],
//! "missing_months":["2023-12"],"corrupt":[["BTCUSDT-1m-2024-01-02.zip",1]],
//! "bad_checksum":[],"truncate":[],"duplicate_rows":[],"missing_rows":[],"nested_copy":[],"header":false,
//! "latency_ms":0,"bandwidth":0}`; a POST may send only some fields; a GET shows the counts
//! still to come).
//! `GET /sim/clock` answers `{"now_ms":T,"ahead_ms":D}`; `POST /sim/clock?advance_ms=N` jumps
//! the simulator's time forward and `POST /sim/clock?now_ms=T` puts it at `T`, as
//! [`SimServer::clock`] does.
//!
//! # Time
//!
//! Every "now" of the simulator comes from its [`SimClock`]: server time, what REST serves up
//! to now, retention windows, the weight window and bans, stream event times, candle closes
//! and the liquidation schedule, the per-connection message rate and connection-attempt window,
//! and the archive's publication delays. A test sets it or jumps it forward instead of waiting;
//! clients that take their time from `/api/v3/time` (the loader does) follow it. A connection's
//! own timers (pings and pong timeout, lifetime, lag, shutdown grace) and injected latencies run
//! on the wall clock.
//!
//! # Futures
//!
//! USD-M symbols are the USDT/USDC-quoted spot symbols (`BTCUSDT`, listed: the USDT ones of
//! spot's list); COIN-M symbols are the perpetuals `<BASE>USD_PERP` of [`COINM_BASES`] (pair
//! `<BASE>USD`, contract size 100 USD for BTC and 10 USD otherwise; quantities in contracts).
//! Anything else is HTTP 400 `{"code":-1121,"msg":"Invalid symbol."}`.
//!
//! REST, under `/usdm` with `/fapi/v1/…` and under `/coinm` with `/dapi/v1/…`: `ping`, `time`,
//! `exchangeInfo` (weight 1, no parameters), `klines`, `markPriceKlines`, `indexPriceKlines`
//! (`pair`), `premiumIndexKlines` (limit 500/1500, weight 1/2/5/10 by limit, no `1s`; COIN-M:
//! at most 200 days between startTime and endTime and, with both, the newest `limit` candles
//! ending at endTime), `aggTrades` (weight 20, no `M`), `historicalTrades` (weight 20, limit
//! 100/500, `quoteQty` on USD-M, `baseQty` on COIN-M), `depth` (limits 5…1000, weight
//! 2/5/10/20, `E` and `T`, futures update ids) and `fundingRate` (every 8 h with a 0–9 ms
//! jitter, 100/1000 rows); and `/futures/data/openInterestHist`,
//! `globalLongShortAccountRatio`, `topLongShortAccountRatio`, `topLongShortPositionRatio`
//! (USD-M by `symbol`, COIN-M by `pair`, `contractType` for COIN-M open interest; periods
//! `5m`…`1d`, limit 30/500, last 30 days only (-1130 for an older startTime), with both
//! bounds the newest `limit` rows ending at endTime). Each futures market has its own weight
//! budget ([`SimConfig::usdm_weight_limit`], [`SimConfig::coinm_weight_limit`]) with the same
//! headers, 429 and 418 mechanics as spot; `fundingRate` and `/futures/data/*` weigh nothing
//! but have request-count limits of their own per market ([`SimConfig::funding_rate_limit`],
//! [`SimConfig::futures_data_limit`]): over them HTTP 429 with `Retry-After`. [`SimStats`]
//! splits the counters per market ([`SimStats::per_market`]). The REST [`Faults`] apply to
//! every market.
//!
//! WebSocket, under `/usdm` and `/coinm`: `/ws`, `/ws/<stream>`, `/stream?streams=…` serve
//! every COIN-M stream but only USD-M's book streams (Binance retired USD-M's unrouted URLs in
//! 2026: they still accept every subscription and then deliver only `@depth…`/`@bookTicker`);
//! on USD-M, Binance's routed `/public/ws…`/`/public/stream…` serve only
//! `@depth…` and `@bookTicker`, `/market/ws…`/`/market/stream…` only the others (a stream on
//! the wrong route: HTTP 400, or an error answer to SUBSCRIBE); COIN-M has no routed endpoints
//! (HTTP 404 there). Streams: `<s>@aggTrade`,
//! `<s>@kline_<iv>` (no `1s`), `<s>@depth` (250 ms), `<s>@depth@100ms`, `<s>@depth@500ms`
//! (`pu` = the previous event's `u`; ids jump between events), `<s>@bookTicker`,
//! `<s>@markPrice` (3 s), `<s>@markPrice@1s`, `<s>@forceOrder`, `!forceOrder@arr`; no
//! `@trade`. Futures connections follow [`SimConfig::futures_ws`] ([`WsFaults::futures`]:
//! 1024 streams on USDⓈ-M and 200 on COIN-M, 10 messages a second, pings every 3 minutes),
//! changeable with
//! [`SimServer::set_futures_ws_faults`] or `GET`/`POST /sim/futures_ws`;
//! [`SimServer::disconnect_all`], [`SimServer::send_server_shutdown`] and
//! [`SimServer::stall_all`] reach every market's connections.
//!
//! Archive: `/data/futures/um/…` and `/data/futures/cm/…` with `klines`, `markPriceKlines`,
//! `indexPriceKlines` (COIN-M by pair), `premiumIndexKlines` (daily up to `1d`, monthly every
//! interval), `aggTrades`, `trades` (daily and monthly) and daily `metrics`
//! (`<SYM>-metrics-YYYY-MM-DD.zip`: 5-minute open interest and ratios, always with a header).
//! Times in ms; files whose span starts in 2022 or later have a header row, older ones none;
//! booleans `true`/`false`; aggTrades without best match (7 columns), trades
//! `id,price,qty,quote_qty|base_qty,time,is_buyer_maker`. Same publication and
//! [`ArchiveFaults`] as spot (names as zip names or whole keys; [`SimStats::archive_downloads`]
//! counts futures files by whole key, since mark/index/premium files share the klines' names).
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
mod archive;
pub mod bybit;
pub mod bybit_archive;
pub mod bybit_ws;
mod clock;
pub mod data;
mod fmt;
mod futures;
mod futures_api;
mod gauge;
mod limiter;
mod market;
pub(crate) mod object_store;
pub mod okx;
pub mod okx_archive;
pub mod okx_ws;
mod query;
mod server;
mod streams;
pub mod symbols;
mod venue_liquidations;
mod ws;

pub use clock::SimClock;
pub use kline_interval::{Interval, ParseIntervalError};
pub use market::{SimMarket, COINM_BASES};
pub use object_store::ArchiveStats;
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
    /// WebSocket behaviours and faults; can be changed while running with
    /// [`SimServer::set_ws_faults`].
    pub ws: WsFaults,
    /// Publication delays and faults of the bulk archive (`/data/…`); can be changed while
    /// running with [`SimServer::set_archive_faults`].
    pub archive: ArchiveFaults,
    /// USD-M futures' own request-weight budget per [`weight_window`](Self::weight_window)
    /// (Binance: 2,400 per minute), independent of spot's and COIN-M's.
    pub usdm_weight_limit: u32,
    /// COIN-M futures' own request-weight budget per window (Binance: 2,400 per minute).
    pub coinm_weight_limit: u32,
    /// `/fapi|dapi/v1/fundingRate` requests admitted per
    /// [`funding_rate_window`](Self::funding_rate_window), per futures market (Binance: 500
    /// per 5 minutes); weight 0, over it HTTP 429 with `Retry-After` and no ban.
    pub funding_rate_limit: u32,
    /// The fixed window (aligned to the epoch) of [`funding_rate_limit`](Self::funding_rate_limit).
    pub funding_rate_window: Duration,
    /// `/futures/data/*` requests admitted per
    /// [`futures_data_window`](Self::futures_data_window), per futures market (Binance: 1,000
    /// per 5 minutes); weight 0, over it HTTP 429 with `Retry-After` and no ban.
    pub futures_data_limit: u32,
    /// The fixed window of [`futures_data_limit`](Self::futures_data_limit).
    pub futures_data_window: Duration,
    /// WebSocket behaviours and faults of both futures markets' connections (`/usdm/…`,
    /// `/coinm/…`); default [`WsFaults::futures`]. Change it while running with
    /// [`SimServer::set_futures_ws_faults`].
    pub futures_ws: WsFaults,
    /// How old a futures aggregate trade may be for `/fapi|dapi/v1/aggTrades` to serve it,
    /// counted back from the simulator's clock (Binance: one year since 2024-10-17, derivatives
    /// change log of 2024-10-10: `Some(365 days)`). A `startTime` before it, or a `fromId` whose
    /// trade is older, is answered with an empty list: Binance documents the limit but not its
    /// answer, so that is an assumption. The default is Binance's year; `None` serves every
    /// trade since the listing (for tests of the simulator's own data over REST).
    pub futures_agg_trades_horizon: Option<Duration>,
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
            ws: WsFaults::default(),
            archive: ArchiveFaults::default(),
            usdm_weight_limit: 2400,
            coinm_weight_limit: 2400,
            funding_rate_limit: 500,
            funding_rate_window: Duration::from_secs(300),
            futures_data_limit: 1000,
            futures_data_window: Duration::from_secs(300),
            futures_ws: WsFaults::futures(),
            futures_agg_trades_horizon: Some(Duration::from_secs(365 * 86_400)),
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

/// A burst of rejections that the client did not cause: rate limits (many clients of one IP
/// reconnecting at once), Binance's "try again" answers, or a refused location.
#[derive(Clone, Debug)]
pub struct Storm {
    /// 429 or 418 (with `Retry-After`); 408 (a backend timeout); 400 or 5xx with a "try again"
    /// `code`; 451 (a restricted location).
    pub status: u16,
    /// How many requests get it.
    pub count: u32,
    /// The `Retry-After` header value (429 and 418 only).
    pub retry_after_secs: u64,
    /// The body's Binance error code for statuses other than 429/418 (`None`: the one Binance
    /// sends with that status, see [`api::storm_body`](crate::api::storm_body)).
    pub code: Option<i32>,
}

/// WebSocket behaviours and injected WebSocket faults. The default is Binance's behaviour;
/// tests compress the durations to milliseconds.
///
/// Changes made with [`SimServer::set_ws_faults`] apply to open connections as well as new
/// ones (durations count from each connection's opening).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsFaults {
    /// The server pings every connection this often (Binance: 20 s), with the send time in
    /// milliseconds as the payload.
    pub ping_interval: Duration,
    /// A connection whose oldest unanswered ping is this old is closed (Binance: 1 minute). Only
    /// a pong echoing an outstanding ping's payload answers it.
    pub pong_timeout: Duration,
    /// The server closes every connection this long after it opened, with a close frame
    /// (Binance: 24 hours).
    pub max_lifetime: Duration,
    /// After a `serverShutdown` event ([`SimServer::send_server_shutdown`]), connections keep
    /// streaming this long, then get a close frame.
    pub shutdown_grace: Duration,
    /// `None` = never; otherwise every connection is dropped abruptly (TCP close without a close
    /// frame) this long after it opened, so a client that reconnects at once is dropped every
    /// `drop_every`.
    pub drop_every: Option<Duration>,
    /// While `true`, every open connection and every connection opened meanwhile goes silent for
    /// good: no data, no pings, no pongs, no close frame, the TCP connection left open (the
    /// server still reads and discards, and ends it when the client closes it). Clearing it
    /// does not revive those connections.
    pub stall: bool,
    /// `None` = never; otherwise every connection goes silent (like [`stall`](Self::stall))
    /// this long after it opened.
    pub stall_after: Option<Duration>,
    /// `0` = never; otherwise every Nth diff-depth event of each depth stream of a connection is
    /// swallowed, so the next event's `U` is greater than the previous `u` + 1 (a sequence gap
    /// that clients must resync from).
    pub depth_gap_every: u32,
    /// Incoming messages (text requests, pings and unsolicited pongs) per rolling second above
    /// which a connection is closed (Binance: 5; `0` = no limit). Pongs answering the server's
    /// pings do not count, so compressed ping intervals cannot trip it.
    pub max_incoming_per_sec: u32,
    /// Streams per connection (Binance: 1024 on spot and, since 2025-07-02, USDⓈ-M; COIN-M
    /// keeps 200, which caps this on COIN-M): a URL with more is refused with HTTP 400, a
    /// SUBSCRIBE that would exceed it gets an error.
    pub max_streams: usize,
    /// Connections one IP may open per [`connection_window`](Self::connection_window)
    /// (Binance: 300 per 5 minutes; `0` = no limit); further upgrade requests get HTTP 429
    /// (those rejected do not count).
    pub max_connections_per_window: u32,
    /// The sliding window of [`max_connections_per_window`](Self::max_connections_per_window).
    pub connection_window: Duration,
    /// How often kline streams push an update of the current candle (Binance: 1 s for `1s`,
    /// 2 s for the other intervals).
    pub kline_update: Duration,
}

impl Default for WsFaults {
    fn default() -> Self {
        WsFaults {
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(24 * 3600),
            shutdown_grace: Duration::from_secs(1),
            drop_every: None,
            stall: false,
            stall_after: None,
            depth_gap_every: 0,
            max_incoming_per_sec: 5,
            max_streams: 1024,
            max_connections_per_window: 300,
            connection_window: Duration::from_secs(300),
            kline_update: Duration::from_secs(1),
        }
    }
}

/// COIN-M's streams per connection (derivatives docs, "Websocket Market Streams": "A single
/// connection can listen to a maximum of 200 streams"); USDⓈ-M raised its limit to 1024 on
/// 2025-07-02 (USDⓈ-M change log).
pub const COINM_MAX_STREAMS: usize = 200;

impl WsFaults {
    /// Binance's futures WebSocket behaviour (`fstream`/`dstream`): pings every 3 minutes, a
    /// 10-minute pong timeout, 24-hour connections, 10 incoming messages a second, 1024 streams
    /// a connection on USDⓈ-M and 200 on COIN-M, 300 connections per 5 minutes; kline updates
    /// every 250 ms.
    pub fn futures() -> WsFaults {
        WsFaults {
            ping_interval: Duration::from_secs(180),
            pong_timeout: Duration::from_secs(600),
            max_incoming_per_sec: 10,
            max_streams: 1024,
            kline_update: Duration::from_millis(250),
            ..WsFaults::default()
        }
    }

    /// Streams one connection of `market` may carry.
    pub fn max_streams_in(&self, market: SimMarket) -> usize {
        match market {
            SimMarket::CoinM => self.max_streams.min(COINM_MAX_STREAMS),
            _ => self.max_streams,
        }
    }
}

/// Publication delays of the bulk archive (`/data/spot/…`, see the crate documentation) and the
/// archive problems users report, injected. The default publishes every file as soon as its
/// span has ended, with no faults.
///
/// File names in the lists are zip names like `BTCUSDT-1m-2024-01-02.zip` (the name without
/// `.zip`, or the whole key `data/spot/…/BTCUSDT-1m-2024-01-02.zip`, match too); a fault applies
/// to the zip and, where it says so, to its `.CHECKSUM`. Faults that change a file's contents
/// (`duplicate_rows`, `nested_copy`, `header`) produce separately cached variants, and the ones
/// applied while sending (`corrupt`, `truncate`) never touch the cached file, so clearing a
/// fault serves the clean file again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveFaults {
    /// A daily file is published this long after its day ends (Binance: usually hours,
    /// sometimes days). `0` = at midnight UTC.
    pub daily_delay: Duration,
    /// A monthly file is published this long after its month ends (Binance: within the first
    /// half of the next month). `0` = at the month's end.
    pub monthly_delay: Duration,
    /// Days (`"YYYY-MM-DD"`) whose daily files (every symbol, every type) are missing for good:
    /// HTTP 404 like a genuine hole in the archive. Malformed entries match nothing.
    pub missing_days: Vec<String>,
    /// Months (`"YYYY-MM"`) whose monthly files are missing for good (HTTP 404).
    pub missing_months: Vec<String>,
    /// Zip name and how many more downloads of it are corrupted (`u32::MAX` = every one): a few
    /// bytes of the body are flipped while the `.CHECKSUM` states the true hash. Counts down as
    /// downloads (GETs, ranged or not) are served; `1` = the first download is bad and a retry
    /// gets the good file.
    pub corrupt: Vec<(String, u32)>,
    /// Zip names whose `.CHECKSUM` states a wrong hash (the zip itself is fine).
    pub bad_checksum: Vec<String>,
    /// Zip name and how many more downloads of it are cut off after about half of the bytes
    /// they should carry (`u32::MAX` = every one): `Content-Length` announces the full size,
    /// then the connection is closed. A client can resume with `Range` or retry. Counts down
    /// like [`corrupt`](Self::corrupt).
    pub truncate: Vec<(String, u32)>,
    /// Zip names whose CSV repeats some rows right after themselves (every 1000th row and the
    /// last row); the published zip and its `.CHECKSUM` agree.
    pub duplicate_rows: Vec<String>,
    /// Zip names whose CSV lacks the rows of a stretch in its middle (from the middle of the
    /// file's span, a tenth of the span long) although REST serves them; the published zip and
    /// its `.CHECKSUM` agree, as in Binance's short files (binance-public-data issues 106, 230
    /// and 307).
    pub missing_rows: Vec<String>,
    /// Zip names whose zip holds a second, identical copy of the CSV at `<name>/<name>.csv`
    /// besides `<name>.csv` (a nested duplicate); the `.CHECKSUM` agrees.
    pub nested_copy: Vec<String>,
    /// Every CSV starts with a header row, like Binance's futures files, with their column
    /// names:
    /// - klines: `open_time,open,high,low,close,volume,close_time,quote_volume,count,`
    ///   `taker_buy_volume,taker_buy_quote_volume,ignore`;
    /// - aggTrades: `agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,`
    ///   `is_buyer_maker,is_best_match`;
    /// - trades: `id,price,qty,quote_qty,time,is_buyer_maker,is_best_match`.
    pub header: bool,
    /// Delay before every archive response.
    pub latency: Duration,
    /// Bytes per second at which each zip body is sent (`0` = as fast as possible).
    pub bandwidth: u64,
}

/// The REST counters of one market (see [`SimStats::per_market`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MarketStats {
    /// REST requests received on the market's paths.
    pub requests: u64,
    /// Weight charged to the market's budget.
    pub weight_total: u64,
    /// The highest weight the market's budget accepted within any single window.
    pub max_window_weight: u32,
    /// HTTP 429 responses: over the weight budget, over a request-count limit (`fundingRate`,
    /// `/futures/data/*`) or storm.
    pub responses_429: u64,
    /// HTTP 418 responses (banned or storm).
    pub responses_418: u64,
    /// 429/418 the client caused (storm responses excluded), request-count 429s included.
    pub budget_violations: u64,
}

/// Counters of everything the server answered since it started.
///
/// The REST counters at the top level count every market together (spot, USD-M, COIN-M);
/// [`per_market`](Self::per_market) splits them by market.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimStats {
    /// REST requests received on every market (not counting `/sim/*` nor the archive's
    /// `/data/…`).
    pub requests: u64,
    /// Request weight charged to the budgets of every market (rejected requests' weight
    /// included, requests refused during a ban or a storm not).
    pub weight_total: u64,
    /// HTTP 429 responses of every market (over budget, over a request-count limit, or storm).
    pub responses_429: u64,
    /// HTTP 418 responses of every market (banned or storm).
    pub responses_418: u64,
    /// HTTP 5xx responses (injected).
    pub responses_5xx: u64,
    /// Connections closed without a response (injected).
    pub dropped: u64,
    /// The highest weight accepted (served, not rejected) within any single window of any
    /// market's budget.
    pub max_window_weight: u32,
    /// Requests that were over a budget or limit, or banned, when they arrived: each 429/418
    /// the client caused (storm responses excluded), every market.
    pub budget_violations: u64,
    /// Requests per full path, market prefix included (`/api/v3/klines`,
    /// `/usdm/fapi/v1/klines`, `/coinm/futures/data/openInterestHist`; `"other"` for unknown
    /// paths).
    pub per_endpoint: BTreeMap<String, u64>,
    /// REST counters per market: keys `spot`, `usdm`, `coinm` (always all three).
    pub per_market: BTreeMap<String, MarketStats>,
    /// Bybit's REST API (`/bybit/…`): counted apart, under its own IP limit.
    pub bybit: crate::bybit::BybitStats,
    /// Bybit's archive (`/bybit-archive/…`).
    pub bybit_archive: crate::ArchiveStats,
    /// OKX's REST API (`/okx/…`): counted apart, under its own limits.
    pub okx: crate::okx::OkxStats,
    /// OKX's archive (`/okx-archive/…`).
    pub okx_archive: crate::ArchiveStats,
    /// OKX's public WebSocket (`/okx-ws/…`, [`okx_ws`]).
    pub okx_ws: crate::okx_ws::OkxWsStats,
    /// Bybit's public WebSocket (`/bybit-ws/…`, [`bybit_ws`]).
    pub bybit_ws: crate::bybit_ws::BybitWsStats,
    /// WebSocket upgrades accepted (HTTP 101 answered).
    pub ws_connections_opened: u64,
    /// WebSocket connections currently open (stalled ones included).
    pub ws_connections_open: u64,
    /// WebSocket text messages sent: stream events, request responses and `serverShutdown`.
    pub ws_messages_sent: u64,
    /// Pings the server sent.
    pub ws_pings_sent: u64,
    /// Pong frames received (answers to the server's pings and unsolicited ones).
    pub ws_pongs_received: u64,
    /// Connections the server dropped abruptly ([`SimServer::disconnect_all`],
    /// [`WsFaults::drop_every`]).
    pub ws_forced_disconnects: u64,
    /// WebSocket upgrade requests refused (HTTP 429 over the connection limit, HTTP 400 for bad
    /// stream names).
    pub ws_connection_attempts_rejected: u64,
    /// Connections closed because a ping went unanswered.
    pub ws_pong_timeouts: u64,
    /// Connections closed because they reached [`WsFaults::max_lifetime`].
    pub ws_lifetime_closes: u64,
    /// Connections closed for sending too many messages.
    pub ws_rate_limit_closes: u64,
    /// Connections that got a `serverShutdown` event.
    pub ws_shutdown_notices: u64,
    /// Connections that went silent (stalled).
    pub ws_stalled: u64,
    /// Bulk-archive requests received (everything under `/data/`; not counted in
    /// [`requests`](Self::requests)).
    pub archive_requests: u64,
    /// Body bytes of archive files sent (zips, ranges of zips and `.CHECKSUM` files).
    pub archive_bytes_sent: u64,
    /// Archive requests answered with HTTP 404 (no such key, not yet published or missing).
    pub archive_not_found: u64,
    /// Downloads started per zip name (GETs answered 200 or 206, ranged ones included).
    pub archive_downloads: BTreeMap<String, u64>,
    /// Zips generated (each file and content variant once, however many requests asked).
    pub archive_files_generated: u64,
    /// The most zip bodies (whole or ranged) that were being sent at once.
    pub archive_max_downloads_at_once: u64,
    /// The most REST requests that were being answered at once (every market; a request counts
    /// from its arrival until its response is handed over, any injected latency included).
    pub max_requests_at_once: u64,
}
