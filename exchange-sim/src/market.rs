//! The three markets the simulator serves on one port: Binance spot at the root, USD-M futures
//! (`fapi`) under `/usdm` and COIN-M futures (`dapi`) under `/coinm`. This module owns what
//! tells them apart: URL prefixes, which symbols each market lists and accepts, COIN-M pairs
//! and contract sizes, and the salt that makes each market's synthetic data differ from the
//! others' for the same symbol name.

use crate::symbols::{parse_symbol, SymbolError, LISTED_SYMBOLS};

/// One of the simulator's markets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum SimMarket {
    /// `api.binance.com`, served at the root (`/api/v3/…`, `/ws`, `/data/spot/…`).
    Spot,
    /// USD-M futures (`fapi.binance.com`), served under `/usdm` (`/usdm/fapi/v1/…`,
    /// `/usdm/futures/data/…`, `/usdm/ws`; archive `/data/futures/um/…`).
    UsdM,
    /// COIN-M futures (`dapi.binance.com`), served under `/coinm` (`/coinm/dapi/v1/…`,
    /// `/coinm/futures/data/…`, `/coinm/ws`; archive `/data/futures/cm/…`).
    CoinM,
}

/// Base assets of the COIN-M perpetuals (`<BASE>USD_PERP`, pair `<BASE>USD`).
pub const COINM_BASES: [&str; 8] = ["BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "LTC"];

impl SimMarket {
    /// Every market, spot first.
    pub const ALL: [SimMarket; 3] = [SimMarket::Spot, SimMarket::UsdM, SimMarket::CoinM];

    /// The name used as key of [`crate::SimStats::per_market`]: `spot`, `usdm`, `coinm`.
    pub const fn name(self) -> &'static str {
        match self {
            SimMarket::Spot => "spot",
            SimMarket::UsdM => "usdm",
            SimMarket::CoinM => "coinm",
        }
    }

    /// The URL path prefix of the market's REST and WebSocket endpoints (`""` for spot).
    pub const fn prefix(self) -> &'static str {
        match self {
            SimMarket::Spot => "",
            SimMarket::UsdM => "/usdm",
            SimMarket::CoinM => "/coinm",
        }
    }

    /// The market's directory in the bulk archive: `spot`, `futures/um`, `futures/cm`.
    pub const fn archive_dir(self) -> &'static str {
        match self {
            SimMarket::Spot => "spot",
            SimMarket::UsdM => "futures/um",
            SimMarket::CoinM => "futures/cm",
        }
    }

    /// Whether this is one of the futures markets.
    pub const fn is_futures(self) -> bool {
        !matches!(self, SimMarket::Spot)
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            SimMarket::Spot => 0,
            SimMarket::UsdM => 1,
            SimMarket::CoinM => 2,
        }
    }

    /// Splits `/usdm/fapi/v1/klines` into the market and the rest (`/fapi/v1/klines`); paths
    /// without a futures prefix are spot's.
    pub fn split_path(path: &str) -> (SimMarket, &str) {
        for m in [SimMarket::UsdM, SimMarket::CoinM] {
            if let Some(rest) = path.strip_prefix(m.prefix()) {
                if rest.is_empty() || rest.starts_with('/') {
                    return (m, rest);
                }
            }
        }
        (SimMarket::Spot, path)
    }

    /// Salt mixed into every hash of the market's synthetic data (0 for spot, so spot's data
    /// is what it always was).
    pub(crate) const fn salt(self) -> u64 {
        match self {
            SimMarket::Spot => 0,
            SimMarket::UsdM => 0x5553_444d_0000_0001,
            SimMarket::CoinM => 0x434f_494e_0000_0002,
        }
    }

    /// Splits a symbol of this market into `(base, quote)`, or says why Binance would reject
    /// it: spot takes any [`parse_symbol`] symbol, USD-M those quoted in USDT or USDC, COIN-M
    /// the perpetuals `<BASE>USD_PERP` of [`COINM_BASES`] (quote `USD`).
    pub fn parse_symbol(self, symbol: &str) -> Result<(&str, &str), SymbolError> {
        match self {
            SimMarket::Spot => parse_symbol(symbol),
            SimMarket::UsdM => match parse_symbol(symbol)? {
                (base, quote) if quote == "USDT" || quote == "USDC" => Ok((base, quote)),
                _ => Err(SymbolError::Invalid),
            },
            SimMarket::CoinM => {
                legal(symbol)?;
                let base = symbol
                    .strip_suffix("USD_PERP")
                    .filter(|b| COINM_BASES.contains(b))
                    .ok_or(SymbolError::Invalid)?;
                Ok((base, "USD"))
            }
        }
    }

    /// The symbol whose data a `pair` parameter names: on COIN-M the perpetual of the pair
    /// (`BTCUSD` → `BTCUSD_PERP`), elsewhere the pair itself (USD-M's index pairs are its
    /// symbols). Rejected like a symbol.
    pub fn symbol_of_pair(self, pair: &str) -> Result<String, SymbolError> {
        match self {
            SimMarket::CoinM => {
                legal(pair)?;
                let base = pair
                    .strip_suffix("USD")
                    .filter(|b| COINM_BASES.contains(b))
                    .ok_or(SymbolError::Invalid)?;
                Ok(format!("{base}USD_PERP"))
            }
            other => other.parse_symbol(pair).map(|_| pair.to_string()),
        }
    }

    /// The symbols `exchangeInfo` lists (and `!forceOrder@arr` covers): spot's list, the
    /// USDT/USDC-quoted ones of it on USD-M, the perpetuals of [`COINM_BASES`] on COIN-M.
    pub fn listed_symbols(self) -> Vec<String> {
        match self {
            SimMarket::Spot => LISTED_SYMBOLS.iter().map(|s| s.to_string()).collect(),
            SimMarket::UsdM => LISTED_SYMBOLS
                .iter()
                .filter(|s| SimMarket::UsdM.parse_symbol(s).is_ok())
                .map(|s| s.to_string())
                .collect(),
            SimMarket::CoinM => COINM_BASES.iter().map(|b| format!("{b}USD_PERP")).collect(),
        }
    }

    /// COIN-M contract size in USD (100 for BTC, 10 for the others); `None` elsewhere.
    pub fn contract_size(self, symbol: &str) -> Option<i64> {
        match self {
            SimMarket::CoinM => Some(if symbol.starts_with("BTCUSD") {
                100
            } else {
                10
            }),
            _ => None,
        }
    }
}

fn legal(symbol: &str) -> Result<(), SymbolError> {
    let ok = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b);
    if symbol.is_empty() || symbol.len() > 20 || !symbol.bytes().all(ok) {
        return Err(SymbolError::IllegalCharacters);
    }
    Ok(())
}

/// The COIN-M pair of a perpetual (`BTCUSD_PERP` → `BTCUSD`).
pub(crate) fn coinm_pair(symbol: &str) -> &str {
    symbol.strip_suffix("_PERP").unwrap_or(symbol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_per_market() {
        assert_eq!(SimMarket::UsdM.parse_symbol("BTCUSDT"), Ok(("BTC", "USDT")));
        assert_eq!(
            SimMarket::UsdM.parse_symbol("ETHBTC"),
            Err(SymbolError::Invalid)
        );
        assert_eq!(
            SimMarket::CoinM.parse_symbol("BTCUSD_PERP"),
            Ok(("BTC", "USD"))
        );
        assert_eq!(
            SimMarket::CoinM.parse_symbol("BTCUSDT"),
            Err(SymbolError::Invalid)
        );
        assert_eq!(
            SimMarket::CoinM.parse_symbol("btcusd_perp"),
            Err(SymbolError::IllegalCharacters)
        );
        assert_eq!(
            SimMarket::CoinM.symbol_of_pair("ETHUSD").unwrap(),
            "ETHUSD_PERP"
        );
        assert!(SimMarket::CoinM.symbol_of_pair("ETHUSD_PERP").is_err());
        assert_eq!(SimMarket::CoinM.contract_size("BTCUSD_PERP"), Some(100));
        assert_eq!(SimMarket::CoinM.contract_size("ETHUSD_PERP"), Some(10));
        let usdm = SimMarket::UsdM.listed_symbols();
        assert!(usdm.contains(&"BTCUSDT".to_string()) && !usdm.contains(&"ETHBTC".into()));
        assert_eq!(
            SimMarket::split_path("/usdm/fapi/v1/klines"),
            (SimMarket::UsdM, "/fapi/v1/klines")
        );
        assert_eq!(
            SimMarket::split_path("/usdmx/fapi"),
            (SimMarket::Spot, "/usdmx/fapi")
        );
        assert_eq!(SimMarket::split_path("/coinm"), (SimMarket::CoinM, ""));
    }
}
