//! Venues: everything an exchange does its own way lives in its tree (`binance`, `bybit`):
//! endpoints, weights and limits, stream grammar, archive layout, and the mapping from its rows
//! to the loader's records. The seam the generic layers see is this module: what a venue is
//! before it is connected ([`VenueSpec`]: what it serves, its URLs' variables, how to connect),
//! a connected venue ([`Session`]), the [`History`](history::History) of a type it serves
//! ([`history`]), the [`LiveFeed`](live::LiveFeed) of a type it streams ([`live`]) and what
//! its REST client spends ([`requests`]). The config, the job, the
//! history driver, `verify`, the job's status and metrics take a venue through these and never
//! name its constants; `crate::venues` is the one list of them.

pub mod binance;
pub mod bybit;
pub mod history;
pub mod live;
pub mod okx;
pub mod requests;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::archive::ArchiveClient;
use crate::error::LoaderError;
use crate::market::{Market, Venue};
use crate::registry::{DataType, HistoryType};
use crate::secret::Secret;
use crate::source_mode::SourceMode;
use history::{History, VenueClock};
use live::{LiveFeed, LiveScope};
use requests::{RequestBudget, RestStats};

/// A connected venue (its clock synchronised, its limits learnt, the symbols checked): what
/// the job, its status and `verify` take from it.
pub trait Session: Send + Sync + 'static {
    /// The venue's present.
    fn clock(&self) -> VenueClock;

    /// What its REST client spent so far.
    fn rest_stats(&self) -> Arc<RestStats>;

    /// The budget its REST client paces a job of `data_type` by (a venue that limits each
    /// endpoint apart, OKX, gives that type's endpoint's).
    fn budget(&self, data_type: DataType) -> Arc<dyn RequestBudget>;

    /// The history of `t` at this venue, asking this session over REST; `None` where the
    /// venue does not serve the type.
    fn history(self: Arc<Self>, t: HistoryType) -> Option<Arc<dyn History>>;

    /// The live feed of `scope`'s type from the streams under `ws_url`, backfilling over this
    /// session; `None` where the venue does not stream the type.
    fn live(self: Arc<Self>, _scope: LiveScope, _ws_url: String) -> Option<Arc<dyn LiveFeed>> {
        None
    }
}

/// What a job or `verify` sets for a venue's REST client, whichever the venue.
#[derive(Debug, Clone)]
pub struct VenueSettings {
    /// The market every request (and stream) goes to; `api_url` and `ws_url` are its URLs.
    pub market: Market,
    pub api_url: String,
    /// The venue's stream base, for its live types (empty where the job reads none).
    pub ws_url: String,
    /// Sent only where the venue asks for one (Binance's futures `historicalTrades`).
    pub api_key: Option<Secret>,
    /// The share of the venue's request budget this job may spend (`RATE_LIMIT_SHARE`).
    pub rate_limit_share: f64,
    /// REST pages in flight or waiting to be published, for the whole job
    /// (`FETCH_CONCURRENCY`).
    pub concurrency: usize,
    /// Rows per page of id- and time-paged endpoints (`PAGE_LIMIT`, up to the venue's maximum).
    pub page_limit: u32,
    /// Candles per klines request: the venue's default unless `PAGE_LIMIT` says otherwise.
    pub kline_page_limit: u32,
    pub max_retries: u32,
    /// The longest `Retry-After` the loader waits out (`MAX_RETRY_AFTER`).
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
}

impl VenueSettings {
    /// The HTTP client every venue's REST client starts from: the one TLS connector, the
    /// request and connect timeouts, idle connections for `FETCH_CONCURRENCY`, the loader's
    /// User-Agent, and redirects within the same origin only (a key or query never leaves the
    /// configured host). A venue adds what it needs (Binance its key header) and builds it.
    pub fn http_client(&self) -> Result<reqwest::ClientBuilder, String> {
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::connector()?)
            .timeout(self.request_timeout)
            .connect_timeout(self.request_timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(self.concurrency * 2)
            .user_agent(concat!("loader-producer/", env!("CARGO_PKG_VERSION")))
            .redirect(crate::bounds::same_origin_redirects()))
    }
}

/// A setting that holds one of a venue's URLs: the variable (its flag is the same in lower
/// case) and the public host it defaults to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlVar {
    pub var: &'static str,
    pub default: &'static str,
}

/// What a job chose, for a venue's own checks ([`VenueSpec::check_job`]).
pub struct JobChoice<'a> {
    pub data_type: DataType,
    pub market: Market,
    pub source: SourceMode,
    /// Every symbol of the job (all shards).
    pub symbols: &'a [String],
    /// `BINANCE_API_KEY` (or the venue's key) is set.
    pub api_key_set: bool,
}

/// A venue before it is connected: what it serves and from where, the variables of its URLs,
/// its page bounds, and how to connect to it. Each venue's tree defines one; `crate::venues`
/// lists them, and the config, the job, `verify` and the demo find a venue there by
/// `EXCHANGE`.
pub trait VenueSpec: Send + Sync {
    fn venue(&self) -> Venue;

    /// Whether the venue serves `data_type` on `market` through this loader; `Err` says what
    /// it does serve, naming TYPE or MARKET.
    fn serves(&self, data_type: DataType, market: Market) -> Result<(), String>;

    /// Whether `source` can load `data_type` here; `Err` says which can, naming SOURCE.
    fn serves_from(&self, _data_type: DataType, _source: SourceMode) -> Result<(), String> {
        Ok(())
    }

    /// The type is read from the venue's archive alone, whatever `SOURCE` says (so a range
    /// must end where the archive does).
    fn archive_only(&self, _data_type: DataType) -> bool {
        false
    }

    /// What else a job's choices must satisfy at this venue (symbols a type cannot take, a
    /// key an endpoint needs); `Err` names the variable to change.
    fn check_job(&self, _job: &JobChoice<'_>) -> Result<(), String> {
        Ok(())
    }

    /// Candles per request: the default (cheapest in the venue's budget) and the largest.
    fn kline_pages(&self, market: Market) -> (u32, u32);

    /// The variable of the REST base URL of `market`.
    fn rest_url(&self, market: Market) -> UrlVar;

    /// The variable of the stream base URL of `market` (live types); `None` where the loader
    /// reads no stream of the venue.
    fn ws_url(&self, _market: Market) -> Option<UrlVar> {
        None
    }

    /// A stream URL as users write it, reduced to the base the venue's stream paths start
    /// under.
    fn stream_base(&self, url: &str) -> String {
        url.trim().trim_end_matches('/').to_string()
    }

    /// The variable of the archive's base URL (the root its own path layout starts under);
    /// `None` where the loader reads no archive of the venue.
    fn archive_url(&self) -> Option<UrlVar>;

    /// How long after a candle closes the venue is asked for it, beyond the settling every
    /// venue gets (a load cuts a range reaching the present that much earlier).
    fn candle_delay_ms(&self) -> i64 {
        0
    }

    /// Symbols the offline demo loads on `market`, comma-separated.
    fn demo_symbols(&self, market: Market) -> &'static str;

    /// Connects over REST for `symbols` (clock, limits, listing checked); `archive` is the
    /// archive client where the job or `verify` reads one. Every request gives up when `stop`
    /// fires.
    fn connect<'a>(
        &'a self,
        settings: &'a VenueSettings,
        symbols: &'a [String],
        stop: CancellationToken,
        archive: Option<Arc<ArchiveClient>>,
    ) -> BoxFuture<'a, Result<Arc<dyn Session>, LoaderError>>;

    /// The history of `t` from the archive alone, without a REST session (`SOURCE=archive`);
    /// `None` for a type the venue does not archive.
    fn archive_history(
        &self,
        t: HistoryType,
        market: Market,
        archive: Option<Arc<ArchiveClient>>,
    ) -> Option<Arc<dyn History>>;
}
