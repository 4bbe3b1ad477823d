//! Binance access: the endpoint list, the REST client with its weight limiter, the typed market
//! data API, and the session setup every job does first (clock offset, the exchange's weight
//! rule, checking the symbols exist).

pub mod api;
pub mod endpoint;
pub mod history;
pub mod limiter;
pub mod live;
mod markets;
pub mod rest;
pub mod spec;

use std::sync::Arc;

pub use kline_interval::Interval;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use endpoint::Endpoint;

use crate::error::LoaderError;
use crate::market::Market;
use crate::venue::history::{History, VenueClock};
use crate::venue::VenueSettings;
use bytes::Bytes;
use limiter::WeightLimiter;
use rest::{RestClient, RestError, RestStats, WeightRule};

/// A ready connection to the exchange: clock synchronised, weight rule known, symbols checked.
pub struct Exchange {
    pub client: RestClient,
    pub clock_offset_ms: i64,
    pub weight_rule: WeightRule,
    /// [`Paged`] slots: `FETCH_CONCURRENCY` for the whole job.
    pages: Arc<tokio::sync::Semaphore>,
    cancel: CancellationToken,
}

/// A page (or a window of pages) of REST data holding its slot from before its request until
/// it is dropped, once published: the pages a job has in flight or waiting are bounded by
/// `FETCH_CONCURRENCY` however many symbols it loads, and so is their memory.
pub struct Paged<T> {
    pub value: T,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl<T> std::ops::Deref for Paged<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl Exchange {
    /// Synchronises the clock, learns the weight rule and checks the symbols. `cancel` is the
    /// job's stop: every request of this session gives up when it fires.
    pub async fn connect(
        cfg: &VenueSettings,
        symbols: &[String],
        cancel: CancellationToken,
    ) -> Result<Exchange, LoaderError> {
        let stats = Arc::new(RestStats::default());
        let default_rule = WeightRule::documented(cfg.market);
        let provisional = Arc::new(WeightLimiter::new(
            default_rule.limit,
            default_rule.window,
            cfg.rate_limit_share,
            0,
            std::time::Duration::ZERO,
        ));
        let client = RestClient::new(cfg, provisional.clone(), stats.clone(), cancel.clone())
            .map_err(LoaderError::config)?;
        let (offset, rtt) = rest::clock_offset(&client).await.map_err(|e| match e {
            RestError::Cancelled { .. } => LoaderError::Cancelled,
            e @ RestError::RestrictedLocation { .. } => LoaderError::config(e.to_string()),
            e => match e.ban() {
                Some(ban) => LoaderError::Banned(ban),
                None => LoaderError::Exchange(format!(
                    "cannot reach Binance at {} {}: {e}",
                    cfg.market.rest_url_var().0,
                    cfg.api_url
                )),
            },
        })?;
        let body = exchange_info(&client, symbols).await?;
        for symbol in symbols {
            check_symbol_status(&body, cfg.market, symbol)?;
        }
        let rule = rest::weight_rule(&body).unwrap_or(default_rule);
        let limiter = Arc::new(WeightLimiter::new(
            rule.limit,
            rule.window,
            cfg.rate_limit_share,
            offset,
            rtt,
        ));
        // Carry what the set-up calls already spent in this window.
        limiter.carry(provisional.used());
        let client =
            RestClient::new(cfg, limiter, stats, cancel.clone()).map_err(LoaderError::config)?;
        tracing::info!(
            clock_offset_ms = offset,
            weight_limit = rule.limit,
            window_s = rule.window.as_secs_f64(),
            budget = client.limiter().budget(),
            "connected to Binance"
        );
        Ok(Exchange {
            client,
            clock_offset_ms: offset,
            weight_rule: rule,
            pages: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1))),
            cancel,
        })
    }

    /// Runs `fetch` once a page slot is free (slots are handed out in the order asked) and
    /// keeps the slot with its result. `fetch` must not wait for another slot: the pages of a
    /// stream ask in stream order, so a stream's first page is never behind its later ones and
    /// every symbol can go on.
    pub async fn paged<T>(
        &self,
        fetch: impl std::future::Future<Output = Result<T, LoaderError>>,
    ) -> Result<Paged<T>, LoaderError> {
        let slot = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(LoaderError::Cancelled),
            slot = self.pages.clone().acquire_owned() => slot.map_err(|_| LoaderError::Cancelled)?,
        };
        Ok(Paged {
            value: fetch.await?,
            _slot: slot,
        })
    }

    /// The exchange's current time in epoch ms.
    pub fn server_now_ms(&self) -> i64 {
        self.clock().now_ms()
    }

    /// The exchange's clock, as the generic layers take it.
    pub fn clock(&self) -> VenueClock {
        VenueClock {
            offset_ms: self.clock_offset_ms,
        }
    }
}

impl crate::venue::Session for Exchange {
    fn clock(&self) -> VenueClock {
        Exchange::clock(self)
    }

    fn rest_stats(&self) -> Arc<RestStats> {
        self.client.stats.clone()
    }

    fn budget(
        &self,
        _data_type: crate::registry::DataType,
    ) -> Arc<dyn crate::venue::requests::RequestBudget> {
        self.client.limiter().clone()
    }

    fn history(self: Arc<Self>, t: crate::registry::HistoryType) -> Option<Arc<dyn History>> {
        Some(history::history(t, Some(self)))
    }

    fn live(
        self: Arc<Self>,
        scope: crate::venue::live::LiveScope,
        ws_url: String,
    ) -> Option<Arc<dyn crate::venue::live::LiveFeed>> {
        Some(Arc::new(live::BinanceFeed {
            exchange: self,
            scope,
            ws_url,
        }))
    }
}

/// One `exchangeInfo` call for all symbols (spot: weight 20 whatever their number). When Binance
/// refuses the list, each symbol is asked alone so that the error names the wrong one. Futures
/// take no parameters and list every symbol (weight 1).
async fn exchange_info(client: &RestClient, symbols: &[String]) -> Result<Bytes, LoaderError> {
    let market = client.market();
    if market.is_futures() {
        return client
            .get(Endpoint::ExchangeInfo, &[])
            .await
            .map_err(|e| exchange_error(e, market, None));
    }
    let query = match symbols {
        [one] => vec![("symbol", one.clone())],
        many => vec![(
            "symbols",
            serde_json::to_string(many).unwrap_or_else(|_| "[]".into()),
        )],
    };
    match client.get(Endpoint::ExchangeInfo, &query).await {
        Ok(body) => Ok(body),
        Err(RestError::Binance { code: -1121, .. }) if symbols.len() > 1 => {
            for symbol in symbols {
                client
                    .get(Endpoint::ExchangeInfo, &[("symbol", symbol.clone())])
                    .await
                    .map_err(|e| exchange_error(e, market, Some(symbol)))?;
            }
            Err(LoaderError::config(format!(
                "SYMBOL {}: Binance refused the list although it accepts each symbol alone",
                symbols.join(",")
            )))
        }
        Err(e) => Err(exchange_error(
            e,
            market,
            symbols.first().map(String::as_str),
        )),
    }
}

/// Warns about a symbol that is not trading or, on futures (where `exchangeInfo` lists every
/// symbol), not listed.
fn check_symbol_status(body: &[u8], market: Market, symbol: &str) -> Result<(), LoaderError> {
    #[derive(Deserialize)]
    struct Info {
        #[serde(default)]
        symbols: Vec<Sym>,
    }
    #[derive(Deserialize)]
    struct Sym {
        symbol: String,
        /// Spot and USDⓈ-M say `status`, COIN-M `contractStatus`.
        #[serde(alias = "contractStatus")]
        status: Option<String>,
    }
    let Ok(info) = serde_json::from_slice::<Info>(body) else {
        return Ok(());
    };
    match info.symbols.iter().find(|s| s.symbol == symbol) {
        Some(s) => {
            let status = s.status.as_deref().unwrap_or("TRADING");
            if status != "TRADING" {
                tracing::warn!(
                    symbol,
                    status,
                    "symbol is not trading now; loading the history that exists"
                );
            }
            Ok(())
        }
        // Settled delivery contracts and delisted perpetuals leave the list but keep their
        // history (in the archive at least): a misspelt symbol is refused by the first data
        // request instead (-1121), with an error naming SYMBOL.
        None if market.is_futures() && !info.symbols.is_empty() => {
            tracing::warn!(
                symbol,
                %market,
                "exchangeInfo does not list this symbol (delisted or settled?); loading the history that exists"
            );
            Ok(())
        }
        None => Ok(()),
    }
}

/// Turns a REST failure into the loader's error, naming SYMBOL when Binance says it is wrong.
pub fn exchange_error(e: RestError, market: Market, symbol: Option<&str>) -> LoaderError {
    match (&e, symbol) {
        (RestError::Cancelled { .. }, _) => LoaderError::Cancelled,
        // Where the job runs is configuration: Kubernetes must not retry it (exit 2).
        (RestError::RestrictedLocation { .. }, _) => LoaderError::config(e.to_string()),
        (RestError::RetryAfterTooLong { .. } | RestError::Forbidden { .. }, _) => {
            LoaderError::Banned(e.ban().unwrap_or_else(|| e.to_string()))
        }
        (RestError::Binance { code: -1121, msg, .. }, Some(s)) => LoaderError::config(format!(
            "SYMBOL {s} is not a Binance {market} symbol (Binance: {msg:?}, code -1121); check the spelling and MARKET, e.g. {}",
            market.example_symbol()
        )),
        (RestError::Binance { code: -1100, msg, .. }, Some(s)) => {
            LoaderError::config(format!("SYMBOL {s} was refused by Binance: {msg} (code -1100)"))
        }
        _ => LoaderError::Exchange(e.to_string()),
    }
}
