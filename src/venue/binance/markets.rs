//! What Binance does differently in each of its markets: hosts, path prefixes, page, depth and
//! connection limits, the archive root, how symbols are spelled. The limits are those of Binance's
//! spot, USDⓈ-M and COIN-M API documentation, named per rule; `market` keeps only the markets'
//! names and record keys.

use crate::market::Market;

impl Market {
    /// The REST path prefix of the market's versioned endpoints.
    pub fn api_prefix(self) -> &'static str {
        match self {
            Market::Spot => "/api/v3",
            Market::UsdM => "/fapi/v1",
            Market::CoinM => "/dapi/v1",
        }
    }

    /// The variable that overrides the REST base URL, and its default.
    pub fn rest_url_var(self) -> (&'static str, &'static str) {
        match self {
            Market::Spot => ("BINANCE_API_URL", "https://api.binance.com"),
            Market::UsdM => ("BINANCE_FAPI_URL", "https://fapi.binance.com"),
            Market::CoinM => ("BINANCE_DAPI_URL", "https://dapi.binance.com"),
        }
    }

    /// The variable that overrides the WebSocket base URL, and its default.
    pub fn ws_url_var(self) -> (&'static str, &'static str) {
        match self {
            Market::Spot => ("BINANCE_WS_URL", "wss://stream.binance.com:9443"),
            Market::UsdM => ("BINANCE_FWS_URL", "wss://fstream.binance.com"),
            Market::CoinM => ("BINANCE_DWS_URL", "wss://dstream.binance.com"),
        }
    }

    /// Where the market's files live on data.binance.vision.
    pub fn archive_root(self) -> &'static str {
        match self {
            Market::Spot => "data/spot",
            Market::UsdM => "data/futures/um",
            Market::CoinM => "data/futures/cm",
        }
    }

    /// The most klines (and mark/index/premium klines) one request may ask for ("Kline/Candlestick
    /// Data": `limit` max 1000 on spot, 1500 on USDⓈ-M and COIN-M).
    pub fn max_kline_page(self) -> u32 {
        match self {
            Market::Spot => 1000,
            Market::UsdM | Market::CoinM => 1500,
        }
    }

    /// Klines requested per page by default. Futures charge by `limit` (1 below 100, 2 below
    /// 500, 5 up to 1,000, 10 above), so 499 rows for 2 is the most candles per unit of
    /// weight: 250 a unit against 200 at 1,000 and 150 at 1,500.
    pub fn default_kline_page(self) -> u32 {
        match self {
            Market::Spot => 1000,
            Market::UsdM | Market::CoinM => 499,
        }
    }

    /// The longest `[startTime, endTime]` a klines request may span (COIN-M "Kline/Candlestick
    /// Data": at most 200 days between the two).
    pub fn max_kline_span_ms(self) -> Option<i64> {
        match self {
            Market::CoinM => Some(200 * 86_400_000),
            _ => None,
        }
    }

    /// The most raw trades one `historicalTrades` request returns (spot "Old trade lookup" and
    /// futures "Old Trades Lookup": `limit` max 1000 and 500).
    pub fn max_trades_page(self) -> u32 {
        match self {
            Market::Spot => 1000,
            Market::UsdM | Market::CoinM => 500,
        }
    }

    /// The deepest order-book snapshot the market serves ("Order Book": spot `limit` up to 5000,
    /// futures up to 1000).
    pub fn max_depth_limit(self) -> u32 {
        match self {
            Market::Spot => 5000,
            Market::UsdM | Market::CoinM => 1000,
        }
    }

    /// The snapshot depth to ask for `levels` levels a side: spot takes any limit, futures
    /// only 5, 10, 20, 50, 100, 500 or 1,000.
    pub fn depth_limit_for(self, levels: u32) -> u32 {
        match self {
            Market::Spot => levels.clamp(1, 5000),
            Market::UsdM | Market::CoinM => [5, 10, 20, 50, 100, 500, 1000]
                .into_iter()
                .find(|&l| l >= levels)
                .unwrap_or(1000),
        }
    }

    /// Streams one WebSocket connection may carry: 1024 on spot and on USDⓈ-M (since 2025-07-02,
    /// USDⓈ-M change log), 200 on COIN-M (derivatives docs, "Websocket Market Streams").
    pub fn max_streams_per_connection(self) -> usize {
        match self {
            Market::Spot | Market::UsdM => 1024,
            Market::CoinM => 200,
        }
    }

    /// A symbol as the market spells it, for error messages.
    pub fn example_symbol(self) -> &'static str {
        match self {
            Market::Spot | Market::UsdM => "BTCUSDT",
            Market::CoinM => "BTCUSD_PERP",
        }
    }

    /// For endpoints that take a `pair` (index klines; on COIN-M also open interest and ratios):
    /// the symbol without its contract suffix (`BTCUSD_PERP`, `BTCUSD_251226` → `BTCUSD`;
    /// `BTCUSDT_250328` → `BTCUSDT`).
    pub fn pair_of(self, symbol: &str) -> &str {
        symbol.split_once('_').map_or(symbol, |(pair, _)| pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futures_depth_limits_round_up_to_a_served_one() {
        assert_eq!(Market::UsdM.depth_limit_for(20), 20);
        assert_eq!(Market::UsdM.depth_limit_for(21), 50);
        assert_eq!(Market::CoinM.depth_limit_for(1000), 1000);
        assert_eq!(Market::Spot.depth_limit_for(300), 300);
    }

    #[test]
    fn pairs_drop_the_contract_suffix() {
        assert_eq!(Market::CoinM.pair_of("BTCUSD_PERP"), "BTCUSD");
        assert_eq!(Market::CoinM.pair_of("BTCUSD_251226"), "BTCUSD");
        assert_eq!(Market::UsdM.pair_of("BTCUSDT_250328"), "BTCUSDT");
        assert_eq!(Market::UsdM.pair_of("BTCUSDT"), "BTCUSDT");
    }
}
