//! Bybit (`EXCHANGE=bybit`): its v5 REST API for spot, linear and inverse contracts, and its
//! archive of trades (`BYBIT_ARCHIVE_URL`). Its rules live in [`rules`], the client that keeps
//! to them in [`rest`], and what it serves of each history type in [`klines`], [`funding`],
//! [`open_interest`] and [`trades`]. A session ([`BybitSession`]) is what the job and `verify`
//! take through the seam.

pub mod funding;
pub mod klines;
pub mod live;
pub mod open_interest;
pub mod rest;
pub mod rules;
pub mod spec;
pub mod trades;

use std::sync::Arc;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::archive::ArchiveClient;
use crate::error::LoaderError;
use crate::market::{Market, Venue};
use crate::record::RecordBatch;
use crate::registry::{DataType, FuturesSeries, HistoryType};
use crate::source_mode::SourceMode;
use crate::venue::history::{Emitter, History, HistoryContext, VenueClock};
use crate::venue::requests::{RequestBudget, RestStats};
use crate::venue::VenueSettings;
use rest::{BybitClient, BybitError};

/// Whether Bybit serves `data_type` on `market` through this loader; `Err` says what it does
/// serve. Candles over REST, every interval Bybit has, on every market; trades from the
/// archive on every market; funding rates and open interest on the linear and inverse
/// markets.
pub fn serves(data_type: DataType, market: Market) -> Result<(), String> {
    match data_type {
        DataType::History(HistoryType::Trades) => Ok(()),
        DataType::History(HistoryType::AggTrades) => Err(format!(
            "TYPE {}: Bybit publishes no aggregate trades; its trades, one record each, are \
             TYPE=api_raw_trades",
            data_type.name()
        )),
        DataType::History(HistoryType::FundingRate) if market == Market::Spot => Err(format!(
            "TYPE {} is not offered on Bybit's spot market: use MARKET=linear or inverse",
            data_type.name()
        )),
        DataType::History(HistoryType::FundingRate) => Ok(()),
        DataType::History(HistoryType::FuturesData(FuturesSeries::OpenInterest, _))
            if market == Market::Spot =>
        {
            Err(format!(
                "TYPE {} is not offered on Bybit's spot market: use MARKET=linear or inverse",
                data_type.name()
            ))
        }
        DataType::History(HistoryType::FuturesData(FuturesSeries::OpenInterest, period)) => {
            match rules::open_interest_period(period) {
                Some(_) => Ok(()),
                None => Err(format!(
                    "TYPE {}: Bybit has no {} open interest (its periods: {})",
                    data_type.name(),
                    period.as_str(),
                    rules::OPEN_INTEREST_PERIODS
                )),
            }
        }
        DataType::History(HistoryType::Candles(iv)) => match rules::kline_interval(iv) {
            Some(_) => Ok(()),
            None => Err(format!(
                "TYPE {}: Bybit has no {} candles (its intervals: {})",
                data_type.name(),
                iv.as_str(),
                rules::KLINE_INTERVALS
            )),
        },
        DataType::Live(t) => {
            live::streams(t, market).map_err(|e| format!("TYPE {}: {e}", data_type.name()))
        }
        other => Err(format!(
            "TYPE {} is not loaded from Bybit yet: EXCHANGE=bybit loads candles (api_candles_<interval>), \
             trades (api_raw_trades), funding rates (api_funding_rate) and open interest \
             (api_open_interest_<period>), and streams ws_trades, ws_candles_<interval>, \
             ws_bookticker, ws_orderbook and ws_liquidations",
            other.name()
        )),
    }
}

/// Whether `source` can load `data_type` from Bybit: trades come from its archive alone (REST
/// answers the latest ones only), everything else from REST alone (Bybit archives none of it).
pub fn serves_from(data_type: DataType, source: SourceMode) -> Result<(), String> {
    let trades = data_type == DataType::History(HistoryType::Trades);
    match source {
        SourceMode::Rest if trades => Err(format!(
            "SOURCE=rest: Bybit's REST serves no trade history ({}); use SOURCE=auto or \
             archive (its archive at BYBIT_ARCHIVE_URL holds every day's trades)",
            rules::RECENT_TRADES_ONLY
        )),
        SourceMode::Archive if !trades => Err(
            "SOURCE=archive: Bybit publishes no archive of candles, funding rates or open \
             interest; use SOURCE=auto or rest"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// The history of `t` from Bybit's archive alone, without a REST session (`SOURCE=archive`):
/// `None` for a type Bybit does not archive.
pub fn archive_history(
    t: HistoryType,
    market: Market,
    archive: Option<Arc<ArchiveClient>>,
) -> Option<Arc<dyn History>> {
    match t {
        HistoryType::Trades => Some(Arc::new(trades::BybitTrades { market, archive })),
        _ => None,
    }
}

/// A ready connection to Bybit: clock offset measured, symbols checked.
pub struct BybitSession {
    pub client: BybitClient,
    pub market: Market,
    clock_offset_ms: i64,
    /// Pages in flight for the whole job (`FETCH_CONCURRENCY`).
    pages: Arc<tokio::sync::Semaphore>,
    kline_page_limit: u32,
    /// The archive of trades (`BYBIT_ARCHIVE_URL`), where the job or `verify` reads it.
    archive: Option<Arc<ArchiveClient>>,
}

impl BybitSession {
    /// Measures the clock offset and checks that Bybit lists every symbol on the market.
    pub async fn connect(
        cfg: &VenueSettings,
        symbols: &[String],
        cancel: CancellationToken,
    ) -> Result<BybitSession, LoaderError> {
        let client = BybitClient::new(cfg, cancel).map_err(LoaderError::config)?;
        #[derive(Deserialize)]
        struct Empty {}
        let sent = chrono::Utc::now().timestamp_millis();
        let (_, server) = client
            .get::<Empty>(rules::TIME, &[])
            .await
            .map_err(|e| connect_error(e, cfg))?;
        let received = chrono::Utc::now().timestamp_millis();
        let server = server.ok_or_else(|| {
            LoaderError::Exchange(format!(
                "Bybit's {} answer has no time (BYBIT_API_URL {})",
                rules::TIME,
                cfg.api_url
            ))
        })?;
        let clock_offset_ms = server - (sent + received) / 2;
        for symbol in symbols {
            check_listed(&client, cfg.market, symbol).await?;
        }
        tracing::info!(
            clock_offset_ms,
            market = Venue::Bybit.market_name(cfg.market),
            budget = client.window.budget(),
            "connected to Bybit"
        );
        Ok(BybitSession {
            client,
            market: cfg.market,
            clock_offset_ms,
            pages: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1))),
            kline_page_limit: cfg.kline_page_limit,
            archive: None,
        })
    }

    /// The session with Bybit's archive of trades.
    pub fn with_archive(mut self, archive: Option<Arc<ArchiveClient>>) -> BybitSession {
        self.archive = archive;
        self
    }

    /// The category of the session's market.
    fn category(&self) -> &'static str {
        rules::category(self.market)
    }

    /// GETs `path` for `symbol` (with the session's category) and `params`, and returns its
    /// `result`; Bybit's refusal of the symbol is an error naming SYMBOL.
    async fn market_data<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        symbol: &str,
        params: &[(&'static str, String)],
    ) -> Result<T, LoaderError> {
        let mut query = vec![
            ("category", self.category().to_string()),
            ("symbol", symbol.to_string()),
        ];
        query.extend_from_slice(params);
        self.client
            .get::<T>(path, &query)
            .await
            .map(|(result, _)| result)
            .map_err(|e| request_error(e, self.market, Some(symbol)))
    }
}

impl crate::venue::Session for BybitSession {
    fn clock(&self) -> VenueClock {
        VenueClock {
            offset_ms: self.clock_offset_ms,
        }
    }

    fn rest_stats(&self) -> Arc<RestStats> {
        self.client.stats.clone()
    }

    fn budget(&self, _data_type: DataType) -> Arc<dyn RequestBudget> {
        self.client.window.clone()
    }

    fn history(self: Arc<Self>, t: HistoryType) -> Option<Arc<dyn History>> {
        // What Bybit serves is said once, in `serves`.
        serves(DataType::History(t), self.market).ok()?;
        match t {
            HistoryType::Trades => archive_history(t, self.market, self.archive.clone()),
            HistoryType::Candles(interval) => Some(Arc::new(klines::BybitKlines {
                interval,
                session: self,
            })),
            HistoryType::FundingRate => Some(Arc::new(funding::BybitFunding { session: self })),
            HistoryType::FuturesData(FuturesSeries::OpenInterest, period) => {
                Some(Arc::new(open_interest::BybitOpenInterest {
                    period,
                    session: self,
                }))
            }
            _ => None,
        }
    }

    fn live(
        self: Arc<Self>,
        scope: crate::venue::live::LiveScope,
        ws_url: String,
    ) -> Option<Arc<dyn crate::venue::live::LiveFeed>> {
        serves(DataType::Live(scope.live_type), self.market).ok()?;
        Some(Arc::new(live::BybitFeed {
            session: self,
            scope,
            ws_url,
        }))
    }
}

/// Rows of `(time, value)` Bybit sends as strings, oldest first; `what` names the time field
/// in the error for one that is not a number.
fn timed_rows(
    rows: impl Iterator<Item = (String, String)>,
    what: &str,
) -> Result<Vec<(i64, String)>, LoaderError> {
    let mut out = rows
        .map(|(time, value)| {
            let t = time.parse::<i64>().map_err(|_| {
                LoaderError::Exchange(format!(
                    "Bybit sent a {what} that is not a number: {time:?}"
                ))
            })?;
            Ok((t, value))
        })
        .collect::<Result<Vec<_>, LoaderError>>()?;
    out.sort_unstable_by_key(|r| r.0);
    Ok(out)
}

/// [`history::load_windows`](crate::venue::history::load_windows) with the session's page
/// slots.
async fn load_windows<R, F, Fut>(
    session: &BybitSession,
    ctx: &HistoryContext,
    windows: impl Iterator<Item = (i64, i64, u32)> + Send,
    fetch: F,
    out: &mut Emitter,
    push: impl FnMut(&mut RecordBatch, &R) -> Result<(), LoaderError>,
) -> Result<(), LoaderError>
where
    F: Fn(i64, i64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<R>, LoaderError>>,
{
    crate::venue::history::load_windows(&session.pages, ctx, windows, fetch, out, push).await
}

/// `instruments-info` of one symbol: an empty list means Bybit does not trade it on the market.
async fn check_listed(
    client: &BybitClient,
    market: Market,
    symbol: &str,
) -> Result<(), LoaderError> {
    #[derive(Deserialize)]
    struct Instruments {
        #[serde(default)]
        list: Vec<Instrument>,
    }
    #[derive(Deserialize)]
    struct Instrument {
        symbol: String,
    }
    let query = [
        ("category", rules::category(market).to_string()),
        ("symbol", symbol.to_string()),
    ];
    let listed = match client.get::<Instruments>(rules::INSTRUMENTS, &query).await {
        Ok((found, _)) => found.list.iter().any(|i| i.symbol == symbol),
        Err(BybitError::Rejected { code, .. }) if code == rules::PARAMETER_ERROR => false,
        Err(e) => return Err(request_error(e, market, Some(symbol))),
    };
    if listed {
        Ok(())
    } else {
        Err(not_listed(market, symbol))
    }
}

fn not_listed(market: Market, symbol: &str) -> LoaderError {
    LoaderError::config(format!(
        "SYMBOL {symbol} is not a Bybit {} symbol that is trading now (instruments-info lists no such \
         symbol); check the spelling and MARKET, e.g. {}",
        Venue::Bybit.market_name(market),
        match market {
            Market::Spot | Market::UsdM => "BTCUSDT",
            Market::CoinM => "BTCUSD",
        }
    ))
}

fn connect_error(e: BybitError, cfg: &VenueSettings) -> LoaderError {
    match e {
        BybitError::Cancelled { .. } => LoaderError::Cancelled,
        BybitError::Forbidden { .. } => LoaderError::Banned(e.to_string()),
        e => LoaderError::Exchange(format!(
            "cannot reach Bybit at BYBIT_API_URL {}: {e}",
            cfg.api_url
        )),
    }
}

/// Turns a request's failure into the loader's error, naming SYMBOL when Bybit says it is
/// wrong.
pub fn request_error(e: BybitError, market: Market, symbol: Option<&str>) -> LoaderError {
    match (&e, symbol) {
        (BybitError::Cancelled { .. }, _) => LoaderError::Cancelled,
        (BybitError::Forbidden { .. }, _) => LoaderError::Banned(format!(
            "{e}. The Job is not retried (exit 4); start it again after the ban"
        )),
        (BybitError::Rejected { code, msg, .. }, Some(s))
            if *code == rules::PARAMETER_ERROR && msg.to_ascii_lowercase().contains("symbol") =>
        {
            not_listed(market, s)
        }
        _ => LoaderError::Exchange(e.to_string()),
    }
}
