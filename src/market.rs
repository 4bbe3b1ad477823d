//! Binance's markets (`MARKET`): spot, USDⓈ-M futures and COIN-M futures. A market is a
//! parameter of everything that talks to Binance, never a copy of it: this module owns its
//! names and how records of each market are told apart in a topic; what the exchange does
//! differently in each (hosts, path prefixes, page and connection limits, the archive root) is
//! Binance's rule and lives in `venue::binance::markets`.

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
    fn keys_of_markets_never_collide() {
        let stems: Vec<String> = Market::ALL
            .iter()
            .map(|m| format!("{}BTCUSDT", m.key_prefix()))
            .collect();
        assert_eq!(stems, ["BTCUSDT", "usdm_BTCUSDT", "coinm_BTCUSDT"]);
    }
}
