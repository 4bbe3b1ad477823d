//! Bybit's rules, each with the page of Bybit's v5 documentation it comes from
//! (bybit-exchange.github.io/docs/v5, source repository bybit-exchange/docs). The simulator's
//! Bybit venue (`exchange-sim/src/bybit.rs`) enforces the same.

use std::time::Duration;

use kline_interval::Interval;

use crate::market::Market;

/// `BYBIT_API_URL`'s default: the public REST host ("Integration guidance", mainnet).
pub const DEFAULT_API_URL: &str = "https://api.bybit.com";

/// "You are allowed to send 600 requests within a 5-second window per IP by default. This
/// limit applies to all traffic directed to api.bybit.com" (Rate Limit Rules, "IP Limit").
pub const IP_REQUESTS: u32 = 600;
pub const IP_WINDOW: Duration = Duration::from_secs(5);

/// Over the IP limit Bybit answers HTTP 403 "access too frequent": "terminate all HTTP
/// sessions and wait for at least 10 minutes. The ban will be lifted automatically" (Rate
/// Limit Rules). The loader never comes near it; an answer like that means another client on
/// the same IP spent the budget.
pub const IP_BAN: Duration = Duration::from_secs(600);

/// `retCode` 10006 "Too many visits. Exceeded the API Rate Limit." (Error Codes): answered
/// with HTTP 200, sometimes without `X-Bapi-Limit-Reset-Timestamp` (pybit issue 340); pybit
/// then waits 2 s, and so does the loader.
pub const TOO_MANY_VISITS: i64 = 10006;
pub const TOO_MANY_VISITS_WAIT: Duration = Duration::from_secs(2);

/// `retCode` 10001 "Request parameter error" (Error Codes); a symbol Bybit does not list is
/// answered `{"retCode":10001,"retMsg":"Not supported symbols"}` (not in Bybit's pages: ccxt's
/// error map and others agree).
pub const PARAMETER_ERROR: i64 = 10001;

/// `retCode`s that say the server failed, not the request: 10000 "Server Timeout", 10016
/// "Server error." (Error Codes). Retried like HTTP 5xx.
pub fn is_server_error(code: i64) -> bool {
    matches!(code, 10000 | 10016)
}

/// The `category` of a market: "`spot`,`linear`,`inverse`" (Get Kline, Get Instruments Info).
pub fn category(market: Market) -> &'static str {
    match market {
        Market::Spot => "spot",
        Market::UsdM => "linear",
        Market::CoinM => "inverse",
    }
}

/// `GET /v5/market/time`: "Get Bybit Server Time"; answers `time` in ms.
pub const TIME: &str = "/v5/market/time";

/// `GET /v5/market/instruments-info`: by default lists only `Trading` symbols of linear,
/// inverse and spot (Get Instruments Info).
pub const INSTRUMENTS: &str = "/v5/market/instruments-info";

/// `GET /v5/market/kline` (Get Kline): "Limit for data size per page. [1, 1000]", rows
/// "Sort in reverse by startTime", `start` and `end` both inclusive; when more than `limit`
/// candles fall between them, the newest ones come (the documentation's examples).
pub const KLINE: &str = "/v5/market/kline";
pub const MAX_KLINE_PAGE: u32 = 1000;

/// `GET /v5/market/funding/history` (Get Funding Rate History): linear and inverse
/// perpetuals, "[1, 200]" rows; "Passing only startTime returns an error", so both bounds are
/// always sent. The order is not documented (newest first in practice): rows are sorted.
pub const FUNDING: &str = "/v5/market/funding/history";
pub const MAX_FUNDING_PAGE: u32 = 200;

/// A window of funding history that holds fewer settlements than a page, whatever the
/// symbol's `fundingInterval` (Get Instruments Info: minutes; Bybit's shortest is one hour):
/// `MAX_FUNDING_PAGE - 1` hours.
pub const FUNDING_WINDOW_MS: i64 = (MAX_FUNDING_PAGE as i64 - 1) * 3_600_000;

/// `GET /v5/market/open-interest` (Get Open Interest): linear and inverse contracts,
/// "[1, 200]" rows, newest first, "The upper limit time you can query is the launch time of
/// the symbol"; `openInterest` is "the sum of both sides", in the base coin on linear and in
/// USD on inverse contracts.
pub const OPEN_INTEREST: &str = "/v5/market/open-interest";
pub const MAX_OPEN_INTEREST_PAGE: u32 = 200;

/// Bybit's name of an open-interest period: `intervalTime` "`5min`,`15min`,`30min`,`1h`,`4h`,
/// `1d`" (Get Open Interest).
pub fn open_interest_period(period: Interval) -> Option<&'static str> {
    Some(match period {
        Interval::M5 => "5min",
        Interval::M15 => "15min",
        Interval::M30 => "30min",
        Interval::H1 => "1h",
        Interval::H4 => "4h",
        Interval::D1 => "1d",
        _ => return None,
    })
}

/// The periods [`open_interest_period`] knows, for messages.
pub const OPEN_INTEREST_PERIODS: &str = "5m, 15m, 30m, 1h, 4h, 1d";

/// Bybit's name of a candle interval: "`1`,`3`,`5`,`15`,`30`,`60`,`120`,`240`,`360`,`720`,
/// `D`,`W`,`M`" (Get Kline). Bybit has no 1s, 8h or 3d candles.
pub fn kline_interval(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1",
        Interval::M3 => "3",
        Interval::M5 => "5",
        Interval::M15 => "15",
        Interval::M30 => "30",
        Interval::H1 => "60",
        Interval::H2 => "120",
        Interval::H4 => "240",
        Interval::H6 => "360",
        Interval::H12 => "720",
        Interval::D1 => "D",
        Interval::W1 => "W",
        Interval::Mo1 => "M",
        Interval::S1 | Interval::H8 | Interval::D3 => return None,
    })
}

/// The intervals [`kline_interval`] knows, for messages.
pub const KLINE_INTERVALS: &str = "1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d, 1w, 1M";

/// `BYBIT_ARCHIVE_URL`'s default: the host of Bybit's trade files, linked from the
/// recent-trade page ("Get Recent Public Trades": history at
/// bybit.com/en/derivative-activity/history-data).
pub const DEFAULT_ARCHIVE_URL: &str = "https://public.bybit.com";

/// A day's trades of `symbol` on `market`, under the archive's base. Bybit documents neither
/// the layout nor the columns; both are what independent downloaders read in 2026
/// (`shared/notes/venues.md`), and the simulator serves the same:
/// - derivatives `trading/SYM/SYMYYYY-MM-DD.csv.gz`: `timestamp` (seconds with a fraction),
///   `symbol`, `side` (`Buy`/`Sell`, the taker's), `size`, `price`, `tickDirection`,
///   `trdMatchID` (a UUID), `grossValue`, `homeNotional`, `foreignNotional` (newer files add
///   `RPI`);
/// - spot `spot/SYM/SYM_YYYY-MM-DD.csv.gz`: `id`, `timestamp` (ms), `price`, `volume`, `side`
///   (`buy`/`sell`; newer files add `rpi`).
///
/// Every file has a header; some older derivatives files run newest first. No checksum is
/// published: a file's size and ETag are all there is, besides gzip's own CRC.
pub fn trade_file(market: Market, symbol: &str) -> String {
    match market {
        Market::Spot => format!("spot/{symbol}/{symbol}_%Y-%m-%d.csv.gz"),
        Market::UsdM | Market::CoinM => format!("trading/{symbol}/{symbol}%Y-%m-%d.csv.gz"),
    }
}

/// The time column of a trade file (0-based): `timestamp`.
pub fn trade_time_column(market: Market) -> usize {
    match market {
        Market::Spot => 1,
        Market::UsdM | Market::CoinM => 0,
    }
}

/// When Bybit's files appear, for the error about one that is not there (third-party: a day's
/// file within a day of its end).
pub const ARCHIVE_SCHEDULE: &str = "Bybit publishes a day's trades after the day ends";

/// "Get Recent Public Trades" (`/v5/market/recent-trade`) answers the latest trades only
/// (spot 60, derivatives 1000) and takes no time bounds: older trades exist only in the
/// archive.
pub const RECENT_TRADES_ONLY: &str =
    "recent-trade answers the latest trades only, and takes no time bounds";

/// `GET /v5/market/recent-trade` (Get Public Recent Trading History): the latest trades, newest
/// first; `limit` "spot: [1,60], default: 60; others: [1,1000], default: 500"; rows `execId`,
/// `symbol`, `price`, `size`, `side` (the taker's), `time` (ms, a string), `isBlockTrade`.
pub const RECENT_TRADE: &str = "/v5/market/recent-trade";

/// The most trades recent-trade answers on `market`.
pub fn recent_trade_limit(market: Market) -> u32 {
    match market {
        Market::Spot => 60,
        Market::UsdM | Market::CoinM => 1000,
    }
}

/// `BYBIT_WS_URL`'s default: the public streams' host; a market's streams are under
/// `/v5/public/{category}` (WebSocket Connect, "Public stream").
pub const DEFAULT_WS_URL: &str = "wss://stream.bybit.com";

/// The path of `market`'s public streams under the stream host.
pub fn stream_path(market: Market) -> String {
    format!("/v5/public/{}", category(market))
}

/// "We recommend that you send the ping heartbeat packet every 20 seconds to maintain the
/// WebSocket connection": `{"op":"ping"}` (WebSocket Connect, "How to Send the Heartbeat
/// Packet").
pub const PING_EVERY: Duration = Duration::from_secs(20);
pub const PING: &str = r#"{"op":"ping"}"#;

/// "Do not frequently connect and disconnect the connection. Do not build over 500
/// connections in 5 minutes" (WebSocket Connect, "IP Limits").
pub const CONNECTIONS: usize = 500;
pub const CONNECTION_WINDOW: Duration = Duration::from_secs(300);

/// "For spot, you can input up to 10 args for each subscription request sent to one
/// connection" (WebSocket Connect, "How to Subscribe to Topics"); the derivatives take more,
/// but one size keeps the plan simple.
pub const ARGS_PER_SUBSCRIBE: usize = 10;

/// "The total length of multiple topics cannot exceed 21,000 characters" per connection
/// (WebSocket Connect): topics of about 25 characters, so at most this many streams.
pub const STREAMS_PER_CONNECTION: usize = 500;

/// The levels of Bybit's order-book topics (`orderbook.{depth}.{symbol}`, WebSocket Orderbook:
/// spot 1, 50, 200, 1000; linear and inverse 1, 50, 200, 1000): level 1 is the best bid and
/// ask (a snapshot each time it changes, and again every 3 s without a change), the others a
/// snapshot and then deltas.
pub const BOOK_DEPTHS: [usize; 3] = [50, 200, 1000];

/// The topic of the best bid and ask.
pub const BBO_DEPTH: usize = 1;

/// The liquidation topic (WebSocket All Liquidation, `allLiquidation.{symbol}`, linear and
/// inverse, "Push frequency: 500ms"): every liquidation of the symbol, each as `T` (ms), `S`
/// the liquidated POSITION's side ("When you receive a Buy update, this means that a long
/// position has been liquidated"), `v` the size and `p` the bankruptcy price.
pub const LIQUIDATION_TOPIC: &str = "allLiquidation";

/// The side of the liquidation order that closes a position of `position_side` (Bybit's `S`):
/// a long (`Buy`) is closed by selling.
pub fn liquidation_order_side(position_side: &str) -> Option<&'static str> {
    if position_side.eq_ignore_ascii_case("buy") {
        Some("SELL")
    } else if position_side.eq_ignore_ascii_case("sell") {
        Some("BUY")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interval_bybit_names_is_one_of_the_loaders() {
        let named: Vec<&str> = Interval::ALL
            .iter()
            .filter(|iv| kline_interval(**iv).is_some())
            .map(|iv| iv.as_str())
            .collect();
        assert_eq!(named.join(", "), KLINE_INTERVALS);
        let named: Vec<&str> = Interval::ALL
            .iter()
            .filter(|iv| open_interest_period(**iv).is_some())
            .map(|iv| iv.as_str())
            .collect();
        assert_eq!(named.join(", "), OPEN_INTEREST_PERIODS);
    }
}
