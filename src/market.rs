//! Venues and their markets (`EXCHANGE`, `MARKET`): what a record says about where it comes
//! from, and how records of each venue and market are told apart in a topic. A market is one of
//! three every venue has: its spot market and two markets of contracts. Binance calls them
//! spot, USDⓈ-M and COIN-M, Bybit spot, linear and inverse (by margin), OKX spot, swap
//! (perpetual) and futures (dated), each of those two holding linear and inverse contracts. A market is a parameter of everything that talks to a venue, never a copy of it;
//! what a venue does differently in each (hosts, path prefixes, page and connection limits, the
//! archive root) is the venue's rule and lives in its tree (`venue::binance::markets`).

use std::fmt;
use std::str::FromStr;

/// One of a venue's three markets (Binance's names; [`Venue::market_name`] gives each
/// venue's). What a market means beyond its name (hosts, categories, instrument types) is the
/// venue's rule and lives in its tree.
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

/// The exchange a job reads (`EXCHANGE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Venue {
    #[default]
    Binance,
    Bybit,
    Okx,
}

impl Venue {
    pub const ALL: [Venue; 3] = [Venue::Binance, Venue::Bybit, Venue::Okx];

    /// The name `EXCHANGE` takes and records carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Venue::Binance => "binance",
            Venue::Bybit => "bybit",
            Venue::Okx => "okx",
        }
    }

    /// The venue as it names itself, for messages.
    pub fn title(self) -> &'static str {
        match self {
            Venue::Binance => "Binance",
            Venue::Bybit => "Bybit",
            Venue::Okx => "OKX",
        }
    }

    /// Whether the venue's trade ids count its trades one by one, so that a missing id is a
    /// lost trade (Binance's). Bybit's derivatives trades are identified by UUIDs: its trades
    /// are ordered by time and rank ([`crate::registry::time_rank`]). OKX's `tradeId`s are
    /// numbers, but nothing OKX documents says they run without gaps: until that is shown,
    /// its trades would be ranked by time too.
    pub fn numbers_trades(self) -> bool {
        match self {
            Venue::Binance => true,
            Venue::Bybit | Venue::Okx => false,
        }
    }

    /// Whether a symbol's liquidations are told apart by their millisecond alone. Binance's
    /// `@forceOrder` pushes at most the latest one a second per symbol (derivatives docs,
    /// "Liquidation Order Streams"). Bybit's `allLiquidation` pushes every one, so two can share
    /// a millisecond; OKX documents at most one a second per contract, but its channel is one
    /// per instrument type and nothing in a message rules a repeat out: both venues'
    /// liquidations are ranked by time ([`crate::registry::time_rank`]).
    pub fn one_liquidation_a_second(self) -> bool {
        match self {
            Venue::Binance => true,
            Venue::Bybit | Venue::Okx => false,
        }
    }

    /// `market` as this venue names it: the name `MARKET` takes and records carry.
    pub fn market_name(self, market: Market) -> &'static str {
        match (self, market) {
            (Venue::Binance, m) => m.as_str(),
            (Venue::Bybit, Market::Spot) => "spot",
            (Venue::Bybit, Market::UsdM) => "linear",
            (Venue::Bybit, Market::CoinM) => "inverse",
            (Venue::Okx, Market::Spot) => "spot",
            (Venue::Okx, Market::UsdM) => "swap",
            (Venue::Okx, Market::CoinM) => "futures",
        }
    }

    /// `market` as this venue titles it, for messages: Binance's spot, USDⓈ-M and COIN-M, the
    /// other venues' market names.
    pub fn market_title(self, market: Market) -> &'static str {
        match self {
            Venue::Binance => market.title(),
            other => other.market_name(market),
        }
    }

    /// What `_key` starts with before the symbol. Binance's keys predate venues (nothing for
    /// spot, `usdm_`, `coinm_`); every other venue's start with the venue and the market
    /// (`bybit_linear_`), so no two venues' records share a key in one topic.
    pub fn key_prefix(self, market: Market) -> &'static str {
        match (self, market) {
            (Venue::Binance, m) => m.key_prefix(),
            (Venue::Bybit, Market::Spot) => "bybit_spot_",
            (Venue::Bybit, Market::UsdM) => "bybit_linear_",
            (Venue::Bybit, Market::CoinM) => "bybit_inverse_",
            (Venue::Okx, Market::Spot) => "okx_spot_",
            (Venue::Okx, Market::UsdM) => "okx_swap_",
            (Venue::Okx, Market::CoinM) => "okx_futures_",
        }
    }

    /// The `exchange` field records of this venue carry: every venue's but Binance's, whose
    /// records predate venues (a record without one is Binance's).
    pub fn record_field(self) -> Option<&'static str> {
        match self {
            Venue::Binance => None,
            other => Some(other.as_str()),
        }
    }

    /// The venue a record's `exchange` field names (none: Binance).
    pub fn of_record(exchange: Option<&str>) -> Option<Venue> {
        match exchange {
            None => Some(Venue::Binance),
            Some(name) => Venue::ALL.into_iter().find(|v| v.as_str() == name),
        }
    }

    /// The market a record of this venue names in its `market` field.
    pub fn market_of_record(self, name: &str) -> Option<Market> {
        Market::ALL
            .into_iter()
            .find(|m| self.market_name(*m) == name)
    }

    /// Parses `MARKET` for this venue.
    pub fn parse_market(self, s: &str) -> Result<Market, String> {
        match self {
            Venue::Binance => s.parse(),
            Venue::Bybit => {
                let t = s.trim().to_ascii_lowercase();
                Ok(match t.as_str() {
                    "spot" | "" => Market::Spot,
                    "linear" => Market::UsdM,
                    "inverse" => Market::CoinM,
                    _ => {
                        return Err(format!(
                        "MARKET {:?} is not a Bybit market: expected spot, linear (USDT and USDC \
                             contracts) or inverse (coin-margined contracts)",
                        s.trim()
                    ))
                    }
                })
            }
            Venue::Okx => {
                let t = s.trim().to_ascii_lowercase();
                Ok(match t.as_str() {
                    "spot" | "" => Market::Spot,
                    "swap" => Market::UsdM,
                    "futures" => Market::CoinM,
                    _ => {
                        return Err(format!(
                            "MARKET {:?} is not an OKX market: expected spot, swap (perpetual \
                             contracts, linear or inverse) or futures (dated contracts)",
                            s.trim()
                        ))
                    }
                })
            }
        }
    }
}

impl serde::Serialize for Venue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Venue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Venue {
    type Err = String;

    /// `binance`, `bybit` or `okx`, case-insensitive.
    fn from_str(s: &str) -> Result<Venue, String> {
        let t = s.trim().to_ascii_lowercase();
        Venue::ALL
            .into_iter()
            .find(|v| v.as_str() == t || (t.is_empty() && *v == Venue::Binance))
            .ok_or_else(|| {
                format!(
                    "EXCHANGE {:?} is not a venue this loader reads: expected binance, bybit or okx",
                    s.trim()
                )
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

    #[test]
    fn venues_name_their_markets_and_never_share_a_key() {
        assert_eq!("BYBIT".parse::<Venue>().unwrap(), Venue::Bybit);
        assert_eq!("".parse::<Venue>().unwrap(), Venue::Binance);
        let e = "kraken".parse::<Venue>().unwrap_err();
        assert!(e.contains("EXCHANGE") && e.contains("bybit"), "{e}");
        let mut prefixes = Vec::new();
        for v in Venue::ALL {
            for m in Market::ALL {
                let name = v.market_name(m);
                assert_eq!(v.parse_market(name).unwrap(), m, "{v} {name}");
                assert_eq!(v.market_of_record(name), Some(m));
                prefixes.push(v.key_prefix(m));
            }
            assert_eq!(Venue::of_record(v.record_field()), Some(v));
        }
        // No prefix is another's start (with the symbol after it, keys could collide).
        for (i, a) in prefixes.iter().enumerate() {
            for (j, b) in prefixes.iter().enumerate() {
                assert!(i == j || !b.starts_with(a) || a.is_empty(), "{a:?} {b:?}");
            }
        }
        let e = Venue::Bybit.parse_market("usdm").unwrap_err();
        assert!(e.contains("MARKET") && e.contains("linear"), "{e}");
    }
}
