//! OKX (`EXCHANGE=okx`): its v5 REST API for the spot, swap (perpetual) and futures (dated)
//! markets. Its rules live in [`rules`], the client that keeps to them in [`rest`], and what it
//! serves of each history type in [`klines`], [`trades`], [`funding`] and [`open_interest`];
//! its live types come from its public WebSocket ([`live`]). A session ([`OkxSession`]) is
//! what the job and `verify` take through the seam. OKX's terms restrict redistributing its market data (the
//! README says so).

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
use crate::registry::{DataType, FuturesSeries, HistoryType};
use crate::source_mode::SourceMode;
use crate::venue::history::{History, VenueClock};
use crate::venue::requests::{RequestBudget, RestStats};
use crate::venue::VenueSettings;
use rest::{OkxClient, OkxError};

/// Whether OKX serves `data_type` on `market` through this loader; `Err` says what it does
/// serve. Candles over REST, every bar OKX aligns to UTC, on every market; trades over REST,
/// the last three months, on every market; funding rates of
/// the perpetuals (`MARKET=swap`), the last three months; open interest of the contracts
/// (`swap`, `futures`), the latest 1,440 periods. Live: trades, closed candles of the same bars,
/// the best bid and ask and a local order book, on every market.
pub fn serves(data_type: DataType, market: Market) -> Result<(), String> {
    match data_type {
        DataType::History(HistoryType::FuturesData(FuturesSeries::OpenInterest, _))
            if market == Market::Spot =>
        {
            Err(format!(
                "TYPE {} is not offered on OKX's spot market: use MARKET=swap or futures",
                data_type.name()
            ))
        }
        DataType::History(HistoryType::FuturesData(FuturesSeries::OpenInterest, period)) => {
            match rules::open_interest_period(period) {
                Some(_) => Ok(()),
                None => Err(format!(
                    "TYPE {}: OKX has no {} open interest (its periods: {})",
                    data_type.name(),
                    period.as_str(),
                    rules::OPEN_INTEREST_PERIODS
                )),
            }
        }
        DataType::History(HistoryType::FundingRate) if market == Market::UsdM => Ok(()),
        DataType::History(HistoryType::FundingRate) => Err(format!(
            "TYPE {} is offered on OKX's perpetuals only: use MARKET=swap",
            data_type.name()
        )),
        DataType::History(HistoryType::Trades) => Ok(()),
        DataType::History(HistoryType::Candles(iv)) => match rules::bar(iv) {
            Some(_) => Ok(()),
            None => Err(format!(
                "TYPE {}: OKX has no {} candles aligned to UTC (its bars: {})",
                data_type.name(),
                iv.as_str(),
                rules::BARS
            )),
        },
        DataType::Live(t) => {
            live::streams(t, market).map_err(|e| format!("TYPE {}: {e}", data_type.name()))
        }
        other => Err(format!(
            "TYPE {} is not loaded from OKX yet: EXCHANGE=okx loads candles \
             (api_candles_<interval>), trades (api_raw_trades), funding rates \
             (api_funding_rate) and open interest (api_open_interest_<period>), and streams \
             ws_trades, ws_candles_<interval>, ws_bookticker, ws_orderbook and ws_liquidations",
            other.name()
        )),
    }
}

/// Whether `source` can load `data_type` from OKX: trades from its archive and REST, the
/// rest over REST (the loader reads no other archive of OKX's).
pub fn serves_from(data_type: DataType, source: SourceMode) -> Result<(), String> {
    let trades = data_type == DataType::History(HistoryType::Trades);
    match source {
        SourceMode::Archive if !trades => Err(
            "SOURCE=archive: OKX's candles, funding rates and open interest are loaded over \
             REST (the loader reads OKX's archive of trades only); use SOURCE=auto or rest"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// The history of `t` from OKX's archive alone, without a REST session (`SOURCE=archive`):
/// `None` for a type the loader does not read from OKX's archive.
pub fn archive_history(
    t: HistoryType,
    market: Market,
    archive: Option<Arc<ArchiveClient>>,
) -> Option<Arc<dyn History>> {
    match t {
        HistoryType::Trades => Some(Arc::new(trades::OkxTrades {
            market,
            session: None,
            archive,
        })),
        _ => None,
    }
}

/// The endpoint a load of `data_type` spends (each has its own limit).
fn endpoint_of(data_type: DataType) -> &'static str {
    match data_type {
        DataType::History(HistoryType::FundingRate) => rules::FUNDING,
        DataType::History(HistoryType::Trades) => rules::TRADES,
        DataType::History(HistoryType::FuturesData(..)) => rules::OPEN_INTEREST,
        _ => rules::CANDLES,
    }
}

/// A ready connection to OKX: clock offset measured, instruments checked.
pub struct OkxSession {
    pub client: OkxClient,
    pub market: Market,
    clock_offset_ms: i64,
    /// Pages in flight for the whole job (`FETCH_CONCURRENCY`).
    pages: Arc<tokio::sync::Semaphore>,
    /// `FETCH_CONCURRENCY`: how many windows of a span may be asked at once.
    concurrency: usize,
    kline_page_limit: u32,
    /// The archive of trades (`OKX_ARCHIVE_URL`), where the job or `verify` reads it.
    archive: Option<Arc<ArchiveClient>>,
}

impl OkxSession {
    /// Measures the clock offset and checks that OKX lists every instrument on the market.
    pub async fn connect(
        cfg: &VenueSettings,
        symbols: &[String],
        cancel: CancellationToken,
    ) -> Result<OkxSession, LoaderError> {
        let client = OkxClient::new(cfg, cancel).map_err(LoaderError::config)?;
        #[derive(Deserialize)]
        struct Time {
            ts: String,
        }
        let sent = chrono::Utc::now().timestamp_millis();
        let answer = client
            .get::<Time>(rules::TIME, &[])
            .await
            .map_err(|e| connect_error(e, cfg))?;
        let received = chrono::Utc::now().timestamp_millis();
        let server = answer
            .first()
            .and_then(|t| t.ts.parse::<i64>().ok())
            .ok_or_else(|| {
                LoaderError::Exchange(format!(
                    "OKX's {} answer has no time (OKX_API_URL {})",
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
            market = Venue::Okx.market_name(cfg.market),
            "connected to OKX"
        );
        Ok(OkxSession {
            client,
            market: cfg.market,
            clock_offset_ms,
            pages: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1))),
            concurrency: cfg.concurrency.max(1),
            kline_page_limit: cfg.kline_page_limit,
            archive: None,
        })
    }

    /// The session with the archive the job or `verify` reads, if any.
    pub fn with_archive(mut self, archive: Option<Arc<ArchiveClient>>) -> OkxSession {
        self.archive = archive;
        self
    }
}

impl crate::venue::Session for OkxSession {
    fn clock(&self) -> VenueClock {
        VenueClock {
            offset_ms: self.clock_offset_ms,
        }
    }

    fn rest_stats(&self) -> Arc<RestStats> {
        self.client.stats.clone()
    }

    fn budget(&self, data_type: DataType) -> Arc<dyn RequestBudget> {
        self.client.window(endpoint_of(data_type))
    }

    fn history(self: Arc<Self>, t: HistoryType) -> Option<Arc<dyn History>> {
        serves(DataType::History(t), self.market).ok()?;
        match t {
            HistoryType::Candles(interval) => Some(Arc::new(klines::OkxKlines {
                interval,
                session: self,
            })),
            HistoryType::Trades => Some(Arc::new(trades::OkxTrades {
                market: self.market,
                archive: self.archive.clone(),
                session: Some(self),
            })),
            HistoryType::FundingRate => Some(Arc::new(funding::OkxFunding { session: self })),
            HistoryType::FuturesData(FuturesSeries::OpenInterest, period) => {
                Some(Arc::new(open_interest::OkxOpenInterest {
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
        Some(Arc::new(live::OkxFeed::new(self, scope, ws_url)))
    }
}

/// `instruments` of one instrument: OKX answers 51001 (or nothing) for one it does not list.
/// It lists only instruments that trade (or will): a delivered future or a delisted pair is
/// asked about at history-candles, which still serves its history, and refused only where that
/// does not know it either.
async fn check_listed(
    client: &OkxClient,
    market: Market,
    inst_id: &str,
) -> Result<(), LoaderError> {
    #[derive(Deserialize)]
    struct Instrument {
        #[serde(rename = "instId")]
        inst_id: String,
        #[serde(default)]
        state: String,
    }
    let query = [
        ("instType", rules::inst_type(market).to_string()),
        ("instId", inst_id.to_string()),
    ];
    match client.get::<Instrument>(rules::INSTRUMENTS, &query).await {
        Ok(found) => match found.iter().find(|i| i.inst_id == inst_id) {
            // A suspended or not yet open instrument still has its history.
            Some(i) if i.state != "live" => {
                tracing::warn!(inst_id, state = %i.state, "OKX lists the instrument, not trading now");
                return Ok(());
            }
            Some(_) => return Ok(()),
            None => {}
        },
        Err(OkxError::Rejected { code, .. }) if code == rules::NO_SUCH_INSTRUMENT => {}
        Err(e) => return Err(request_error(e, market, Some(inst_id))),
    }
    // Another market's instrument is no delivered one of this market.
    if !rules::has_form_of(market, inst_id) {
        return Err(not_listed(market, inst_id));
    }
    let query = [
        ("instId", inst_id.to_string()),
        ("bar", "1Dutc".to_string()),
        ("limit", "1".to_string()),
    ];
    match client
        .get::<serde_json::Value>(rules::CANDLES, &query)
        .await
    {
        Ok(_) => {
            tracing::warn!(
                inst_id,
                market = Venue::Okx.market_name(market),
                "OKX does not list the instrument as trading (delivered or delisted); loading its history"
            );
            Ok(())
        }
        Err(e) => Err(request_error(e, market, Some(inst_id))),
    }
}

fn not_listed(market: Market, inst_id: &str) -> LoaderError {
    LoaderError::config(format!(
        "SYMBOL {inst_id} is not an OKX {} instrument (instruments lists no such instId); check \
         the spelling and MARKET: OKX's instruments look like {}",
        Venue::Okx.market_name(market),
        rules::example_inst(market)
    ))
}

fn connect_error(e: OkxError, cfg: &VenueSettings) -> LoaderError {
    match e {
        OkxError::Cancelled { .. } => LoaderError::Cancelled,
        e => LoaderError::Exchange(format!(
            "cannot reach OKX at OKX_API_URL {}: {e}",
            cfg.api_url
        )),
    }
}

/// Turns a request's failure into the loader's error, naming SYMBOL when OKX says the
/// instrument does not exist.
pub fn request_error(e: OkxError, market: Market, inst_id: Option<&str>) -> LoaderError {
    match (&e, inst_id) {
        (OkxError::Cancelled { .. }, _) => LoaderError::Cancelled,
        (OkxError::Rejected { code, .. }, Some(s)) if code == rules::NO_SUCH_INSTRUMENT => {
            not_listed(market, s)
        }
        _ => LoaderError::Exchange(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_reports_the_budget_of_the_endpoint_it_spends() {
        let parse = |t: &str| DataType::parse(t, None).unwrap();
        assert_eq!(endpoint_of(parse("api_candles_1h")), rules::CANDLES);
        assert_eq!(endpoint_of(parse("api_funding_rate")), rules::FUNDING);
        assert_eq!(
            endpoint_of(parse("api_open_interest_5m")),
            rules::OPEN_INTEREST
        );
        // Every type OKX serves spends an endpoint the client has a window for.
        assert_eq!(endpoint_of(parse("api_raw_trades")), rules::TRADES);
        for t in [
            "api_candles_1m",
            "api_raw_trades",
            "api_funding_rate",
            "api_open_interest_1d",
        ] {
            assert!(rules::ENDPOINTS.contains(&endpoint_of(parse(t))), "{t}");
        }
    }
}
