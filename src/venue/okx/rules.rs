//! OKX's rules, each with the section of OKX's v5 API documentation it comes from
//! (www.okx.com/docs-v5/en/, read through copies of it in 2026 and checked against ccxt's
//! `okx.ts`). The simulator's OKX venue (`exchange-sim/src/okx.rs`) enforces the same.

use std::time::Duration;

use kline_interval::Interval;

use crate::market::Market;

/// `OKX_API_URL`'s default: the public REST host ("Overview", production trading services).
pub const DEFAULT_API_URL: &str = "https://www.okx.com";

/// Every OKX limit is counted "per 2 seconds", per IP for public market data ("Overview: Rate
/// Limits").
pub const WINDOW: Duration = Duration::from_secs(2);

/// `GET /api/v5/public/time` ("Get system time"): `data[0].ts`, ms as a string. "Rate Limit:
/// 10 requests per 2 seconds", by IP.
pub const TIME: &str = "/api/v5/public/time";

/// `GET /api/v5/public/instruments` ("Get instruments"): `instType` required, `instId`
/// optional; `state` `live` for an instrument that trades. "Rate Limit: 20 requests per 2
/// seconds", by IP and instrument type.
pub const INSTRUMENTS: &str = "/api/v5/public/instruments";

/// `GET /api/v5/market/history-candles` ("Get candlesticks history"): `after` "records
/// earlier than the requested ts", `before` "records newer than the requested ts" (both
/// exclusive: ccxt sends `before = since - 1`), rows `[ts,o,h,l,c,vol,volCcy,volCcyQuote,
/// confirm]` newest first, `confirm` `1` once the candle is closed. "Rate Limit: 20 requests
/// per 2 seconds", by IP.
pub const CANDLES: &str = "/api/v5/market/history-candles";

/// `GET /api/v5/public/funding-rate-history` ("Get funding rate history"): perpetuals,
/// `before`/`after` exclusive as for candles, rows newest first with `fundingTime`,
/// `fundingRate` (the predicted rate) and `realizedRate` (the actual one). "Rate Limit: 10
/// requests per 2 seconds", by IP and instrument ID; "up to three months" of history.
pub const FUNDING: &str = "/api/v5/public/funding-rate-history";

/// Settlements a request asks for: the documentation now says up to 400, older versions and
/// ccxt's paging 100.
pub const MAX_FUNDING_PAGE: u32 = 100;

/// A window of funding history that holds fewer settlements than a page, whatever the
/// instrument's funding interval (8, 6, 4, 2 or 1 hours): `MAX_FUNDING_PAGE - 1` hours.
pub const FUNDING_WINDOW_MS: i64 = (MAX_FUNDING_PAGE as i64 - 1) * 3_600_000;

/// How far back funding-rate-history answers: "up to three months", counted as 90 days (no
/// three months are shorter than 89; the loader adds a day's margin).
pub const FUNDING_HORIZON_MS: i64 = 90 * 86_400_000;

/// `GET /api/v5/rubik/stat/contracts/open-interest-history` ("Get contract open interest
/// history"): swaps and futures, `begin` "records newer than the requested ts" and `end`
/// "earlier than" (exclusive, as `before`/`after`), rows `[ts, oi, oiCcy, oiUsd]` (contracts,
/// the coin, USD) newest first, "up to 100" a request; "Rate Limit: 10 requests per 2 seconds",
/// by IP and instrument ID; only "the latest 1440 entries" of a period are kept.
pub const OPEN_INTEREST: &str = "/api/v5/rubik/stat/contracts/open-interest-history";
pub const MAX_OPEN_INTEREST_PAGE: u32 = 100;
pub const OPEN_INTEREST_KEPT: i64 = 1440;

/// OKX's name of an open-interest period (`period`): `5m 15m 30m 1H 2H 4H`, and the
/// UTC-aligned `6Hutc 12Hutc 1Dutc`.
pub fn open_interest_period(period: Interval) -> Option<&'static str> {
    Some(match period {
        Interval::M5 => "5m",
        Interval::M15 => "15m",
        Interval::M30 => "30m",
        Interval::H1 => "1H",
        Interval::H2 => "2H",
        Interval::H4 => "4H",
        Interval::H6 => "6Hutc",
        Interval::H12 => "12Hutc",
        Interval::D1 => "1Dutc",
        _ => return None,
    })
}

/// The periods [`open_interest_period`] knows, for messages.
pub const OPEN_INTEREST_PERIODS: &str = "5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d";

/// `GET /api/v5/market/history-trades` ("Get trades history"): "the last 3 months", rows
/// `{instId, tradeId, px, sz, side, ts}` newest first (`side` the taker's; `sz` in contracts on
/// swap and futures); `type` `1` pages by `tradeId` (the default), `2` by `ts`; `after`
/// "records earlier than the requested tradeId or ts", `limit` up to 100. "Rate Limit: 20
/// requests per 2 seconds", by IP (ccxt counts it as 10; the loader keeps to OKX's figure,
/// and 50011 pauses the endpoint if it was wrong).
pub const TRADES: &str = "/api/v5/market/history-trades";
pub const MAX_TRADE_PAGE: u32 = 100;

/// How far back history-trades answers: "the last 3 months", counted as 90 days as for
/// funding.
pub const TRADES_HORIZON_MS: i64 = 90 * 86_400_000;

/// `OKX_ARCHIVE_URL`'s default: the host of OKX's historical data files (the "Historical
/// data" page of okx.com links them there).
pub const DEFAULT_ARCHIVE_URL: &str = "https://static.okx.com";

/// A day's trades of `inst_id`, under the archive's base:
/// `cdn/okex/traderecords/trades/daily/YYYYMMDD/INST-trades-YYYY-MM-DD.zip`, a zip of one
/// CSV with a header, `instrument_name,trade_id,side,price,size,created_time` (newer files add
/// `source`), rows in trade-id order, `side` the taker's, `size` in contracts on swap and
/// futures, `created_time` in ms. OKX documents neither layout nor columns; both are what
/// independent downloaders read in 2026 (`shared/notes/venues.md`), and the simulator serves
/// the same. No checksum is published: a file's size and ETag are all there is, besides the
/// zip's own CRC-32.
pub fn trade_file(inst_id: &str) -> String {
    format!("cdn/okex/traderecords/trades/daily/%Y%m%d/{inst_id}-trades-%Y-%m-%d.zip")
}

/// The columns of a trade file (0-based).
pub const TRADE_FILE_ID: usize = 1;
pub const TRADE_FILE_SIDE: usize = 2;
pub const TRADE_FILE_PRICE: usize = 3;
pub const TRADE_FILE_SIZE: usize = 4;
pub const TRADE_FILE_TIME: usize = 5;

/// OKX dates its files in UTC+8 (Hong Kong time): the file of day D holds `[D-1 16:00, D
/// 16:00)` UTC, and a UTC day takes the end of one file and the start of the next.
pub const ARCHIVE_UTC_OFFSET_MS: i64 = 8 * 3_600_000;

/// When OKX's files appear, for the error about one that is not there (third-party: a day's
/// file about a day after the day ends, in UTC+8).
pub const ARCHIVE_SCHEDULE: &str =
    "OKX publishes a day's trades (a day of UTC+8) about a day after it ends";

/// Every endpoint the loader asks: each has its own limit, and the client a window for it.
pub const ENDPOINTS: [&str; 6] = [TIME, INSTRUMENTS, CANDLES, FUNDING, OPEN_INTEREST, TRADES];

/// The limit of each endpoint the loader asks, in any [`WINDOW`].
pub fn endpoint_limit(path: &str) -> u32 {
    match path {
        TIME | FUNDING | OPEN_INTEREST => 10,
        _ => 20,
    }
}

/// How long after a candle's close the loader asks for it. OKX does not say how soon a closed
/// candle is answered `confirm` 1; a candle answered unconfirmed fails the load rather than be
/// published unfinished, so a range ending now stops a minute short of now.
pub const CONFIRM_MARGIN_MS: i64 = 60_000;

/// Candles a request asks for. The documentation now says "maximum of 300" (it said 100
/// before), but OKX was measured answering 100 for older ranges when asked for 300 (freqtrade
/// PR 6825, ccxt PR 25682): a window of more than 100 could come back short and lose
/// candles, so the loader never asks for more than 100 (PAGE_LIMIT at most 100).
pub const MAX_CANDLE_PAGE: u32 = 100;

/// `code` 50011: "Rate limit reached" / "Too Many Requests", with HTTP 429 (or 200). The
/// loader stays under every limit; an answer like this means another client on the IP spent
/// it. OKX documents no ban and no wait: requests pause for a window.
pub const TOO_MANY_REQUESTS: &str = "50011";

/// `code` 51001: "Instrument ID, Instrument ID code or Spread ID doesn't exist." (HTTP 200).
pub const NO_SUCH_INSTRUMENT: &str = "51001";

/// Codes that say OKX failed, not the request, retried like HTTP 5xx ("Error Code"):
/// 50001 "Service temporarily unavailable" (503), 50004 "Endpoint request timeout", 50013
/// "Systems are busy" (429), 50026 "System error" (500).
pub fn is_server_error(code: &str) -> bool {
    matches!(code, "50001" | "50004" | "50013" | "50026")
}

/// `instType` of a market: spot `SPOT`, swap `SWAP` (perpetuals), futures `FUTURES` (dated).
pub fn inst_type(market: Market) -> &'static str {
    match market {
        Market::Spot => "SPOT",
        Market::UsdM => "SWAP",
        Market::CoinM => "FUTURES",
    }
}

/// Whether `inst_id` has the form of an instrument of `market` ("Overview", instId): spot
/// `BTC-USDT`, swap `BTC-USDT-SWAP`, futures `BTC-USD-250328` (a delivery date, YYMMDD).
pub fn has_form_of(market: Market, inst_id: &str) -> bool {
    let parts: Vec<&str> = inst_id.split('-').collect();
    let date = |d: &str| d.len() == 6 && d.bytes().all(|b| b.is_ascii_digit());
    match (market, parts.as_slice()) {
        (Market::Spot, [base, quote]) => !base.is_empty() && !quote.is_empty(),
        (Market::UsdM, [base, quote, "SWAP"]) => !base.is_empty() && !quote.is_empty(),
        (Market::CoinM, [base, quote, d]) => !base.is_empty() && !quote.is_empty() && date(d),
        _ => false,
    }
}

/// An instrument of `market`, for messages.
pub fn example_inst(market: Market) -> &'static str {
    match market {
        Market::Spot => "BTC-USDT",
        Market::UsdM => "BTC-USDT-SWAP or BTC-USD-SWAP",
        Market::CoinM => "BTC-USD-250328",
    }
}

/// The delivery date (`YYMMDD`) of the quarterly futures that are live at `now_ms` and are not
/// delivered within `margin_ms` of it: OKX's quarterlies deliver at 08:00 UTC on the last
/// Friday of March, June, September and December ("Futures contract specifications", delivery
/// time 08:00 UTC).
pub fn quarterly_delivery(now_ms: i64, margin_ms: i64) -> String {
    use chrono::{Datelike, Duration as Days, NaiveDate, TimeZone, Utc, Weekday};
    let after = Utc
        .timestamp_millis_opt(now_ms + margin_ms)
        .single()
        .unwrap_or_else(Utc::now);
    let (mut year, mut month) = (after.year(), after.month().div_ceil(3) * 3);
    loop {
        let first_of_next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)
        }
        .expect("a real month");
        let mut day = first_of_next - Days::days(1);
        while day.weekday() != Weekday::Fri {
            day -= Days::days(1);
        }
        let delivery = day.and_hms_opt(8, 0, 0).expect("08:00 exists").and_utc();
        if delivery > after {
            return day.format("%y%m%d").to_string();
        }
        (year, month) = if month == 12 {
            (year + 1, 3)
        } else {
            (year, month + 3)
        };
    }
}

/// OKX's name of a candle interval ("Get candlesticks history", `bar`): `1m 3m 5m 15m 30m 1H
/// 2H 4H`, and from 6 hours up the UTC-aligned `6Hutc 12Hutc 1Dutc 1Wutc 1Mutc` (the names
/// without `utc` open at UTC+8, off the loader's grid). Not served: 1s (the last 3 months
/// only), 8h (none), 3d (`3Dutc`'s alignment is not documented). A row off the interval's
/// grid is refused, so an alignment that differs is an error, not a wrong record.
pub fn bar(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1m",
        Interval::M3 => "3m",
        Interval::M5 => "5m",
        Interval::M15 => "15m",
        Interval::M30 => "30m",
        Interval::H1 => "1H",
        Interval::H2 => "2H",
        Interval::H4 => "4H",
        Interval::H6 => "6Hutc",
        Interval::H12 => "12Hutc",
        Interval::D1 => "1Dutc",
        Interval::W1 => "1Wutc",
        Interval::Mo1 => "1Mutc",
        Interval::S1 | Interval::H8 | Interval::D3 => return None,
    })
}

/// The intervals [`bar`] knows, for messages.
pub const BARS: &str = "1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 1d, 1w, 1M";

/// `OKX_WS_URL`'s default: the WebSocket host of OKX's production services ("Overview:
/// Production Trading Services": public channels at `wss://ws.okx.com:8443/ws/v5/public`,
/// business channels at `wss://ws.okx.com:8443/ws/v5/business`).
pub const DEFAULT_WS_URL: &str = "wss://ws.okx.com:8443";

/// The public service: `trades`, `books` and `bbo-tbt` ("Order Book Trading: Market Data:
/// WS / Trades channel", "WS / Order book channel": "URL Path /ws/v5/public").
pub const PUBLIC_PATH: &str = "/ws/v5/public";

/// The business service: the candlesticks moved there ("WS / Candlesticks channel": "URL Path
/// /ws/v5/business"); subscribed on `/public`, OKX answers 60018.
pub const BUSINESS_PATH: &str = "/ws/v5/business";

/// "The connection will break automatically if the subscription is not established or data
/// has not been pushed for more than 30 seconds"; to keep it, "send the String 'ping'" when
/// nothing arrived for N < 30 seconds, and "expect a 'pong' as a response" ("Overview:
/// WebSocket: Connect"). The loader sends it every 25 seconds whatever arrived.
pub const PING_EVERY: Duration = Duration::from_secs(25);
pub const PING: &str = "ping";
pub const PONG: &str = "pong";

/// "Connection limit: 3 requests per second (based on IP)" ("Overview: WebSocket: Connect").
pub const CONNECTIONS: usize = 3;
pub const CONNECTION_WINDOW: Duration = Duration::from_secs(1);

/// "The total number of 'subscribe'/'unsubscribe'/'login' requests per connection is limited
/// to 480 times per hour" ("Overview: WebSocket: Connect"); beyond it OKX answers 60014
/// "Requests too frequent". A connection of the loader subscribes once, in requests of
/// [`ARGS_PER_SUBSCRIBE`], and is replaced (a new connection, a new count) rather than
/// subscribed again.
pub const REQUESTS_PER_HOUR: usize = 480;

/// Channels per subscribe request. OKX bounds a request by size only ("The total length of
/// multiple channels cannot exceed 64 KB", "Overview: WebSocket: Subscribe"): 50 args of
/// about 50 bytes are far below it. Every arg is answered on its own (`{"event":"subscribe",
/// "arg":…}`), echoing the request's `id`.
pub const ARGS_PER_SUBSCRIBE: usize = 50;

/// The least time between two subscribe requests of a connection (OKX documents no pace for
/// them; the loader does not burst).
pub const SUBSCRIBE_SPACING: Duration = Duration::from_millis(100);

/// Streams one connection carries. OKX documents no limit on channels per connection beyond
/// the requests per hour: 500 streams take 10 requests.
pub const STREAMS_PER_CONNECTION: usize = 500;

const _: () = assert!(STREAMS_PER_CONNECTION.div_ceil(ARGS_PER_SUBSCRIBE) < REQUESTS_PER_HOUR);

/// `trades` ("WS / Trades channel"): `{"arg":{"channel":"trades","instId":…},"data":[{"instId",
/// "tradeId","px","sz","side","ts","count"}]}`, `side` the taker's. "Every update may aggregate
/// multiple trades. The message is sent only once per taker order, per filled price. The
/// count field is used to represent the number of aggregated matches": a message of `count`
/// more than 1 stands for trades that history-trades lists one by one.
pub const TRADES_CHANNEL: &str = "trades";

/// `books` ("WS / Order book channel"): "400 depth levels will be pushed in the initial full
/// snapshot. Incremental data will be pushed every 100 ms for the changes in the order book
/// during that period of time"; `action` `snapshot` or `update`, levels `[price, size,
/// deprecated, orders]` (size "0" deletes a level), `prevSeqId` the `seqId` of the message
/// before (-1 on a snapshot). An update whose `prevSeqId` is not the last `seqId` lost
/// something: OKX's way back is to subscribe again, for a new snapshot. "seqId is the same as
/// the last sent message and prevSeqId equals to seqId" when nothing changed; after a
/// maintenance "seqId will be less than prevSeqId".
pub const BOOKS_CHANNEL: &str = "books";

/// `checksum` of `books`: the CRC-32 of the top 25 bids and asks interleaved
/// (`bid1px:bid1sz:ask1px:ask1sz:…`, a side that ran out left out), as a signed 32-bit
/// integer. OKX has deprecated it: "its value is fixed to 0 and must no longer be used for
/// integrity verification. Please use seqId/prevSeqId". A non-zero one is still checked.
pub const CHECKSUM_LEVELS: usize = 25;

/// `bbo-tbt` ("WS / Order book channel"): "1 depth level snapshot will be pushed in the
/// initial push. Snapshot data will be pushed every 10 ms when there are changes in the 1
/// depth level snapshot", with `ts` and `seqId`.
pub const BBO_CHANNEL: &str = "bbo-tbt";

/// `liquidation-orders` ("WS / Liquidation orders channel"): subscribed per instrument type
/// (`{"channel":"liquidation-orders","instType":"SWAP"}`), it pushes the liquidations of every
/// instrument of that type, `{"arg":{…},"data":[{"instId",…,"details":[{"bkPx","side","sz",
/// "posSide","bkLoss","ts"}]}]}`: `side` the liquidation order's, `sz` in contracts, `bkPx` the
/// bankruptcy price. "For futures and swaps, each contract will only show a maximum of one
/// order per one-second period"; OKX keeps no history of them that chains with the stream.
pub const LIQUIDATION_CHANNEL: &str = "liquidation-orders";

/// The candlesticks channel of `interval` ("WS / Candlesticks channel": `candle1m` …
/// `candle1Mutc`): the bars [`bar`] names, the ones aligned to UTC.
pub fn candle_channel(interval: Interval) -> Option<String> {
    bar(interval).map(|b| format!("candle{b}"))
}

/// `{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service
/// upgrade. Please reconnect."}` ("Error Code: WebSocket: Public"): sent before OKX closes a
/// connection for an upgrade.
pub const SERVICE_UPGRADE: &str = "64008";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarterlies_deliver_on_the_last_friday_of_a_quarters_last_month() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        assert_eq!(quarterly_delivery(at("2026-12-04T00:00:00Z"), 0), "261225");
        // Delivered at 08:00 of its day: from then on the next quarter's.
        assert_eq!(quarterly_delivery(at("2026-12-25T07:59:59Z"), 0), "261225");
        assert_eq!(quarterly_delivery(at("2026-12-25T08:00:00Z"), 0), "270326");
        // A margin skips a quarterly that delivers too soon.
        assert_eq!(
            quarterly_delivery(at("2026-12-24T00:00:00Z"), 2 * 86_400_000),
            "270326"
        );
        assert_eq!(quarterly_delivery(at("2027-01-10T00:00:00Z"), 0), "270326");
        assert_eq!(quarterly_delivery(at("2027-06-30T00:00:00Z"), 0), "270924");
    }

    #[test]
    fn instrument_ids_have_their_markets_form() {
        assert!(has_form_of(Market::Spot, "BTC-USDT"));
        assert!(has_form_of(Market::UsdM, "BTC-USD-SWAP"));
        assert!(has_form_of(Market::CoinM, "BTC-USD-250328"));
        assert!(!has_form_of(Market::Spot, "BTC-USDT-SWAP"));
        assert!(!has_form_of(Market::UsdM, "BTC-USDT"));
        assert!(!has_form_of(Market::CoinM, "BTC-USD-SWAP"));
        assert!(!has_form_of(Market::CoinM, "BTC-USD-2503"));
    }

    #[test]
    fn every_bar_okx_names_is_one_of_the_loaders() {
        let named: Vec<&str> = Interval::ALL
            .iter()
            .filter(|iv| bar(**iv).is_some())
            .map(|iv| iv.as_str())
            .collect();
        assert_eq!(named.join(", "), BARS);
        let named: Vec<&str> = Interval::ALL
            .iter()
            .filter(|iv| open_interest_period(**iv).is_some())
            .map(|iv| iv.as_str())
            .collect();
        assert_eq!(named.join(", "), OPEN_INTEREST_PERIODS);
    }
}
