//! Which trading symbols the simulator knows: validation of a `symbol` parameter the way Binance
//! answers it (-1100 for illegal characters, -1121 for unknown symbols), the split into base and
//! quote asset, and the fixed list that `exchangeInfo` shows when asked about every symbol.

/// Quote assets the simulator lists, longest first where one is a suffix of another.
pub const QUOTE_ASSETS: [&str; 9] = [
    "FDUSD", "USDT", "USDC", "BUSD", "BTC", "ETH", "BNB", "TRY", "EUR",
];

/// The symbols `exchangeInfo` lists when it is called without `symbol`/`symbols`. Any other
/// symbol that [`parse_symbol`] accepts is served too.
pub const LISTED_SYMBOLS: [&str; 12] = [
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT",
    "ETHBTC", "BNBBTC", "BTCFDUSD", "BTCEUR",
];

/// Why a symbol is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolError {
    /// Characters outside `^[A-Z0-9-_.]{1,20}$` (Binance code -1100).
    IllegalCharacters,
    /// Well-formed but not a symbol of this exchange (Binance code -1121).
    Invalid,
}

/// Splits a symbol into `(base, quote)`, or says why Binance would reject it.
///
/// Valid symbols are 5 to 20 upper-case letters and digits ending with one of
/// [`QUOTE_ASSETS`]; the base asset is the rest.
pub fn parse_symbol(symbol: &str) -> Result<(&str, &str), SymbolError> {
    let legal = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b);
    if symbol.is_empty() || symbol.len() > 20 || !symbol.bytes().all(legal) {
        return Err(SymbolError::IllegalCharacters);
    }
    if symbol.len() < 5 || !symbol.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(SymbolError::Invalid);
    }
    QUOTE_ASSETS
        .iter()
        .find(|q| symbol.len() > q.len() && symbol.ends_with(*q))
        .map(|q| (&symbol[..symbol.len() - q.len()], *q))
        .ok_or(SymbolError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_known_quotes() {
        assert_eq!(parse_symbol("BTCUSDT"), Ok(("BTC", "USDT")));
        assert_eq!(parse_symbol("ETHBTC"), Ok(("ETH", "BTC")));
        assert_eq!(parse_symbol("BTCFDUSD"), Ok(("BTC", "FDUSD")));
        assert_eq!(parse_symbol("1000SATSUSDT"), Ok(("1000SATS", "USDT")));
        for s in LISTED_SYMBOLS {
            assert!(parse_symbol(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_like_binance() {
        assert_eq!(parse_symbol("btcusdt"), Err(SymbolError::IllegalCharacters));
        assert_eq!(
            parse_symbol("BTC USDT"),
            Err(SymbolError::IllegalCharacters)
        );
        assert_eq!(
            parse_symbol("ABCDEFGHIJKLMNOPQUSDT"),
            Err(SymbolError::IllegalCharacters)
        );
        assert_eq!(parse_symbol("BTCXYZ"), Err(SymbolError::Invalid));
        assert_eq!(parse_symbol("USDT"), Err(SymbolError::Invalid));
        assert_eq!(parse_symbol("BTC-USDT"), Err(SymbolError::Invalid));
        assert_eq!(parse_symbol("XBTC"), Err(SymbolError::Invalid));
    }
}
