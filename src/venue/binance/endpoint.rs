//! Every Binance REST endpoint the loader calls, written once: its path and what Binance charges
//! for it in each market. Spot weights were checked against Binance's spot API documentation
//! (REST API › market data endpoints, 2025), futures weights against the USDⓈ-M and COIN-M
//! documentation: a wrong weight here means either wasted budget or a 429, so nothing else in
//! the crate names a path or a weight.

use std::time::Duration;

use crate::market::{Market, Venue};
use crate::registry::{FuturesSeries, PriceSeries};
pub use crate::venue::history::Horizon;

/// A Binance REST endpoint, with the parameters its weight depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `time`: server time.
    Time,
    /// `exchangeInfo`: symbols, their status and the rate limits. Spot: weight 20 with or
    /// without `symbol`/`symbols`; futures: weight 1, no parameters, every symbol.
    ExchangeInfo,
    /// `klines` with `limit` rows (futures charge by the limit).
    Klines { limit: u32 },
    /// Futures only: `markPriceKlines`, `indexPriceKlines`, `premiumIndexKlines`.
    PriceKlines { series: PriceSeries, limit: u32 },
    /// `aggTrades`: up to 1,000 aggregate trades (spot weight 4 since 2025-03-10; futures 20).
    AggTrades,
    /// `historicalTrades`: raw trades by id (spot 1,000 a page for 25; futures 500 for 20).
    HistoricalTrades,
    /// `depth` with `limit` levels a side (the weight grows with the limit).
    Depth { limit: u32 },
    /// Futures only: `fundingRate`, up to 1,000 rows. Its own limit of 500 requests per 5
    /// minutes per IP; COIN-M also documents weight 1, which is charged on both markets (an
    /// unneeded unit of weight costs nothing, a missing one could cost a 429).
    FundingRate,
    /// Futures only: the `/futures/data/` statistics (open interest, long/short ratios). Their
    /// own limit of 1,000 requests per 5 minutes per IP, and weight 1 as `FundingRate`.
    FuturesData(FuturesSeries),
}

/// Binance's names of the price series: its endpoints and archive directories.
impl PriceSeries {
    /// The endpoint and archive directory name.
    pub fn endpoint_name(self) -> &'static str {
        match self {
            PriceSeries::Mark => "markPriceKlines",
            PriceSeries::Index => "indexPriceKlines",
            PriceSeries::Premium => "premiumIndexKlines",
        }
    }

    /// Index klines are asked by `pair`, the others by `symbol`.
    pub fn by_pair(self) -> bool {
        self == PriceSeries::Index
    }
}

/// Binance's names of the `/futures/data/` series and how COIN-M keeps them.
impl FuturesSeries {
    pub fn endpoint_name(self) -> &'static str {
        match self {
            FuturesSeries::OpenInterest => "openInterestHist",
            FuturesSeries::GlobalAccountRatio => "globalLongShortAccountRatio",
            FuturesSeries::TopAccountRatio => "topLongShortAccountRatio",
            FuturesSeries::TopPositionRatio => "topLongShortPositionRatio",
        }
    }

    /// What COIN-M keeps the series per (COIN-M "Open Interest Statistics": `pair` and
    /// `contractType`; the long/short ratio endpoints: `pair` alone). Either way one series
    /// stands for every contract of a pair, and a delivery contract is the current or next
    /// quarter depending on the date, so only the perpetual (`<PAIR>_PERP`) names it
    /// unambiguously, and two contracts of one pair would publish one series twice.
    pub fn coinm_kept_per(self) -> &'static str {
        match self {
            FuturesSeries::OpenInterest => "contract type",
            _ => "pair",
        }
    }
}

/// Why `symbol` cannot name COIN-M's `series`, if it cannot (see
/// [`FuturesSeries::coinm_kept_per`]).
pub fn coinm_series_symbol_error(series: FuturesSeries, symbol: &str) -> Option<String> {
    let pair = Market::CoinM.pair_of(symbol);
    (!symbol.ends_with("_PERP")).then(|| {
        format!(
            "SYMBOL {symbol}: COIN-M keeps {} per {}, not per delivery contract; load the perpetual \
             ({pair}_PERP), whose records stand for the pair",
            series.endpoint_name(),
            series.coinm_kept_per()
        )
    })
}

/// A limit counted in requests rather than weight, kept separately by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestLimit {
    pub name: &'static str,
    pub requests: u32,
    pub window: Duration,
}

/// `fundingRate`'s limit (shared with `fundingInfo`, which the loader does not call).
pub const FUNDING_RATE_LIMIT: RequestLimit = RequestLimit {
    name: "fundingRate",
    requests: 500,
    window: Duration::from_secs(300),
};

/// The `/futures/data/` endpoints' limit.
pub const FUTURES_DATA_LIMIT: RequestLimit = RequestLimit {
    name: "futures/data",
    requests: 1000,
    window: Duration::from_secs(300),
};

/// What a request costs: request weight from the market's budget, or one request of its own
/// limit (plus one unit of weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    Weight(u32),
    Request(RequestLimit),
}

/// The weight a request-counted endpoint is charged as well.
pub const REQUEST_COUNTED_WEIGHT: u32 = 1;

impl Endpoint {
    /// The path in `market`, appended to the market's base URL.
    pub fn path(self, market: Market) -> String {
        let name = match self {
            Endpoint::Time => "time",
            Endpoint::ExchangeInfo => "exchangeInfo",
            Endpoint::Klines { .. } => "klines",
            Endpoint::PriceKlines { series, .. } => series.endpoint_name(),
            Endpoint::AggTrades => "aggTrades",
            Endpoint::HistoricalTrades => "historicalTrades",
            Endpoint::Depth { .. } => "depth",
            Endpoint::FundingRate => "fundingRate",
            Endpoint::FuturesData(series) => {
                return format!("/futures/data/{}", series.endpoint_name())
            }
        };
        format!("{}/{name}", market.api_prefix())
    }

    /// Whether the request needs `X-MBX-APIKEY` in `market` (security type MARKET_DATA): futures
    /// `historicalTrades` ("Old Trades Lookup" on USDⓈ-M and COIN-M). Spot's became NONE on
    /// 2023-07-11 (spot change log); every other market-data endpoint is NONE.
    pub fn needs_api_key(self, market: Market) -> bool {
        matches!(self, Endpoint::HistoricalTrades) && market.is_futures()
    }

    /// What Binance charges for the request in `market`.
    pub fn cost(self, market: Market) -> Cost {
        if market == Market::Spot {
            return Cost::Weight(match self {
                Endpoint::Time => 1,
                Endpoint::ExchangeInfo => 20,
                Endpoint::Klines { .. } | Endpoint::PriceKlines { .. } => 2,
                Endpoint::AggTrades => 4,
                Endpoint::HistoricalTrades => 25,
                Endpoint::Depth { limit } => match limit {
                    0..=100 => 5,
                    101..=500 => 25,
                    501..=1000 => 50,
                    _ => 250,
                },
                Endpoint::FundingRate | Endpoint::FuturesData(_) => 1,
            });
        }
        Cost::Weight(match self {
            Endpoint::Time | Endpoint::ExchangeInfo => 1,
            Endpoint::Klines { limit } | Endpoint::PriceKlines { limit, .. } => match limit {
                0..=99 => 1,
                100..=499 => 2,
                500..=1000 => 5,
                _ => 10,
            },
            Endpoint::AggTrades | Endpoint::HistoricalTrades => 20,
            Endpoint::Depth { limit } => match limit {
                0..=50 => 2,
                51..=100 => 5,
                101..=500 => 10,
                _ => 20,
            },
            Endpoint::FundingRate => return Cost::Request(FUNDING_RATE_LIMIT),
            Endpoint::FuturesData(_) => return Cost::Request(FUTURES_DATA_LIMIT),
        })
    }

    /// The request weight charged to the market's budget.
    pub fn weight(self, market: Market) -> u32 {
        match self.cost(market) {
            Cost::Weight(w) => w,
            Cost::Request(_) => REQUEST_COUNTED_WEIGHT,
        }
    }
}

/// USDⓈ-M and COIN-M `aggTrades` (`/fapi/v1/aggTrades`, `/dapi/v1/aggTrades`) serve trades no
/// older than one year: Binance derivatives change log of 2024-10-10, effective 2024-10-17, and
/// the endpoints' documentation ("support querying futures trade histories that are not older
/// than one year"). Counted as 365 days, which no year is shorter than. What Binance answers
/// about older trades is not documented.
pub const FUTURES_AGG_TRADES_HORIZON: Horizon = Horizon {
    venue: Venue::Binance,
    ms: 365 * 86_400_000,
    span: "the last year",
    what: "aggregate trades",
};

impl Endpoint {
    /// How far back the endpoint serves history in `market`; `None` where Binance sets no limit.
    /// Futures raw trades are found by time through `aggTrades`, so that limit holds for them
    /// too wherever a time is looked up.
    pub fn horizon(self, market: Market) -> Option<Horizon> {
        match (self, market) {
            (Endpoint::AggTrades, Market::UsdM | Market::CoinM) => Some(FUTURES_AGG_TRADES_HORIZON),
            _ => None,
        }
    }
}

/// Whether `aggTrades` answers `startTime` alone with the first trades at or after it, however
/// long ago: spot since 2023-07-11 (spot change log; weight 4). Futures keep the one-hour window
/// between `startTime` and `endTime`, so a time there is found through a window and, past it, a
/// search over ids.
pub fn agg_trades_from_start_alone(market: Market) -> bool {
    market == Market::Spot
}

/// The largest page of aggregate trades, funding rates; spot's klines and raw trades.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// How `fundingRate` is paged in `market`: `None` where Binance documents that a request
/// holding more than `limit` rows answers the oldest ones ("return as startTime + limit",
/// USDⓈ-M "Get Funding Rate History"), so pages follow the last time seen; on COIN-M, which
/// documents no order (and whose klines answer the newest rows when both bounds are sent),
/// windows of `MAX_PAGE_LIMIT - 1` hours: funding settles at most hourly (the shortest
/// `fundingIntervalHours` Binance sets is 1), so a window holds fewer rows than a page,
/// whatever order they come in, and a full page can only mean more settlements than that.
pub fn funding_window_ms(market: Market) -> Option<i64> {
    match market {
        Market::CoinM => Some((MAX_PAGE_LIMIT as i64 - 1) * 3_600_000),
        Market::Spot | Market::UsdM => None,
    }
}

/// The largest page of `/futures/data/` rows.
pub const MAX_FUTURES_DATA_PAGE: u32 = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_weights() {
        let w = |limit| Endpoint::Depth { limit }.weight(Market::Spot);
        assert_eq!((w(20), w(100), w(101), w(500)), (5, 5, 25, 25));
        assert_eq!((w(1000), w(1001), w(5000)), (50, 250, 250));
        assert_eq!(Endpoint::ExchangeInfo.weight(Market::Spot), 20);
        assert_eq!(Endpoint::Klines { limit: 1000 }.weight(Market::Spot), 2);
        assert_eq!(
            Endpoint::HistoricalTrades.path(Market::Spot),
            "/api/v3/historicalTrades"
        );
    }

    #[test]
    fn futures_weights_follow_the_limit() {
        for m in [Market::UsdM, Market::CoinM] {
            let k = |limit| Endpoint::Klines { limit }.weight(m);
            assert_eq!((k(1), k(99), k(100), k(499)), (1, 1, 2, 2));
            assert_eq!((k(500), k(1000), k(1001), k(1500)), (5, 5, 10, 10));
            let d = |limit| Endpoint::Depth { limit }.weight(m);
            assert_eq!((d(5), d(50), d(100), d(500), d(1000)), (2, 2, 5, 10, 20));
            assert_eq!(Endpoint::AggTrades.weight(m), 20);
            assert_eq!(Endpoint::HistoricalTrades.weight(m), 20);
            assert_eq!(Endpoint::ExchangeInfo.weight(m), 1);
            assert_eq!(
                Endpoint::FundingRate.cost(m),
                Cost::Request(FUNDING_RATE_LIMIT)
            );
        }
        assert_eq!(
            Endpoint::Klines { limit: 1 }.path(Market::CoinM),
            "/dapi/v1/klines"
        );
        assert_eq!(
            Endpoint::PriceKlines {
                series: PriceSeries::Index,
                limit: 1
            }
            .path(Market::UsdM),
            "/fapi/v1/indexPriceKlines"
        );
        assert_eq!(
            Endpoint::FuturesData(FuturesSeries::OpenInterest).path(Market::CoinM),
            "/futures/data/openInterestHist"
        );
    }

    #[test]
    fn only_futures_aggregate_trades_have_a_rest_horizon() {
        assert_eq!(Endpoint::AggTrades.horizon(Market::Spot), None);
        assert_eq!(Endpoint::HistoricalTrades.horizon(Market::UsdM), None);
        let h = Endpoint::AggTrades.horizon(Market::UsdM).unwrap();
        assert_eq!(Endpoint::AggTrades.horizon(Market::CoinM), Some(h));
        assert_eq!(h.oldest(400 * 86_400_000), 35 * 86_400_000);
        assert_eq!(
            h.reason(Market::UsdM),
            "Binance's REST serves USDⓈ-M aggregate trades of the last year only"
        );
    }
}

/// What Binance's answers other than 2xx, 429 and 418 mean, from the spot REST documentation
/// ("HTTP Return Codes", `rest-api.md`, and "10xx - General Server or Network issues",
/// `errors.md`); the USDⓈ-M and COIN-M pages list the same statuses and codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Try again later: a 5xx ("the execution status is UNKNOWN"), HTTP 408 (a timeout waiting
    /// for the backend), or one of [`TRY_AGAIN_CODES`] whatever the status.
    TryAgain,
    /// HTTP 451: Binance refuses requests from a restricted location (its terms, "b.
    /// Eligibility"); no retry from the same place helps.
    RestrictedLocation,
    /// Anything else: the request itself is wrong; retrying it changes nothing.
    Final,
}

/// Error codes that mean "unknown outcome, try again": -1000 UNKNOWN, -1001 DISCONNECTED,
/// -1006 UNEXPECTED_RESP, -1007 TIMEOUT, -1008 SERVER_BUSY (`errors.md`). A market-data GET
/// changes nothing on Binance, so repeating it is always safe.
pub const TRY_AGAIN_CODES: [i64; 5] = [-1000, -1001, -1006, -1007, -1008];

/// Classifies an answer by its HTTP status and, when the body has one, Binance's error code.
pub fn answer(status: u16, code: Option<i64>) -> Answer {
    match status {
        451 => Answer::RestrictedLocation,
        408 | 500..=599 => Answer::TryAgain,
        _ if code.is_some_and(|c| TRY_AGAIN_CODES.contains(&c)) => Answer::TryAgain,
        _ => Answer::Final,
    }
}

#[cfg(test)]
mod answer_tests {
    use super::*;

    #[test]
    fn try_again_answers_are_the_documented_ones() {
        assert_eq!(answer(408, None), Answer::TryAgain);
        assert_eq!(answer(503, None), Answer::TryAgain);
        assert_eq!(answer(400, Some(-1008)), Answer::TryAgain);
        assert_eq!(answer(400, Some(-1121)), Answer::Final);
        assert_eq!(answer(404, None), Answer::Final);
        assert_eq!(answer(451, Some(0)), Answer::RestrictedLocation);
    }
}
