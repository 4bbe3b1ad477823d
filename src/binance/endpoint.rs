//! Every Binance REST endpoint the loader calls, written once: its path and what Binance charges
//! for it in each market. Spot weights were checked against Binance's spot API documentation
//! (REST API › market data endpoints, 2025), futures weights against the USDⓈ-M and COIN-M
//! documentation: a wrong weight here means either wasted budget or a 429, so nothing else in
//! the crate names a path or a weight.

use std::time::Duration;

use crate::market::Market;

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

/// The price series futures publish as candles besides trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PriceSeries {
    /// Mark price (`markPriceKlines?symbol=`).
    Mark,
    /// Index price (`indexPriceKlines?pair=`).
    Index,
    /// Premium index (`premiumIndexKlines?symbol=`).
    Premium,
}

impl PriceSeries {
    pub const ALL: [PriceSeries; 3] = [PriceSeries::Mark, PriceSeries::Index, PriceSeries::Premium];

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

/// The `/futures/data/` series, one row per period, kept for the last 30 days only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FuturesSeries {
    /// `openInterestHist`.
    OpenInterest,
    /// `globalLongShortAccountRatio`: the long/short ratio of all accounts.
    GlobalAccountRatio,
    /// `topLongShortAccountRatio`: of the top traders' accounts.
    TopAccountRatio,
    /// `topLongShortPositionRatio`: of the top traders' positions.
    TopPositionRatio,
}

impl FuturesSeries {
    pub fn endpoint_name(self) -> &'static str {
        match self {
            FuturesSeries::OpenInterest => "openInterestHist",
            FuturesSeries::GlobalAccountRatio => "globalLongShortAccountRatio",
            FuturesSeries::TopAccountRatio => "topLongShortAccountRatio",
            FuturesSeries::TopPositionRatio => "topLongShortPositionRatio",
        }
    }
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

/// The largest page of aggregate trades, funding rates; spot's klines and raw trades.
pub const MAX_PAGE_LIMIT: u32 = 1000;

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
}
