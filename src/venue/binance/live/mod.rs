//! Binance's live feed: its combined streams (names, routed endpoints, URL or SUBSCRIBE
//! messages), its frames (events, answers, refusals, `serverShutdown`), its connection
//! allowance, and, in `events`, `backfill` and `book`, the turning of its events into records
//! with the REST backfill its rules allow (spot web-socket-streams.md, futures
//! websocket-market-streams).

mod backfill;
mod book;
mod events;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::Exchange;
use crate::error::Result;
use crate::market::{Market, Venue};
use crate::registry::LiveType;
use crate::time_range::TimeRange;
use crate::venue::live::wire::{Grammar, Read, StreamPlan};
use crate::venue::live::{ConnectionAllowance, LiveFeed, LiveScope, SymbolState};

pub use book::snapshot_limit;

/// Binance allows 300 connection attempts per 5 minutes per IP (spot
/// web-socket-streams.md, "WebSocket Limits").
pub const CONNECTION_ALLOWANCE: ConnectionAllowance = ConnectionAllowance {
    attempts: 300,
    window: Duration::from_secs(300),
};
/// Streams one connection may carry.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;

/// Binance's feed of one live type for one job.
pub struct BinanceFeed {
    pub exchange: Arc<Exchange>,
    pub scope: LiveScope,
    /// `BINANCE_WS_URL` (or the futures one) of the job's market.
    pub ws_url: String,
}

impl LiveFeed for BinanceFeed {
    fn scope(&self) -> &LiveScope {
        &self.scope
    }

    fn venue(&self) -> Venue {
        Venue::Binance
    }

    fn market(&self) -> Market {
        self.exchange.market()
    }

    fn ws_url(&self) -> &str {
        &self.ws_url
    }

    fn grammar(&self) -> Arc<dyn Grammar> {
        Arc::new(BinanceGrammar)
    }

    fn plan(&self, symbols: &[Arc<str>]) -> (StreamPlan, Vec<String>) {
        let t = self.scope.live_type;
        let streams: Vec<String> = symbols.iter().map(|s| stream_name(t, s)).collect();
        let plan = combined_plan(&self.ws_url, route(t, self.exchange.market()), &streams);
        (plan, streams)
    }

    fn allowance(&self) -> ConnectionAllowance {
        CONNECTION_ALLOWANCE
    }

    fn max_streams_per_connection(&self) -> usize {
        MAX_STREAMS_PER_CONNECTION
    }

    fn now_ms(&self) -> i64 {
        self.exchange.server_now_ms()
    }

    fn ws_var(&self) -> (&'static str, &'static str) {
        self.exchange.market().ws_url_var()
    }

    fn ordinal(&self, data: &str) -> Option<i64> {
        events::ordinal(self.scope.live_type, data)
    }

    fn on_event<'a>(&'a self, st: &'a mut SymbolState, data: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.event(st, data))
    }

    fn on_event_now(&self, st: &mut SymbolState, data: &str) -> Result<bool> {
        self.event_now(st, data)
    }

    fn close_range<'a>(
        &'a self,
        st: &'a mut SymbolState,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.fill_to_end(st, range))
    }

    fn has_rest(&self) -> bool {
        matches!(
            self.scope.live_type,
            LiveType::Trades | LiveType::AggTrades | LiveType::Candles(_)
        )
    }
}

#[derive(Deserialize)]
struct EventType<'a> {
    #[serde(borrow, default)]
    e: Option<&'a str>,
}

/// URLs longer than this name their streams in SUBSCRIBE messages instead (a combined URL of
/// 1,024 streams is tens of kilobytes, more than servers and proxies accept).
pub const MAX_URL_LEN: usize = 2_000;
/// Streams per SUBSCRIBE message.
const STREAMS_PER_SUBSCRIBE: usize = 200;
/// Binance allows 5 incoming messages a second per connection, pongs included: SUBSCRIBE
/// messages go out at most 3 a second.
const SUBSCRIBE_SPACING: Duration = Duration::from_millis(350);

/// The base of every stream URL: `BINANCE_WS_URL` (or a futures one) as users write it (with or
/// without `/ws` or `/stream`, futures' routed `/public` or `/market`, a trailing slash) reduced
/// to scheme, host, port and any path prefix before those.
pub fn stream_base(url: &str) -> String {
    let mut base = url.trim().trim_end_matches('/');
    for suffix in ["/ws", "/stream", "/public", "/market"] {
        if let Some(b) = base.strip_suffix(suffix) {
            base = b.trim_end_matches('/');
        }
    }
    base.to_string()
}

/// The combined-stream connection for `streams` under `base` and `route` (futures' `/public` or
/// `/market`, empty on spot).
pub fn combined_plan(base: &str, route: &str, streams: &[String]) -> StreamPlan {
    let base = format!("{}{route}", stream_base(base));
    let url = format!("{base}/stream?streams={}", streams.join("/"));
    if url.len() <= MAX_URL_LEN {
        return StreamPlan {
            url,
            subscribe: Vec::new(),
            spacing: SUBSCRIBE_SPACING,
        };
    }
    StreamPlan {
        url: format!("{base}/stream"),
        subscribe: streams
            .chunks(STREAMS_PER_SUBSCRIBE)
            .enumerate()
            .map(|(i, chunk)| {
                serde_json::json!({"method": "SUBSCRIBE", "params": chunk, "id": i as u64 + 1})
                    .to_string()
            })
            .collect(),
        spacing: SUBSCRIBE_SPACING,
    }
}

/// What the reader needs of a text frame, read in one pass: a combined stream's event
/// (`stream`, `data`), an answer to one of our requests (`id`; futures wrap an error in
/// `error`, spot sends `code` and `msg` at the top level, with the request's `id` or without
/// one: spot web-socket-streams.md, "Error Messages"; no event has a top-level `code`), or a
/// bare event such as `serverShutdown` (`e`). Values are borrowed from the frame.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    code: Option<&'a RawValue>,
    #[serde(borrow, default)]
    msg: Option<&'a RawValue>,
    #[serde(borrow, default)]
    e: Option<Cow<'a, str>>,
}

impl Frame<'_> {
    /// The refusal, when this frame is one.
    fn refusal(&self) -> Option<String> {
        if let Some(e) = self.error {
            return Some(e.get().to_string());
        }
        self.code.map(|code| match self.msg {
            Some(msg) => format!("{{\"code\":{},\"msg\":{}}}", code.get(), msg.get()),
            None => format!("{{\"code\":{}}}", code.get()),
        })
    }
}

/// Whether a combined stream's event is Binance's `serverShutdown` notice. Parsed only where
/// the name occurs at all, so an ordinary event is not read twice here.
fn is_shutdown_notice(data: &str) -> bool {
    // Built once: building a finder costs more than searching one event with it.
    static NAME: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"serverShutdown"));
    NAME.find(data.as_bytes()).is_some()
        && serde_json::from_str::<EventType>(data)
            .ok()
            .and_then(|e| e.e)
            == Some("serverShutdown")
}

/// A combined stream's event as Binance writes it, `{"stream":"<name>","data":<event>}`
/// (web-socket-streams.md, "Combined streams"), split into the name and the event without
/// reading the event: the live source parses it once, and an event that is not valid JSON
/// fails there. Any other layout (answers, whitespace, an escape in the name) takes the general
/// way, [`Frame`].
fn split_combined(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(r#"{"stream":""#)?;
    let (name, rest) = rest.split_at(memchr::memchr(b'"', rest.as_bytes())?);
    if name.contains('\\') {
        return None;
    }
    let data = rest.strip_prefix(r#"","data":"#)?.strip_suffix('}')?;
    Some((name, data))
}

/// Binance's frames: a combined stream's event, an answer to a SUBSCRIBE (its `id`), a refusal,
/// or `serverShutdown`.
pub struct BinanceGrammar;

impl Grammar for BinanceGrammar {
    fn read<'t>(&self, text: &'t str) -> Read<'t> {
        if let Some((stream, data)) = split_combined(text) {
            return event_read(Cow::Borrowed(stream), data);
        }
        let Ok(f) = serde_json::from_str::<Frame>(text) else {
            return Read::Other;
        };
        if let Some(e) = f.refusal() {
            return Read::Refused(format!("SUBSCRIBE: {e}"));
        }
        match (f.stream, f.data) {
            (Some(stream), Some(data)) => event_read(stream, data.get()),
            _ if f.id.is_some() => Read::Answered,
            _ if f.e.as_deref() == Some("serverShutdown") => Read::Shutdown,
            _ => Read::Other,
        }
    }
}

/// A combined stream's event, unless it is the `serverShutdown` notice.
fn event_read<'t>(stream: Cow<'t, str>, data: &'t str) -> Read<'t> {
    if stream.ends_with("serverShutdown") || is_shutdown_notice(data) {
        Read::Shutdown
    } else {
        Read::Event { stream, data }
    }
}

/// The stream name of `t` for `symbol` (Binance wants lower case).
pub fn stream_name(t: LiveType, symbol: &str) -> String {
    let s = symbol.to_ascii_lowercase();
    match t {
        LiveType::Trades => format!("{s}@trade"),
        LiveType::AggTrades => format!("{s}@aggTrade"),
        LiveType::Candles(iv) => format!("{s}@kline_{iv}"),
        LiveType::Depth | LiveType::OrderBook => format!("{s}@depth@100ms"),
        LiveType::BookTicker => format!("{s}@bookTicker"),
        LiveType::MarkPrice => format!("{s}@markPrice@1s"),
        LiveType::Liquidations => format!("{s}@forceOrder"),
    }
}

/// The routed WebSocket endpoint of `t`'s stream on `market`: USDⓈ-M serves book streams
/// (`@bookTicker`, `@depth`) under `/public` and the others under `/market` (its legacy
/// unrouted URLs were retired in 2026); spot and COIN-M have one endpoint for all.
pub fn route(t: LiveType, market: Market) -> &'static str {
    match (market, t) {
        (Market::Spot | Market::CoinM, _) => "",
        (Market::UsdM, LiveType::BookTicker | LiveType::Depth | LiveType::OrderBook) => "/public",
        (Market::UsdM, _) => "/market",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spot's and futures' refusals are both refusals; an acknowledgement and events are not.
    #[test]
    fn spot_and_futures_subscribe_refusals_are_recognised() {
        let refusal = |t: &str| serde_json::from_str::<Frame>(t).unwrap().refusal();
        let spot = refusal(r#"{"code":2,"msg":"Invalid request: invalid stream","id":3}"#);
        assert!(spot.unwrap().contains("invalid stream"));
        assert!(refusal(r#"{"code":3,"msg":"Invalid JSON"}"#).is_some());
        let futures = refusal(r#"{"error":{"code":2,"msg":"Invalid request"},"id":1}"#);
        assert!(futures.unwrap().contains("Invalid request"));
        assert_eq!(refusal(r#"{"result":null,"id":1}"#), None);
        assert_eq!(
            refusal(r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1,"m":true}"#),
            None
        );
    }

    /// Binance's layout is split without parsing the event; anything else is left to the parser.
    #[test]
    fn combined_events_are_split_where_binance_writes_them_so() {
        let ev = r#"{"e":"aggTrade","E":1,"s":"BTCUSDT","a":7}"#;
        let text = format!(r#"{{"stream":"btcusdt@aggTrade","data":{ev}}}"#);
        assert_eq!(split_combined(&text), Some(("btcusdt@aggTrade", ev)));
        for other in [
            r#"{"result":null,"id":1}"#.to_string(),
            format!(r#"{{ "stream":"btcusdt@aggTrade","data":{ev}}}"#),
            format!(r#"{{"stream":"btcusdt@aggTrade","data":{ev}}} "#),
            format!(r#"{{"data":{ev},"stream":"btcusdt@aggTrade"}}"#),
            format!(r#"{{"stream":"btc\"usdt","data":{ev}}}"#),
        ] {
            assert_eq!(split_combined(&other), None, "{other}");
            // The general way still reads the reordered event.
            let f: Frame = serde_json::from_str(&other).unwrap();
            assert_eq!(f.data.is_some(), other.contains("data"));
        }
        // Both ways read the same event.
        let reordered = format!(r#"{{"data":{ev},"stream":"btcusdt@aggTrade"}}"#);
        for text in [&text, &reordered] {
            assert_eq!(
                BinanceGrammar.read(text),
                Read::Event {
                    stream: Cow::Borrowed("btcusdt@aggTrade"),
                    data: ev
                }
            );
        }
        let shutdown = r#"{"stream":"x","data":{"e":"serverShutdown","E":1}}"#;
        assert_eq!(BinanceGrammar.read(shutdown), Read::Shutdown);
        assert_eq!(
            BinanceGrammar.read(r#"{"result":null,"id":1}"#),
            Read::Answered
        );
    }

    #[test]
    fn combined_urls() {
        let two = ["btcusdt@trade".to_string(), "ethusdt@trade".to_string()];
        let expected = "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade";
        for base in [
            "wss://stream.binance.com:9443/",
            "wss://stream.binance.com:9443/ws",
            "wss://stream.binance.com:9443/ws/",
            "wss://stream.binance.com:9443/stream",
        ] {
            let plan = combined_plan(base, "", &two);
            assert_eq!(plan.url, expected, "{base}");
            assert!(plan.subscribe.is_empty());
        }
        // Futures: the routed endpoint is added to the base however the base was written.
        for base in [
            "wss://fstream.binance.com",
            "wss://fstream.binance.com/ws",
            "wss://fstream.binance.com/market/",
            "wss://fstream.binance.com/public/stream",
        ] {
            let plan = combined_plan(base, "/market", &two[..1]);
            assert_eq!(
                plan.url, "wss://fstream.binance.com/market/stream?streams=btcusdt@trade",
                "{base}"
            );
        }
        // 1,024 streams would make a URL of tens of kilobytes: SUBSCRIBE instead.
        let many: Vec<String> = (0..1024)
            .map(|i| format!("sym{i:04}usdt@aggTrade"))
            .collect();
        let plan = combined_plan("wss://stream.binance.com:9443/ws", "", &many);
        assert_eq!(plan.url, "wss://stream.binance.com:9443/stream");
        assert_eq!(plan.subscribe.len(), 6);
        let named: Vec<String> = plan
            .subscribe
            .iter()
            .flat_map(|text| {
                let v: serde_json::Value = serde_json::from_str(text).unwrap();
                assert_eq!(v["method"], "SUBSCRIBE");
                serde_json::from_value::<Vec<String>>(v["params"].clone()).unwrap()
            })
            .collect();
        assert_eq!(named, many);
    }
}
