//! One Binance WebSocket connection on combined streams: connects (naming the streams in the
//! URL, or with SUBSCRIBE messages when the URL would be too long), answers pings, notices a dead
//! connection (nothing at all, not even a ping, for `idle_timeout`) and Binance's
//! `serverShutdown` notice, and forwards every event to the live source with its connection id.
//! Reconnecting, rotating and de-duplicating are the live source's business.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::market::Market;
use crate::registry::LiveType;

/// A piece of the text frame it came in, shared rather than copied: an event's stream name or
/// its JSON.
#[derive(Debug, Clone)]
pub struct FramePart {
    frame: Utf8Bytes,
    start: usize,
    end: usize,
}

impl FramePart {
    /// `part` of `frame`, where it is a slice of the frame's text; a copy otherwise (a value
    /// with escapes that the parser had to rewrite).
    fn of(frame: &Utf8Bytes, part: &str) -> FramePart {
        let base = frame.as_str().as_ptr() as usize;
        let at = part.as_ptr() as usize;
        if at >= base && at + part.len() <= base + frame.len() {
            FramePart {
                frame: frame.clone(),
                start: at - base,
                end: at - base + part.len(),
            }
        } else {
            FramePart::from(part.to_string())
        }
    }

    pub fn get(&self) -> &str {
        &self.frame.as_str()[self.start..self.end]
    }
}

impl From<String> for FramePart {
    fn from(text: String) -> FramePart {
        let end = text.len();
        FramePart {
            frame: Utf8Bytes::from(text),
            start: 0,
            end,
        }
    }
}

/// What a connection reports.
#[derive(Debug)]
pub enum StreamMessage {
    Connected {
        conn: u64,
    },
    Event {
        conn: u64,
        stream: FramePart,
        data: FramePart,
    },
    /// Binance announced it will close this connection soon.
    ServerShutdown {
        conn: u64,
    },
    Closed {
        conn: u64,
        reason: String,
    },
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

/// How to open a connection on a set of streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    pub url: String,
    /// Streams to SUBSCRIBE to after connecting, one message per chunk.
    pub subscribe: Vec<Vec<String>>,
}

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
        };
    }
    StreamPlan {
        url: format!("{base}/stream"),
        subscribe: streams
            .chunks(STREAMS_PER_SUBSCRIBE)
            .map(<[String]>::to_vec)
            .collect(),
    }
}

/// What a connection read and the live source has not taken yet. The reader keeps reading (and
/// answering pings) while the source is busy with a backfill or a paced snapshot; once more
/// than [`MAX_WS_BACKLOG`](crate::bounds::MAX_WS_BACKLOG) waits, the connection is given up
/// like a dropped one (what it carried is backfilled where Binance allows), instead of the
/// reader stopping until Binance closes it for pongs that never came.
struct Outbox {
    held: VecDeque<StreamMessage>,
    bytes: usize,
}

/// Why the reader stops.
enum Stop {
    SourceEnded,
    Overrun(usize),
}

impl Outbox {
    fn new() -> Self {
        Outbox {
            held: VecDeque::new(),
            bytes: 0,
        }
    }

    fn size(msg: &StreamMessage) -> usize {
        64 + match msg {
            StreamMessage::Event { stream, data, .. } => stream.get().len() + data.get().len(),
            _ => 0,
        }
    }

    /// Hands `msg` on at once if the source has room and nothing waits before it; holds it
    /// otherwise.
    fn push(&mut self, tx: &mpsc::Sender<StreamMessage>, msg: StreamMessage) -> Result<(), Stop> {
        let msg = if self.held.is_empty() {
            match tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(msg)) => msg,
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stop::SourceEnded),
            }
        } else {
            msg
        };
        self.bytes += Self::size(&msg);
        self.held.push_back(msg);
        if self.bytes > crate::bounds::MAX_WS_BACKLOG {
            return Err(Stop::Overrun(self.bytes));
        }
        Ok(())
    }

    fn pop(&mut self) -> Option<StreamMessage> {
        let msg = self.held.pop_front()?;
        self.bytes -= Self::size(&msg);
        Some(msg)
    }
}

impl Stop {
    fn reason(self) -> Result<String, String> {
        match self {
            Stop::SourceEnded => Ok("source ended".into()),
            Stop::Overrun(bytes) => Err(format!(
                "the loader fell {} behind this connection (it kept reading and answering pings meanwhile): \
                 giving the connection up; what it carried is backfilled where Binance allows",
                crate::bounds::human(bytes)
            )),
        }
    }
}

/// Runs one connection until it closes; everything it sees goes to `tx`.
pub async fn run_connection(
    plan: StreamPlan,
    conn: u64,
    idle_timeout: Duration,
    tx: mpsc::Sender<StreamMessage>,
) {
    let mut outbox = Outbox::new();
    let reason = match connect_and_read(&plan, conn, idle_timeout, &tx, &mut outbox).await {
        Ok(r) => r,
        Err(e) => e,
    };
    // What the connection read before it ended is delivered before it is reported closed.
    while let Some(msg) = outbox.pop() {
        if tx.send(msg).await.is_err() {
            return;
        }
    }
    let _ = tx.send(StreamMessage::Closed { conn, reason }).await;
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
    memchr::memmem::find(data.as_bytes(), b"serverShutdown").is_some()
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

/// The message a combined stream's event becomes.
fn event_message(conn: u64, frame: &Utf8Bytes, stream: &str, data: &str) -> StreamMessage {
    if stream.ends_with("serverShutdown") || is_shutdown_notice(data) {
        StreamMessage::ServerShutdown { conn }
    } else {
        StreamMessage::Event {
            conn,
            stream: FramePart::of(frame, stream),
            data: FramePart::of(frame, data),
        }
    }
}

async fn connect_and_read(
    plan: &StreamPlan,
    conn: u64,
    idle_timeout: Duration,
    tx: &mpsc::Sender<StreamMessage>,
    outbox: &mut Outbox,
) -> Result<String, String> {
    // wss:// with the process's shared connector (a new one per connection would parse the
    // system's CA bundle again); ws:// needs none.
    let tls = if plan
        .url
        .get(..4)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss:"))
    {
        Some(tokio_tungstenite::Connector::NativeTls(
            crate::tls::connector()?,
        ))
    } else {
        None
    };
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_tls_with_config(
            plan.url.as_str(),
            Some(
                WebSocketConfig::default()
                    .max_message_size(Some(crate::bounds::MAX_WS_MESSAGE))
                    .max_frame_size(Some(crate::bounds::MAX_WS_MESSAGE)),
            ),
            false,
            tls,
        ),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| format!("cannot connect: {e}"))?;
    // Subscriptions go out paced; their replies are read (and pings answered) in the loop below.
    let mut pending_subscribes = plan.subscribe.iter().enumerate().peekable();
    let mut next_subscribe = Instant::now();
    if pending_subscribes.peek().is_none() {
        if let Err(stop) = outbox.push(tx, StreamMessage::Connected { conn }) {
            return stop.reason();
        }
    }
    let mut unanswered = plan.subscribe.len();
    // Liveness: any frame counts. A quiet stream (futures servers ping only every 3 minutes, an
    // illiquid symbol's liquidations may not come for longer) is probed with a ping of our own
    // halfway through the idle timeout; only a connection that answers nothing is dead.
    let mut last_frame = Instant::now();
    let mut probed = false;
    loop {
        if let Some((i, streams)) = pending_subscribes.peek() {
            if Instant::now() >= next_subscribe {
                let msg = serde_json::json!({"method": "SUBSCRIBE", "params": streams, "id": *i as u64 + 1});
                ws.send(Message::text(msg.to_string()))
                    .await
                    .map_err(|e| format!("cannot subscribe: {e}"))?;
                pending_subscribes.next();
                next_subscribe = Instant::now() + SUBSCRIBE_SPACING;
            }
        }
        let dead_at = last_frame + idle_timeout;
        let probe_at = last_frame + idle_timeout / 2;
        let mut until = if probed { dead_at } else { probe_at };
        if pending_subscribes.peek().is_some() {
            until = until.min(next_subscribe);
        }
        let wait = until.saturating_duration_since(Instant::now());
        let next = tokio::select! {
            permit = tx.reserve(), if !outbox.held.is_empty() => {
                match (permit, outbox.pop()) {
                    (Ok(permit), Some(msg)) => permit.send(msg),
                    (Err(_), _) => return Ok("source ended".into()),
                    (Ok(_), None) => {}
                }
                continue;
            }
            next = tokio::time::timeout(wait, ws.next()) => next,
        };
        let frame = match next {
            Err(_) if Instant::now() >= dead_at => {
                let _ = ws.close(None).await;
                return Err(format!(
                    "no data, no ping and no answer to ours for {idle_timeout:?}: connection presumed dead"
                ));
            }
            Err(_) => {
                if !probed && Instant::now() >= probe_at {
                    ws.send(Message::Ping(b"keepalive".to_vec().into()))
                        .await
                        .map_err(|e| format!("cannot ping: {e}"))?;
                    probed = true;
                }
                continue;
            }
            Ok(None) => return Err("connection closed".into()),
            Ok(Some(Err(e))) => return Err(format!("connection failed: {e}")),
            Ok(Some(Ok(f))) => f,
        };
        last_frame = Instant::now();
        probed = false;
        match frame {
            Message::Text(text) => {
                if let Some((stream, data)) = split_combined(text.as_str()) {
                    if let Err(stop) = outbox.push(tx, event_message(conn, &text, stream, data)) {
                        return stop.reason();
                    }
                    continue;
                }
                let Ok(f) = serde_json::from_str::<Frame>(text.as_str()) else {
                    tracing::debug!(conn, message = %text.as_str(), "ignoring a WebSocket message that is not JSON");
                    continue;
                };
                if let Some(e) = f.refusal() {
                    return Err(format!("SUBSCRIBE refused: {e}"));
                }
                let msg = match (f.stream, f.data) {
                    (Some(stream), Some(data)) => event_message(conn, &text, &stream, data.get()),
                    _ if f.id.is_some() => {
                        unanswered = unanswered.saturating_sub(1);
                        if unanswered == 0 {
                            if let Err(stop) = outbox.push(tx, StreamMessage::Connected { conn }) {
                                return stop.reason();
                            }
                        }
                        continue;
                    }
                    _ if f.e.as_deref() == Some("serverShutdown") => {
                        StreamMessage::ServerShutdown { conn }
                    }
                    _ => {
                        tracing::debug!(conn, message = %text.as_str(), "ignoring an unexpected WebSocket message");
                        continue;
                    }
                };
                if let Err(stop) = outbox.push(tx, msg) {
                    return stop.reason();
                }
            }
            Message::Ping(payload) => {
                // Answer at once with the same payload (Binance closes after a minute without).
                if let Err(e) = ws.send(Message::Pong(payload)).await {
                    return Err(format!("cannot answer a ping: {e}"));
                }
            }
            Message::Close(frame) => {
                return Err(match frame {
                    Some(f) => format!("closed by the server ({} {})", f.code, f.reason),
                    None => "closed by the server".into(),
                })
            }
            _ => {}
        }
    }
}

/// Binance allows 300 connection attempts per 5 minutes per IP; this keeps us under it.
#[derive(Debug)]
pub struct ConnectionAttempts {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl ConnectionAttempts {
    pub fn new(limit: usize, window: Duration) -> Self {
        ConnectionAttempts {
            limit,
            window,
            recent: VecDeque::new(),
        }
    }

    /// How long to wait before the next attempt is allowed; records the attempt.
    pub fn reserve(&mut self) -> Duration {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
        let wait = if self.recent.len() >= self.limit {
            self.window
                .saturating_sub(now.duration_since(self.recent[self.recent.len() - self.limit]))
        } else {
            Duration::ZERO
        };
        self.recent.push_back(now + wait);
        wait
    }
}

/// Binance's stream names and endpoints of the live types.
impl LiveType {
    /// The stream name for `symbol` (Binance wants lower case).
    pub fn stream(&self, symbol: &str) -> String {
        let s = symbol.to_ascii_lowercase();
        match self {
            LiveType::Trades => format!("{s}@trade"),
            LiveType::AggTrades => format!("{s}@aggTrade"),
            LiveType::Candles(iv) => format!("{s}@kline_{iv}"),
            LiveType::Depth | LiveType::OrderBook => format!("{s}@depth@100ms"),
            LiveType::BookTicker => format!("{s}@bookTicker"),
            LiveType::MarkPrice => format!("{s}@markPrice@1s"),
            LiveType::Liquidations => format!("{s}@forceOrder"),
        }
    }

    /// The routed WebSocket endpoint of the stream on `market`: USDⓈ-M serves book streams
    /// (`@bookTicker`, `@depth`) under `/public` and the others under `/market` (its legacy
    /// unrouted URLs were retired in 2026); spot and COIN-M have one endpoint for all.
    pub fn route(self, market: Market) -> &'static str {
        match (market, self) {
            (Market::Spot | Market::CoinM, _) => "",
            (Market::UsdM, LiveType::BookTicker | LiveType::Depth | LiveType::OrderBook) => {
                "/public"
            }
            (Market::UsdM, _) => "/market",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that sends `events` aggTrade events at once, then pings every 20 ms and reports
    /// each pong it gets on the returned channel.
    async fn pinging_server(events: u64) -> (String, mpsc::UnboundedReceiver<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "ws://{}/stream?streams=x@aggTrade",
            listener.local_addr().unwrap()
        );
        let (pongs, pong_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            for a in 0..events {
                let text =
                    format!(r#"{{"stream":"x@aggTrade","data":{{"e":"aggTrade","a":{a}}}}}"#);
                ws.send(Message::text(text)).await.unwrap();
            }
            let mut ping = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = ping.tick() => {
                        if ws.send(Message::Ping(b"p".to_vec().into())).await.is_err() {
                            return;
                        }
                    }
                    frame = ws.next() => match frame {
                        Some(Ok(Message::Pong(_))) => {
                            let _ = pongs.send(());
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    },
                }
            }
        });
        (url, pong_rx)
    }

    /// However long the live source takes to come back for the next event (here: it takes
    /// nothing until the server has had pongs), the reader keeps answering pings, and then
    /// delivers every event it held, in order.
    #[tokio::test]
    async fn pings_are_answered_while_the_source_is_busy() {
        let events = 500;
        let (url, mut pongs) = pinging_server(events).await;
        let (tx, mut rx) = mpsc::channel(1);
        let plan = StreamPlan {
            url,
            subscribe: Vec::new(),
        };
        let reader = tokio::spawn(run_connection(plan, 7, Duration::from_secs(30), tx));
        // The channel holds one message: the reader is 500 events ahead of a source that takes
        // nothing. Pongs must keep coming all the same.
        for _ in 0..5 {
            tokio::time::timeout(Duration::from_secs(10), pongs.recv())
                .await
                .expect("a pong while the source was busy")
                .expect("the server runs");
        }
        assert!(matches!(
            rx.recv().await,
            Some(StreamMessage::Connected { conn: 7 })
        ));
        for a in 0..events {
            match rx.recv().await {
                Some(StreamMessage::Event { data, .. }) => {
                    let v: serde_json::Value = serde_json::from_str(data.get()).unwrap();
                    assert_eq!(v["a"], a);
                }
                other => panic!("event {a}: {other:?}"),
            }
        }
        reader.abort();
    }

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
        // Both ways make the same message of it.
        let frame = Utf8Bytes::from(text.clone());
        let StreamMessage::Event { stream, data, .. } =
            event_message(3, &frame, "btcusdt@aggTrade", ev)
        else {
            panic!("an event");
        };
        assert_eq!((stream.get(), data.get()), ("btcusdt@aggTrade", ev));
        let shutdown = r#"{"stream":"x","data":{"e":"serverShutdown","E":1}}"#;
        let (s, d) = split_combined(shutdown).unwrap();
        assert!(matches!(
            event_message(3, &Utf8Bytes::from(shutdown.to_string()), s, d),
            StreamMessage::ServerShutdown { conn: 3 }
        ));
    }

    #[test]
    fn connection_attempts_are_limited_per_window() {
        let mut a = ConnectionAttempts::new(3, Duration::from_secs(300));
        assert_eq!(a.reserve(), Duration::ZERO);
        assert_eq!(a.reserve(), Duration::ZERO);
        assert_eq!(a.reserve(), Duration::ZERO);
        let w = a.reserve();
        assert!(
            w > Duration::from_secs(290) && w <= Duration::from_secs(300),
            "{w:?}"
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
        assert_eq!(plan.subscribe.concat(), many);
    }
}
