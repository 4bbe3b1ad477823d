//! Every Binance REST endpoint the loader calls, written once: its path and the request weight
//! Binance charges for it. The weights were checked against Binance's spot API documentation
//! (REST API › market data endpoints, 2025): a wrong weight here means either wasted budget or
//! a 429, so nothing else in the crate names a path or a weight.

/// A Binance spot REST endpoint, with the parameters its weight depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/v3/time`: server time.
    Time,
    /// `GET /api/v3/exchangeInfo`: symbols, their status and the rate limits. Weight 20 with or
    /// without `symbol`/`symbols`.
    ExchangeInfo,
    /// `GET /api/v3/klines`: up to 1,000 candles.
    Klines,
    /// `GET /api/v3/aggTrades`: up to 1,000 aggregate trades (weight 4 since 2025-03-10).
    AggTrades,
    /// `GET /api/v3/historicalTrades`: up to 1,000 raw trades by id.
    HistoricalTrades,
    /// `GET /api/v3/depth` with `limit` levels a side (weight grows with the limit).
    Depth { limit: u32 },
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Time => "/api/v3/time",
            Endpoint::ExchangeInfo => "/api/v3/exchangeInfo",
            Endpoint::Klines => "/api/v3/klines",
            Endpoint::AggTrades => "/api/v3/aggTrades",
            Endpoint::HistoricalTrades => "/api/v3/historicalTrades",
            Endpoint::Depth { .. } => "/api/v3/depth",
        }
    }

    /// The request weight Binance charges.
    pub fn weight(self) -> u32 {
        match self {
            Endpoint::Time => 1,
            Endpoint::ExchangeInfo => 20,
            Endpoint::Klines => 2,
            Endpoint::AggTrades => 4,
            Endpoint::HistoricalTrades => 25,
            Endpoint::Depth { limit } => match limit {
                0..=100 => 5,
                101..=500 => 25,
                501..=1000 => 50,
                _ => 250,
            },
        }
    }
}

/// The largest order-book snapshot Binance serves (`/api/v3/depth?limit=5000`).
pub const MAX_DEPTH_LIMIT: u32 = 5000;

/// The largest page of klines, aggregate trades or raw trades.
pub const MAX_PAGE_LIMIT: u32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_weight_follows_the_limit() {
        let w = |limit| Endpoint::Depth { limit }.weight();
        assert_eq!((w(20), w(100), w(101), w(500)), (5, 5, 25, 25));
        assert_eq!((w(1000), w(1001), w(5000)), (50, 250, 250));
        assert_eq!(Endpoint::ExchangeInfo.weight(), 20);
        assert_eq!(
            Endpoint::HistoricalTrades.path(),
            "/api/v3/historicalTrades"
        );
    }
}
