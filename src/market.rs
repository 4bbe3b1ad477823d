//! Binance's markets (`MARKET`): spot, USDⓈ-M futures and COIN-M futures. A market is a
//! parameter of everything that talks to Binance, never a copy of it: this module owns what
//! differs between them (hosts, path prefixes, page and connection limits, the archive root,
//! and how records of each market are told apart in a topic).

use std::fmt;
use std::str::FromStr;

/// One Binance market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Market {
    /// Spot, `api.binance.com` / `stream.binance.com`.
    #[default]
    Spot,
    /// USDⓈ-M perpetual and delivery futures, `fapi.binance.com` / `fstream.binance.com`.
    UsdM,
    /// COIN-M futures, `dapi.binance.com` / `dstream.binance.com`; volumes are in contracts.
    CoinM,
}

impl Market {
    pub const ALL: [Market; 3] = [Market::Spot, Market::UsdM, Market::CoinM];

    /// The name `MARKET` takes and records carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::UsdM => "usdm",
            Market::CoinM => "coinm",
        }
    }

    /// The market a record's `market` field names (exactly as records write it: no
    /// allocation, for readers of every record).
    pub fn of_record(name: &str) -> Option<Market> {
        Market::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The market as Binance names it, for messages: spot, USDⓈ-M, COIN-M.
    pub fn title(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::UsdM => "USDⓈ-M",
            Market::CoinM => "COIN-M",
        }
    }

    pub fn is_futures(self) -> bool {
        self != Market::Spot
    }

    /// What `_key` starts with before the symbol: nothing for spot (the keys of earlier
    /// versions), `usdm_` / `coinm_` for futures, so BTCUSDT spot and BTCUSDT perpetual records
    /// never share a key in one topic.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Market::Spot => "",
            Market::UsdM => "usdm_",
            Market::CoinM => "coinm_",
        }
    }

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

    /// The most klines (and mark/index/premium klines) one request may ask for.
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

    /// The longest `[startTime, endTime]` a klines request may span (COIN-M: 200 days).
    pub fn max_kline_span_ms(self) -> Option<i64> {
        match self {
            Market::CoinM => Some(200 * 86_400_000),
            _ => None,
        }
    }

    /// The most raw trades one `historicalTrades` request returns.
    pub fn max_trades_page(self) -> u32 {
        match self {
            Market::Spot => 1000,
            Market::UsdM | Market::CoinM => 500,
        }
    }

    /// The deepest order-book snapshot the market serves.
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

impl serde::Serialize for Market {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Market {
    type Err = String;

    /// `spot`; `usdm` (also `um`, `usd-m`, `usds-m`, `usdⓈ-m`, `futures`, `fapi`, `linear`);
    /// `coinm` (also `cm`, `coin-m`, `delivery`, `dapi`, `inverse`); case-insensitive.
    fn from_str(s: &str) -> Result<Market, String> {
        let t = s.trim().to_ascii_lowercase().replace(['-', '_', ' '], "");
        Ok(match t.as_str() {
            "spot" | "" => Market::Spot,
            "usdm" | "um" | "usdsm" | "usdⓢm" | "futures" | "fapi" | "linear" => Market::UsdM,
            "coinm" | "cm" | "delivery" | "dapi" | "inverse" => Market::CoinM,
            _ => {
                return Err(format!(
                    "MARKET {:?} is not a Binance market: expected spot, usdm (USDⓈ-M futures) or coinm (COIN-M futures)",
                    s.trim()
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_spelling_parses() {
        for (s, m) in [
            ("spot", Market::Spot),
            ("SPOT", Market::Spot),
            ("usdm", Market::UsdM),
            ("USD-M", Market::UsdM),
            ("usds-m", Market::UsdM),
            ("um", Market::UsdM),
            ("futures", Market::UsdM),
            ("coinm", Market::CoinM),
            ("COIN-M", Market::CoinM),
            ("cm", Market::CoinM),
            ("delivery", Market::CoinM),
        ] {
            assert_eq!(s.parse::<Market>().unwrap(), m, "{s}");
        }
        let e = "margin".parse::<Market>().unwrap_err();
        assert!(e.contains("MARKET") && e.contains("coinm"), "{e}");
        for m in Market::ALL {
            assert_eq!(m.as_str().parse::<Market>().unwrap(), m);
        }
    }

    #[test]
    fn futures_depth_limits_round_up_to_a_served_one() {
        assert_eq!(Market::UsdM.depth_limit_for(20), 20);
        assert_eq!(Market::UsdM.depth_limit_for(21), 50);
        assert_eq!(Market::CoinM.depth_limit_for(1000), 1000);
        assert_eq!(Market::Spot.depth_limit_for(300), 300);
    }

    #[test]
    fn keys_of_markets_never_collide() {
        let stems: Vec<String> = Market::ALL
            .iter()
            .map(|m| format!("{}BTCUSDT", m.key_prefix()))
            .collect();
        assert_eq!(stems, ["BTCUSDT", "usdm_BTCUSDT", "coinm_BTCUSDT"]);
        assert_eq!(Market::CoinM.pair_of("BTCUSD_PERP"), "BTCUSD");
        assert_eq!(Market::CoinM.pair_of("BTCUSD_251226"), "BTCUSD");
        assert_eq!(Market::UsdM.pair_of("BTCUSDT_250328"), "BTCUSDT");
        assert_eq!(Market::UsdM.pair_of("BTCUSDT"), "BTCUSDT");
    }
}
