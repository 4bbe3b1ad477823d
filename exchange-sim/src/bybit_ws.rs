//! Bybit's v5 public WebSocket, served under `/bybit-ws` ([`SimServer::bybit_ws_url`]): the
//! loader's `BYBIT_WS_URL` base `ws://IP:PORT/bybit-ws` stands for Bybit's
//! `wss://stream.bybit.com`, so `GET /bybit-ws/v5/public/{spot|linear|inverse}` upgrades to
//! the category's public stream (any other path under `/bybit-ws`: HTTP 404). Data are the
//! Bybit venue's ([`crate::bybit`], [`crate::bybit_archive`]), on the simulator's clock
//! ([`crate::SimClock`]), so a live load agrees with REST and the archive.
//!
//! What Bybit documents, and where (bybit-exchange.github.io/docs/v5/…):
//! - `ws/connect`: endpoints `wss://stream.bybit.com/v5/public/{spot,linear,inverse}`;
//!   requests `{"req_id":"…","op":"subscribe"|"unsubscribe","args":[topic…]}` (`req_id`
//!   optional); answers `{"success":true,"ret_msg":"subscribe","conn_id":"…","req_id":"…",
//!   "op":"subscribe"}` on spot and `{"success":true,"ret_msg":"","conn_id":"…","req_id":"",
//!   "op":"subscribe"}` on linear/inverse ("Understanding the Subscription Response");
//!   heartbeat `{"req_id":"…","op":"ping"}` answered `{"success":true,"ret_msg":"pong",
//!   "conn_id":"…","op":"ping"}` on spot and the same with `"req_id"` on linear/inverse ("How
//!   to Send the Heartbeat Packet", which recommends a ping every 20 s); "Public channel - Args
//!   limits": at most 21,000 characters of `args` per connection and, on spot, at most 10 args
//!   per subscription request; "In general, if there is no "ping-pong" and no stream data sent
//!   from server end, the connection will be cut off after 10 minutes" (the section about
//!   `max_active_time`; the idle close is [`BybitWsFaults::idle_timeout`]);
//! - `websocket/public/trade`: topic `publicTrade.{symbol}`, `{"topic","type":"snapshot","ts",
//!   "data":[{"T","s","S","v","p","L","i","BT","RPI","seq"}]}` (`RPI` and `seq` are on the
//!   page's newer, translated versions), trades sorted by time ascending, `L` (tick direction)
//!   on derivatives only, at most 1024 trades a message;
//! - `websocket/public/kline`: topic `kline.{interval}.{symbol}`, intervals
//!   `1,3,5,15,30,60,120,240,360,720,D,W,M`, pushed every 1-60 s, `data:[{"start","end",
//!   "interval","open","close","high","low","volume","turnover","confirm","timestamp"}]`,
//!   `confirm:true` for the candle's last push;
//! - `websocket/public/orderbook`: topic `orderbook.{depth}.{symbol}`, depths and pushes
//!   linear/inverse 1 (10 ms), 50 (20 ms), 200 (100 ms), 1000 (200 ms), spot 1 (10 ms), 50
//!   (20 ms), 200 (200 ms), 1000 (200 ms) (older versions of the page listed 500 instead of
//!   1000 on derivatives, and spot without 1000; third parties found the live service refusing
//!   500); a `snapshot` first, then `delta`s of the
//!   changed levels (size `0` deletes a level), `data:{"s","b","a","u","seq"}` plus top-level
//!   `ts` and `cts`; level 1 is snapshots only, pushed again after 3 s without change with the
//!   same `u`; a snapshot with `u` = 1 is a service restart and replaces the client's book;
//! - `websocket/public/all-liquidation`: topic `allLiquidation.{symbol}` (USDT and USDC
//!   contracts and inverse contracts: `linear` and `inverse`; Bybit has no spot liquidations),
//!   "Push frequency: 500ms", `{"topic","type":"snapshot","ts","data":[{"T","s","S","v","p"}]}`
//!   with `S` the position's side ("When you receive a Buy update, this means that a long
//!   position has been liquidated"), `v` the size and `p` the bankruptcy price.
//!
//! What Bybit does not document, as third parties captured it from the live service:
//! refusals are `{"success":false,"ret_msg":"error:handler not found,topic:<arg>",…}` (an
//! unknown topic, symbol, interval or depth; symbols are case-sensitive), `"error:already
//! subscribed,topic:<arg>"`, `"args size >10"` (spot), `"error:invalid op"`; a refused request
//! subscribes none of its args; `u` rises by exactly one per message of a book topic; the
//! server never sends WebSocket pings. The message for more than 21,000 characters of args and
//! the exact way an idle connection is cut are unknown: the simulator answers `"error:args
//! length exceeds 21000"` and drops the TCP connection without a close frame.
//!
//! The simulator's choices where the data need one:
//! - trades are exactly [`crate::bybit_archive::trades`]' (same ids, times, prices, sizes,
//!   sides and order): from the first millisecond after the subscription, each millisecond
//!   whole, as the clock passes it; `seq` is the id of the aggregate trade (the match) a trade
//!   belongs to, `L` is `PlusTick` for a taker buy and `MinusTick` for a sell, as in the
//!   archive's `tickDirection`;
//! - candles are REST's ([`crate::bybit::kline`] once closed): an update of the open candle
//!   every [`BybitWsFaults::kline_update`], then exactly one `confirm:true` per candle;
//!   `timestamp` is the push time;
//! - books are deterministic per category, symbol and 100 ms slot (the Binance markets' book
//!   generator, [`crate::data::BOOK_SLOT_MS`], on the Bybit category's prices), so a book
//!   topic pushes at most once per slot (200 ms topics once per two): each message is the book
//!   of one period `p` (`p` = time ÷ max(push interval, 100 ms)) with `u = p − p₀ + 1`, `p₀`
//!   the period of the last book restart (the Unix epoch until
//!   [`SimServer::bybit_ws_reset_books`]). Deltas follow period by period (one with both sides
//!   empty in the rare period where nothing changed, so `u` never skips); a client more than
//!   50 periods behind (a clock jump) gets a fresh snapshot instead. Every connection sees
//!   the same `u` for the same book. `seq` and `cts` are the id and time of the last trade at
//!   or before the book's time;
//! - liquidations are exactly [`crate::bybit::bybit_liquidations`]' (the schedule of
//!   `venue_liquidations`: per half-second window up to three, two of them sometimes at the
//!   same millisecond). At each 500 ms boundary `B` of the simulator's clock (sent at the first
//!   tick at or after it), a symbol whose window `[B − 500, B)` had any gets ONE message,
//!   `ts` = `B`, its liquidations by `T` (a shared millisecond always in the same order);
//!   windows without any send nothing. A subscription starts with the half-second it is made
//!   in (nothing older, also after a reconnect); a topic more than an hour behind (a clock
//!   jump) skips to the last hour. `v` and `p` carry 8 decimals like the trades.
//!
//! Faults and controls ([`BybitWsFaults`], `GET`/`POST /sim/bybit_ws` with
//! `{"idle_timeout_ms":600000,"data_keeps_alive":true,"latency_ms":0,"kline_update_ms":1000}`,
//! a POST may send only some fields): [`SimServer::bybit_ws_disconnect_all`] (also `POST
//! /sim/bybit_ws/disconnect`), [`SimServer::bybit_ws_reset_books`] (`POST
//! /sim/bybit_ws/reset_books`), [`SimServer::bybit_ws_drop_trades`] (`POST
//! /sim/bybit_ws/drop_trades?topic=publicTrade.BTCUSDT&messages=N`); counters in
//! [`BybitWsStats`] ([`crate::SimStats::bybit_ws`], [`SimServer::bybit_ws_stats`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kline_interval::Interval;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::bybit::{interval_of, BybitCategory};
use crate::clock::SimClock;
use crate::data::{self, Data, Market};
use crate::fmt::{push_fixed8, push_i64, push_json_str, push_u64};
use crate::streams::push_levels;
use crate::venue_liquidations::{self, LiqUnits, BYBIT_WINDOW_MS};
use crate::SimServer;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// "Spot can input up to 10 args for each subscription request" (ws/connect, "Public channel -
/// Args limits").
pub const SPOT_MAX_ARGS_PER_REQUEST: usize = 10;
/// "you cannot have length of "args" array over 21,000 characters" per public connection
/// (ws/connect); counted here as the characters of the topics subscribed.
pub const MAX_ARGS_CHARS: usize = 21_000;
/// "a single message contains at most 1024 trades" (websocket/public/trade).
pub const MAX_TRADES_PER_MESSAGE: usize = 1024;
/// Level 1: "if 3 seconds have elapsed without a change in the orderbook, a snapshot message
/// will be pushed again" (websocket/public/orderbook).
pub const LEVEL1_REPEAT_MS: i64 = 3_000;
/// The depths of `orderbook.{depth}.{symbol}` on spot, linear and inverse.
pub const DEPTHS: [usize; 4] = [1, 50, 200, 1000];

/// How often a session sends what came due (level 1 pushes every 10 ms).
const TICK: Duration = Duration::from_millis(10);
/// A book topic further behind than this many periods gets a snapshot instead of deltas.
const MAX_BOOK_CATCH_UP: i64 = 50;
/// Closed candles sent per poll at most; further behind, a kline topic skips to the present.
const MAX_KLINES_PER_POLL: usize = 1000;
/// Half-second windows of a liquidation topic looked at per poll at most (ten minutes); the
/// rest follow at the next polls.
const MAX_LIQUIDATION_WINDOWS_PER_POLL: usize = 1200;
/// A liquidation topic further behind than this (a clock jump) skips to the last hour.
const MAX_LIQUIDATION_CATCH_UP_MS: i64 = 3_600_000;

/// Bybit's documented push interval of an order-book depth (websocket/public/orderbook).
pub fn book_push_ms(category: BybitCategory, depth: usize) -> Option<i64> {
    Some(match (category, depth) {
        (_, 1) => 10,
        (_, 50) => 20,
        (BybitCategory::Spot, 200) => 200,
        (_, 200) => 100,
        (_, 1000) => 200,
        _ => return None,
    })
}

/// The period of a book topic's messages: its push interval, but at least a book slot, since
/// the simulated book changes once per slot.
fn book_period_ms(category: BybitCategory, depth: usize) -> i64 {
    book_push_ms(category, depth)
        .unwrap_or(data::BOOK_SLOT_MS)
        .max(data::BOOK_SLOT_MS)
}

/// Behaviours and injected faults of the Bybit WebSocket. The default is Bybit's behaviour;
/// change it with [`SimServer::set_bybit_ws_faults`] or `POST /sim/bybit_ws` (open
/// connections follow at their next tick).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BybitWsFaults {
    /// A connection is cut (TCP close, no close frame) after this long without a message from
    /// the client (a `ping` or any request, or a WebSocket ping frame) and, while
    /// [`data_keeps_alive`](Self::data_keeps_alive), without a topic message from the server
    /// (Bybit: 10 minutes, ws/connect).
    pub idle_timeout: Duration,
    /// Topic messages the server sends keep a connection alive, as Bybit documents ("no
    /// "ping-pong" and no stream data"); `false` closes a connection that does not ping even
    /// while data flow.
    pub data_keeps_alive: bool,
    /// Every message (answers and topic messages) reaches the client this much later, in order.
    pub latency: Duration,
    /// How often kline topics push the open candle (Bybit: "1-60s").
    pub kline_update: Duration,
}

impl Default for BybitWsFaults {
    fn default() -> Self {
        BybitWsFaults {
            idle_timeout: Duration::from_secs(600),
            data_keeps_alive: true,
            latency: Duration::ZERO,
            kline_update: Duration::from_secs(1),
        }
    }
}

/// Counters of the Bybit WebSocket since the server started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BybitWsStats {
    /// Upgrades accepted (HTTP 101).
    pub connections_opened: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Text messages sent: answers and topic messages.
    pub messages_sent: u64,
    /// Heartbeats received: `{"op":"ping"}` requests and WebSocket ping frames.
    pub pings_received: u64,
    /// Subscribe requests answered `success:false`.
    pub subscriptions_refused: u64,
    /// Connections dropped by [`SimServer::bybit_ws_disconnect_all`].
    pub forced_disconnects: u64,
    /// Connections cut for idleness ([`BybitWsFaults::idle_timeout`]).
    pub idle_closes: u64,
    /// Trade messages swallowed by [`SimServer::bybit_ws_drop_trades`].
    pub trade_messages_dropped: u64,
    /// Book restarts ([`SimServer::bybit_ws_reset_books`]).
    pub book_resets: u64,
    /// `allLiquidation` messages sent (also counted in [`messages_sent`](Self::messages_sent)).
    pub liquidation_messages_sent: u64,
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    open: AtomicU64,
    sent: AtomicU64,
    pings: AtomicU64,
    refused: AtomicU64,
    forced: AtomicU64,
    idle: AtomicU64,
    dropped: AtomicU64,
    resets: AtomicU64,
    liquidations: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// An order to every open session.
#[derive(Clone, Copy, Debug)]
enum Ctl {
    /// Drop the connection without a close frame.
    Disconnect,
}

/// The last book restart: every book topic's `u` counts from its period.
#[derive(Clone, Copy, Debug)]
struct BookEpoch {
    generation: u64,
    at_ms: i64,
}

/// "Drop the next `left` trade messages of `topic`", on the first connection that sends one.
struct DropOrder {
    topic: String,
    left: u32,
    conn: Option<u64>,
}

/// What sessions share.
struct Inner {
    faults: Mutex<BybitWsFaults>,
    data: Mutex<Arc<Data>>,
    clock: SimClock,
    counters: Counters,
    drops: Mutex<Vec<DropOrder>>,
    books: Mutex<BookEpoch>,
    next_conn: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn faults(&self) -> BybitWsFaults {
        lock(&self.faults).clone()
    }

    fn data(&self) -> Arc<Data> {
        lock(&self.data).clone()
    }

    fn epoch(&self) -> BookEpoch {
        *lock(&self.books)
    }

    /// Whether connection `conn` must swallow its next trade message of `topic`.
    fn swallow(&self, conn: u64, topic: &str) -> bool {
        let mut drops = lock(&self.drops);
        let Some(order) = drops
            .iter_mut()
            .find(|o| o.topic == topic && o.left > 0 && o.conn.is_none_or(|c| c == conn))
        else {
            return false;
        };
        order.conn = Some(conn);
        order.left -= 1;
        drops.retain(|o| o.left > 0);
        bump(&self.counters.dropped);
        true
    }
}

/// The Bybit WebSocket venue of a server. Dropping it (when the server stops) drops every
/// open connection.
pub(crate) struct BybitWs {
    inner: Arc<Inner>,
    ctl: broadcast::Sender<Ctl>,
}

impl BybitWs {
    pub fn new(clock: SimClock) -> BybitWs {
        BybitWs {
            inner: Arc::new(Inner {
                faults: Mutex::new(BybitWsFaults::default()),
                data: Mutex::new(Arc::new(Data::default())),
                clock,
                counters: Counters::default(),
                drops: Mutex::new(Vec::new()),
                books: Mutex::new(BookEpoch {
                    generation: 0,
                    at_ms: 0,
                }),
                next_conn: AtomicU64::new(1),
            }),
            ctl: broadcast::Sender::new(16),
        }
    }

    /// The data sessions serve from now on (the server's, with the REST faults' missing ids).
    pub fn set_data(&self, data: Arc<Data>) {
        *lock(&self.inner.data) = data;
    }

    pub fn faults(&self) -> BybitWsFaults {
        self.inner.faults()
    }

    pub fn set_faults(&self, f: BybitWsFaults) {
        *lock(&self.inner.faults) = f;
    }

    pub fn stats(&self) -> BybitWsStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BybitWsStats {
            connections_opened: get(&c.opened),
            connections_open: get(&c.open),
            messages_sent: get(&c.sent),
            pings_received: get(&c.pings),
            subscriptions_refused: get(&c.refused),
            forced_disconnects: get(&c.forced),
            idle_closes: get(&c.idle),
            trade_messages_dropped: get(&c.dropped),
            book_resets: get(&c.resets),
            liquidation_messages_sent: get(&c.liquidations),
        }
    }

    pub fn disconnect_all(&self) -> usize {
        self.ctl.send(Ctl::Disconnect).unwrap_or(0)
    }

    pub fn reset_books(&self) -> usize {
        {
            let mut e = lock(&self.inner.books);
            e.generation += 1;
            e.at_ms = self.inner.clock.now_ms();
        }
        bump(&self.inner.counters.resets);
        self.ctl.receiver_count()
    }

    pub fn drop_trades(&self, topic: &str, messages: u32) {
        if messages == 0 {
            return;
        }
        lock(&self.inner.drops).push(DropOrder {
            topic: topic.to_string(),
            left: messages,
            conn: None,
        });
    }

    /// Answers a request under `/bybit-ws` (`rest` is the path after it): the 101 response,
    /// with the session spawned to run once hyper hands the connection over, or a refusal.
    pub fn upgrade(&self, req: &mut Request<Incoming>, rest: &str) -> Response<Full<Bytes>> {
        let category = match rest {
            "/v5/public/spot" => BybitCategory::Spot,
            "/v5/public/linear" => BybitCategory::Linear,
            "/v5/public/inverse" => BybitCategory::Inverse,
            _ => return plain(404, "Not Found"),
        };
        let has = |name: hyper::header::HeaderName, token: &str| {
            req.headers().get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
        };
        let handshake = req.method() == Method::GET
            && has(UPGRADE, "websocket")
            && has(CONNECTION, "upgrade")
            && req
                .headers()
                .get(SEC_WEBSOCKET_VERSION)
                .is_some_and(|v| v.as_bytes() == b"13");
        let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).filter(|_| handshake) else {
            return plain(400, "Bad Request");
        };
        let accept = derive_accept_key(key.as_bytes());
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            h.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        bump(&self.inner.counters.opened);
        let on_upgrade = hyper::upgrade::on(req);
        let inner = self.inner.clone();
        // Subscribed now, so an order given before the session runs still reaches it.
        let ctl = self.ctl.subscribe();
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "bybit websocket upgrade failed");
                    return;
                }
            };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            Session::new(inner, category).run(ws, ctl).await;
        });
        resp
    }

    /// `/sim/bybit_ws…` (`name` is the part after `/sim/`): status and JSON body.
    pub async fn sim(&self, name: &str, req: Request<Incoming>) -> (u16, String) {
        let count = |n: usize| (200, format!("{{\"connections\":{n}}}"));
        match (name, req.method().clone()) {
            ("bybit_ws", Method::GET) => (200, faults_json(&self.faults())),
            ("bybit_ws", Method::POST | Method::PUT) => {
                let body = match Limited::new(req.into_body(), 1 << 16).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return (400, error_json(&format!("could not read body: {e}"))),
                };
                match serde_json::from_slice::<FaultsJson>(&body) {
                    Ok(j) => {
                        let f = j.apply(self.faults());
                        self.set_faults(f.clone());
                        (200, faults_json(&f))
                    }
                    Err(e) => (400, error_json(&format!("invalid faults JSON: {e}"))),
                }
            }
            ("bybit_ws/disconnect", Method::POST) => count(self.disconnect_all()),
            ("bybit_ws/reset_books", Method::POST) => count(self.reset_books()),
            ("bybit_ws/drop_trades", Method::POST) => {
                let q = crate::query::Query::parse(req.uri().query());
                let messages = q.get("messages").map(str::parse::<u32>);
                match (q.get("topic"), messages) {
                    (Some(topic), Some(Ok(n))) if !topic.is_empty() => {
                        self.drop_trades(topic, n);
                        let mut s = String::from("{\"topic\":");
                        push_json_str(&mut s, topic);
                        s.push_str(",\"messages\":");
                        push_u64(&mut s, u64::from(n));
                        s.push('}');
                        (200, s)
                    }
                    _ => (
                        400,
                        error_json("give topic (e.g. publicTrade.BTCUSDT) and messages (a count)"),
                    ),
                }
            }
            _ => (404, error_json("Path not found")),
        }
    }
}

fn plain(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn error_json(msg: &str) -> String {
    let mut s = String::from("{\"code\":-1102,\"msg\":");
    push_json_str(&mut s, msg);
    s.push('}');
    s
}

/// The JSON form of [`BybitWsFaults`] of `/sim/bybit_ws`; fields left out of a POST keep their
/// value.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FaultsJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_keeps_alive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kline_update_ms: Option<u64>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn faults_json(f: &BybitWsFaults) -> String {
    let j = FaultsJson {
        idle_timeout_ms: Some(millis(f.idle_timeout)),
        data_keeps_alive: Some(f.data_keeps_alive),
        latency_ms: Some(millis(f.latency)),
        kline_update_ms: Some(millis(f.kline_update)),
    };
    serde_json::to_string(&j).unwrap_or_else(|_| "{}".into())
}

impl FaultsJson {
    fn apply(self, mut f: BybitWsFaults) -> BybitWsFaults {
        if let Some(v) = self.idle_timeout_ms {
            f.idle_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.data_keeps_alive {
            f.data_keeps_alive = v;
        }
        if let Some(v) = self.latency_ms {
            f.latency = Duration::from_millis(v);
        }
        if let Some(v) = self.kline_update_ms {
            f.kline_update = Duration::from_millis(v);
        }
        f
    }
}

impl SimServer {
    /// `ws://IP:PORT/bybit-ws`: Bybit's public WebSocket base, Bybit's `wss://stream.bybit.com`
    /// (append `/v5/public/spot`, `/v5/public/linear` or `/v5/public/inverse`); see
    /// [`crate::bybit_ws`].
    pub fn bybit_ws_url(&self) -> String {
        format!("ws://{}/bybit-ws", self.local_addr())
    }

    /// The Bybit WebSocket's behaviours and faults in force.
    pub fn bybit_ws_faults(&self) -> BybitWsFaults {
        self.bybit_ws().faults()
    }

    /// Replaces the Bybit WebSocket's behaviours and faults; open connections follow at their
    /// next tick.
    pub fn set_bybit_ws_faults(&self, f: BybitWsFaults) {
        self.bybit_ws().set_faults(f);
    }

    /// Drops every open Bybit WebSocket connection abruptly (TCP close without a close frame);
    /// returns how many there were.
    pub fn bybit_ws_disconnect_all(&self) -> usize {
        self.bybit_ws().disconnect_all()
    }

    /// Restarts Bybit's book service: the next message of every book topic of every connection
    /// is a snapshot with `u` = 1, and `u` counts on from there (also for later subscribers).
    /// Returns how many connections there were.
    pub fn bybit_ws_reset_books(&self) -> usize {
        self.bybit_ws().reset_books()
    }

    /// Swallows the next `messages` trade messages of `topic` (`publicTrade.BTCUSDT`) on one
    /// connection only: the first that has one to send (a gap its client must notice).
    pub fn bybit_ws_drop_trades(&self, topic: &str, messages: u32) {
        self.bybit_ws().drop_trades(topic, messages);
    }

    /// The Bybit WebSocket's counters (also in [`SimServer::stats`]).
    pub fn bybit_ws_stats(&self) -> BybitWsStats {
        self.bybit_ws().stats()
    }
}

// ---------------------------------------------------------------------------------------------
// Topics

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Trade,
    Kline(Interval),
    Book(usize),
    Liquidation,
}

/// A valid topic of a category.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Topic {
    name: String,
    symbol: String,
    kind: Kind,
}

/// Parses `publicTrade.{symbol}`, `kline.{interval}.{symbol}`, `orderbook.{depth}.{symbol}`
/// or (not on spot) `allLiquidation.{symbol}` of `category`; `None` for what Bybit answers
/// "handler not found".
fn parse_topic(category: BybitCategory, arg: &str) -> Option<Topic> {
    let (kind, symbol) = if let Some(symbol) = arg.strip_prefix("publicTrade.") {
        (Kind::Trade, symbol)
    } else if let Some(symbol) = arg.strip_prefix("allLiquidation.") {
        if category == BybitCategory::Spot {
            return None;
        }
        (Kind::Liquidation, symbol)
    } else if let Some(rest) = arg.strip_prefix("kline.") {
        let (iv, symbol) = rest.split_once('.')?;
        (Kind::Kline(interval_of(iv)?), symbol)
    } else if let Some(rest) = arg.strip_prefix("orderbook.") {
        let (depth, symbol) = rest.split_once('.')?;
        let depth: usize = depth.parse().ok()?;
        if !DEPTHS.contains(&depth) || depth.to_string() != rest.split('.').next()? {
            return None;
        }
        (Kind::Book(depth), symbol)
    } else {
        return None;
    };
    category.parse_symbol(symbol)?;
    Some(Topic {
        name: arg.to_string(),
        symbol: symbol.to_string(),
        kind,
    })
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// A connection id in the shape Bybit's public streams use (`cejreassvfrsfvb9v1a0-2m`).
fn conn_id(n: u64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let h = data::mix(n ^ 0x4259_4254_5753_0001);
    let g = data::mix(h);
    let mut s = String::with_capacity(26);
    for i in 0..20 {
        let bits = if i < 12 {
            h >> (5 * i)
        } else {
            g >> (5 * (i - 12))
        };
        s.push(ALPHABET[(bits & 31) as usize] as char);
    }
    s.push('-');
    for i in 0..4 {
        s.push(ALPHABET[((g >> (40 + 5 * i)) & 31) as usize] as char);
    }
    s
}

/// Counts a connection as open while it lives.
struct OpenGuard(Arc<Inner>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a session ended.
enum End {
    /// The client closed the connection or it broke.
    Gone,
    /// [`SimServer::bybit_ws_disconnect_all`] or the server stopping.
    Forced,
    /// Idle for [`BybitWsFaults::idle_timeout`].
    Idle,
}

struct Session {
    inner: Arc<Inner>,
    category: BybitCategory,
    conn_no: u64,
    conn_id: String,
    subs: Vec<Sub>,
    /// Characters of the topics subscribed.
    args_chars: usize,
    /// The last message from the client, or topic message to it that keeps it alive.
    last_activity: Instant,
    /// Messages not yet handed to the socket, each with the time it is due and whether it is a
    /// liquidation message.
    out: VecDeque<(Instant, String, bool)>,
}

impl Session {
    fn new(inner: Arc<Inner>, category: BybitCategory) -> Session {
        let conn_no = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        Session {
            inner,
            category,
            conn_no,
            conn_id: conn_id(conn_no),
            subs: Vec::new(),
            args_chars: 0,
            last_activity: Instant::now(),
            out: VecDeque::new(),
        }
    }

    async fn run(mut self, mut ws: Ws, mut ctl: broadcast::Receiver<Ctl>) {
        bump(&self.inner.counters.open);
        let _open = OpenGuard(self.inner.clone());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    None | Some(Err(_)) => break End::Gone,
                    Some(Ok(msg)) => {
                        if self.on_message(&mut ws, msg).await.is_err() {
                            break End::Gone;
                        }
                    }
                },
                _ = tick.tick() => {
                    if let Some(end) = self.on_tick(&mut ws).await {
                        break end;
                    }
                }
                c = ctl.recv() => match c {
                    Ok(Ctl::Disconnect) | Err(broadcast::error::RecvError::Closed) => {
                        break End::Forced;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                },
            }
        };
        match end {
            End::Gone => {}
            End::Forced => bump(&self.inner.counters.forced),
            End::Idle => bump(&self.inner.counters.idle),
        }
        // Forced and idle ends drop the TCP connection without a close frame.
        drop(ws);
    }

    async fn on_message(&mut self, ws: &mut Ws, msg: Message) -> Result<(), ()> {
        let text = match msg {
            Message::Text(t) => t.as_str().to_string(),
            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            Message::Ping(_) => {
                self.last_activity = Instant::now();
                bump(&self.inner.counters.pings);
                // tungstenite queued the pong; send it now.
                return ws.flush().await.map_err(drop);
            }
            Message::Pong(_) | Message::Close(_) | Message::Frame(_) => return Ok(()),
        };
        self.last_activity = Instant::now();
        let reply = self.answer(&text);
        self.queue(reply);
        self.release(ws).await
    }

    fn queue(&mut self, text: String) {
        let latency = self.inner.faults().latency;
        self.out.push_back((Instant::now() + latency, text, false));
    }

    /// Hands what is due to the socket; `Err` when the client is gone.
    async fn release(&mut self, ws: &mut Ws) -> Result<(), ()> {
        let now = Instant::now();
        let (mut n, mut liquidations) = (0, 0);
        while self.out.front().is_some_and(|(due, _, _)| *due <= now) {
            let (_, text, liquidation) = self.out.pop_front().expect("front");
            ws.feed(Message::text(text)).await.map_err(drop)?;
            n += 1;
            liquidations += u64::from(liquidation);
        }
        let c = &self.inner.counters;
        if liquidations > 0 {
            c.liquidations.fetch_add(liquidations, Ordering::Relaxed);
        }
        if n > 0 {
            c.sent.fetch_add(n, Ordering::Relaxed);
            ws.flush().await.map_err(drop)?;
        }
        Ok(())
    }

    async fn on_tick(&mut self, ws: &mut Ws) -> Option<End> {
        let f = self.inner.faults();
        if self.last_activity.elapsed() >= f.idle_timeout {
            return Some(End::Idle);
        }
        if !self.subs.is_empty() {
            let ctx = Ctx {
                data: self.inner.data(),
                now: self.inner.clock.now_ms(),
                category: self.category,
                kline_update_ms: i64::try_from(f.kline_update.as_millis()).unwrap_or(i64::MAX),
                epoch: self.inner.epoch(),
            };
            let mut msgs = Vec::new();
            let mut pushed = false;
            for sub in &mut self.subs {
                sub.poll(&ctx, &mut msgs);
                for text in msgs.drain(..) {
                    if sub.kind == Kind::Trade && self.inner.swallow(self.conn_no, &sub.name) {
                        continue;
                    }
                    let liquidation = sub.kind == Kind::Liquidation;
                    self.out
                        .push_back((Instant::now() + f.latency, text, liquidation));
                    pushed = true;
                }
            }
            if pushed && f.data_keeps_alive {
                self.last_activity = Instant::now();
            }
        }
        if self.release(ws).await.is_err() {
            return Some(End::Gone);
        }
        None
    }

    /// `{"success":…,"ret_msg":…,"conn_id":…,"req_id":…,"op":…}`: spot leaves out a `req_id`
    /// the request did not give, linear and inverse send `""` (ws/connect).
    fn reply(&self, success: bool, ret_msg: &str, req_id: Option<&str>, op: &str) -> String {
        let mut s = String::with_capacity(128 + ret_msg.len());
        s.push_str(if success {
            "{\"success\":true"
        } else {
            "{\"success\":false"
        });
        s.push_str(",\"ret_msg\":");
        push_json_str(&mut s, ret_msg);
        s.push_str(",\"conn_id\":");
        push_json_str(&mut s, &self.conn_id);
        match req_id {
            Some(r) => {
                s.push_str(",\"req_id\":");
                push_json_str(&mut s, r);
            }
            None if self.category != BybitCategory::Spot => s.push_str(",\"req_id\":\"\""),
            None => {}
        }
        s.push_str(",\"op\":");
        push_json_str(&mut s, op);
        s.push('}');
        s
    }

    /// Answers one request.
    fn answer(&mut self, text: &str) -> String {
        let v: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return self.reply(false, "error:invalid op", None, ""),
            Err(e) => {
                return self.reply(
                    false,
                    &format!("Failed to decode incoming data:{e}"),
                    None,
                    "",
                )
            }
        };
        let req_id = match v.get("req_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let req_id = req_id.as_deref();
        let op = v.get("op").and_then(Value::as_str).unwrap_or("");
        match op {
            "ping" => {
                bump(&self.inner.counters.pings);
                self.reply(true, "pong", req_id, op)
            }
            "subscribe" | "unsubscribe" => {
                let args: Option<Vec<&str>> = v
                    .get("args")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().map(Value::as_str).collect());
                let answer = match args {
                    Some(args) if !args.is_empty() => {
                        if op == "subscribe" {
                            self.subscribe(&args)
                        } else {
                            self.unsubscribe(&args)
                        }
                    }
                    _ => Err("error:args is empty".to_string()),
                };
                match answer {
                    Ok(()) => {
                        let msg = if self.category == BybitCategory::Spot {
                            op
                        } else {
                            ""
                        };
                        self.reply(true, msg, req_id, op)
                    }
                    Err(msg) => {
                        if op == "subscribe" {
                            bump(&self.inner.counters.refused);
                        }
                        self.reply(false, &msg, req_id, op)
                    }
                }
            }
            _ => self.reply(false, "error:invalid op", req_id, op),
        }
    }

    /// Subscribes every arg, or none and says why.
    fn subscribe(&mut self, args: &[&str]) -> Result<(), String> {
        if self.category == BybitCategory::Spot && args.len() > SPOT_MAX_ARGS_PER_REQUEST {
            return Err(format!("args size >{SPOT_MAX_ARGS_PER_REQUEST}"));
        }
        let mut topics: Vec<Topic> = Vec::with_capacity(args.len());
        for arg in args {
            let Some(t) = parse_topic(self.category, arg) else {
                return Err(format!("error:handler not found,topic:{arg}"));
            };
            if self.subs.iter().any(|s| s.name == t.name) || topics.iter().any(|x| x.name == t.name)
            {
                return Err(format!("error:already subscribed,topic:{arg}"));
            }
            topics.push(t);
        }
        let chars: usize = topics.iter().map(|t| t.name.len()).sum();
        if self.args_chars + chars > MAX_ARGS_CHARS {
            return Err(format!("error:args length exceeds {MAX_ARGS_CHARS}"));
        }
        self.args_chars += chars;
        let now = self.inner.clock.now_ms();
        for t in topics {
            if let Some(sub) = Sub::new(self.category, t, now) {
                self.subs.push(sub);
            }
        }
        Ok(())
    }

    fn unsubscribe(&mut self, args: &[&str]) -> Result<(), String> {
        if let Some(bad) = args
            .iter()
            .find(|a| parse_topic(self.category, a).is_none())
        {
            return Err(format!("error:handler not found,topic:{bad}"));
        }
        self.subs.retain(|s| !args.contains(&s.name.as_str()));
        self.args_chars = self.subs.iter().map(|s| s.name.len()).sum();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

/// What a poll needs besides the subscription's own state.
struct Ctx {
    data: Arc<Data>,
    /// The server clock's now: the messages' `ts` and the horizon of what is due.
    now: i64,
    category: BybitCategory,
    kline_update_ms: i64,
    epoch: BookEpoch,
}

/// One subscription of a connection: its topic and cursor.
struct Sub {
    name: String,
    symbol: String,
    kind: Kind,
    market: Market,
    state: State,
}

enum State {
    Trade {
        /// Trades from this millisecond on are still to be sent.
        next_ms: i64,
    },
    Kline {
        interval: Interval,
        /// The interval as the topic spells it (`1`, `D`).
        label: String,
        open: i64,
        last_update: i64,
    },
    Book {
        depth: usize,
        period_ms: i64,
        /// The restart generation the client's book belongs to (`None`: no snapshot sent yet).
        generation: Option<u64>,
        /// The period of the book the client has.
        period: i64,
        bids: Vec<(i64, i64)>,
        asks: Vec<(i64, i64)>,
    },
    Top {
        generation: Option<u64>,
        /// The last slot looked at.
        slot: i64,
        top: Book,
        u: i64,
        seq: u64,
        cts: i64,
        sent_ms: i64,
    },
    Liquidation {
        /// The start of the next half-second window to look at.
        window: i64,
    },
}

type Book = (Vec<(i64, i64)>, Vec<(i64, i64)>);

/// The book of slot `s` with `depth` levels a side: bids best (highest) first, asks best
/// (lowest) first; the levels of [`crate::data::order_book_in`]'s generator, deeper.
fn book(m: &Market, s: i64, depth: usize) -> Book {
    let mid = data::book_mid(m, s);
    let tick = m.tick_units();
    let mut bids = Vec::with_capacity(depth);
    let mut asks = Vec::with_capacity(depth);
    for i in 0..depth as i64 {
        let price = mid - (i + 1) * tick;
        if price <= 0 {
            break;
        }
        bids.push((price, data::level_qty(m, price, true, s)));
    }
    for i in 0..depth as i64 {
        let price = mid + i * tick;
        asks.push((price, data::level_qty(m, price, false, s)));
    }
    (bids, asks)
}

/// `seq` and `cts` of a book at `t`: the aggregate id and time of the last trade at or before.
fn cross_seq(data: &Data, m: &Market, t: i64) -> (u64, i64) {
    match data.id_floor(m, t).and_then(|id| data.prev_existing(id)) {
        Some(id) => (id, data.time_of(m, id)),
        None => (0, t),
    }
}

/// `{"topic":…,"type":…,"ts":…,"data":` (left open).
fn head(topic: &str, kind: &str, now: i64, capacity: usize) -> String {
    let mut s = String::with_capacity(capacity);
    s.push_str("{\"topic\":");
    push_json_str(&mut s, topic);
    s.push_str(",\"type\":\"");
    s.push_str(kind);
    s.push_str("\",\"ts\":");
    push_i64(&mut s, now);
    s.push_str(",\"data\":");
    s
}

#[allow(clippy::too_many_arguments)]
fn book_message(
    topic: &str,
    symbol: &str,
    snapshot: bool,
    now: i64,
    bids: &[(i64, i64)],
    asks: &[(i64, i64)],
    u: i64,
    (seq, cts): (u64, i64),
) -> String {
    let kind = if snapshot { "snapshot" } else { "delta" };
    let mut s = head(topic, kind, now, 96 + 40 * (bids.len() + asks.len()));
    s.push_str("{\"s\":");
    push_json_str(&mut s, symbol);
    s.push_str(",\"b\":");
    push_levels(&mut s, bids);
    s.push_str(",\"a\":");
    push_levels(&mut s, asks);
    s.push_str(",\"u\":");
    push_i64(&mut s, u);
    s.push_str(",\"seq\":");
    push_u64(&mut s, seq);
    s.push_str("},\"cts\":");
    push_i64(&mut s, cts);
    s.push('}');
    s
}

impl Sub {
    /// A subscription made at `now`: trades after `now`, the current candle, the current book.
    fn new(category: BybitCategory, t: Topic, now: i64) -> Option<Sub> {
        let market = category.market(&t.symbol)?;
        let state = match t.kind {
            Kind::Trade => State::Trade {
                next_ms: now.saturating_add(1),
            },
            Kind::Kline(interval) => State::Kline {
                interval,
                label: t.name.split('.').nth(1).unwrap_or("").to_string(),
                open: interval.align_down(now),
                last_update: i64::MIN,
            },
            Kind::Book(1) => State::Top {
                generation: None,
                slot: i64::MIN,
                top: (Vec::new(), Vec::new()),
                u: 0,
                seq: 0,
                cts: 0,
                sent_ms: i64::MIN,
            },
            Kind::Liquidation => State::Liquidation {
                window: now.div_euclid(BYBIT_WINDOW_MS) * BYBIT_WINDOW_MS,
            },
            Kind::Book(depth) => State::Book {
                depth,
                period_ms: book_period_ms(category, depth),
                generation: None,
                period: 0,
                bids: Vec::new(),
                asks: Vec::new(),
            },
        };
        Some(Sub {
            name: t.name,
            symbol: t.symbol,
            kind: t.kind,
            market,
            state,
        })
    }

    /// Appends the messages due at `ctx.now`.
    fn poll(&mut self, ctx: &Ctx, out: &mut Vec<String>) {
        let m = &self.market;
        let (topic, sym) = (self.name.as_str(), self.symbol.as_str());
        let now = ctx.now;
        match &mut self.state {
            State::Trade { next_ms } => {
                if now < *next_ms {
                    return;
                }
                // About 4,000 trades at most per poll (an aggregate trade holds 2 on average);
                // a client far behind catches up over several polls.
                let span = ctx.data.spacing.saturating_mul(2_000).max(1);
                let to = now.min(next_ms.saturating_add(span - 1));
                let rows =
                    crate::bybit_archive::sequenced(&ctx.data, ctx.category, sym, *next_ms, to)
                        .unwrap_or_default();
                *next_ms = to + 1;
                let derivatives = ctx.category != BybitCategory::Spot;
                for chunk in rows.chunks(MAX_TRADES_PER_MESSAGE) {
                    let mut s = head(topic, "snapshot", now, 64 + 190 * chunk.len());
                    s.push('[');
                    for (i, (agg, t)) in chunk.iter().enumerate() {
                        if i > 0 {
                            s.push(',');
                        }
                        s.push_str("{\"T\":");
                        push_i64(&mut s, t.time_ms);
                        s.push_str(",\"s\":");
                        push_json_str(&mut s, sym);
                        s.push_str(if t.sell {
                            ",\"S\":\"Sell\",\"v\":\""
                        } else {
                            ",\"S\":\"Buy\",\"v\":\""
                        });
                        s.push_str(&t.size);
                        s.push_str("\",\"p\":\"");
                        s.push_str(&t.price);
                        s.push('"');
                        if derivatives {
                            s.push_str(if t.sell {
                                ",\"L\":\"MinusTick\""
                            } else {
                                ",\"L\":\"PlusTick\""
                            });
                        }
                        s.push_str(",\"i\":");
                        push_json_str(&mut s, &t.id);
                        s.push_str(",\"BT\":false,\"RPI\":false,\"seq\":");
                        push_u64(&mut s, *agg);
                        s.push('}');
                    }
                    s.push_str("]}");
                    out.push(s);
                }
            }
            State::Kline {
                interval,
                label,
                open,
                last_update,
            } => {
                let iv = *interval;
                let mut closed = 0;
                while now > iv.close_time(*open) {
                    if closed == MAX_KLINES_PER_POLL {
                        // Far behind (a clock jump): skip to the present.
                        *open = iv.align_down(now);
                        break;
                    }
                    out.push(kline_message(ctx, m, topic, label, iv, *open, true));
                    *open = iv.next_open(*open);
                    closed += 1;
                }
                if now.saturating_sub(*last_update) >= ctx.kline_update_ms {
                    out.push(kline_message(ctx, m, topic, label, iv, *open, false));
                    *last_update = now;
                }
            }
            State::Book {
                depth,
                period_ms,
                generation,
                period,
                bids,
                asks,
            } => {
                let pm = *period_ms;
                let epoch_period = ctx.epoch.at_ms.div_euclid(pm);
                let u = |p: i64| p - epoch_period + 1;
                let cur = now.div_euclid(pm);
                let slot_of = |p: i64| data::book_slot(p * pm);
                let snapshot_at = match *generation {
                    // The first message: the current book.
                    None => Some(cur),
                    // A restart: the book of its period, `u` = 1, then deltas to the present
                    // (unless that is far behind).
                    Some(g) if g != ctx.epoch.generation => {
                        Some(if cur - epoch_period > MAX_BOOK_CATCH_UP {
                            cur
                        } else {
                            epoch_period
                        })
                    }
                    // A client far behind (a clock jump): a fresh book.
                    Some(_) if cur - *period > MAX_BOOK_CATCH_UP => Some(cur),
                    Some(_) => None,
                };
                if let Some(p) = snapshot_at {
                    let (b, a) = book(m, slot_of(p), *depth);
                    let cs = cross_seq(&ctx.data, m, p * pm);
                    out.push(book_message(topic, sym, true, now, &b, &a, u(p), cs));
                    (*bids, *asks) = (b, a);
                    *period = p;
                    *generation = Some(ctx.epoch.generation);
                }
                while *period < cur {
                    let p = *period + 1;
                    let (b, a) = book(m, slot_of(p), *depth);
                    let db = data::side_diff(bids, &b, true);
                    let da = data::side_diff(asks, &a, false);
                    let cs = cross_seq(&ctx.data, m, p * pm);
                    out.push(book_message(topic, sym, false, now, &db, &da, u(p), cs));
                    (*bids, *asks) = (b, a);
                    *period = p;
                }
            }
            State::Top {
                generation,
                slot,
                top,
                u,
                seq,
                cts,
                sent_ms,
            } => {
                let epoch_slot = data::book_slot(ctx.epoch.at_ms);
                let cur = data::book_slot(now);
                // The top of slot `s` and its `u`: the slot where it appeared (looked for back
                // to `floor`), so every connection sees the same `u` for the same top.
                let take = |s: i64, floor: i64| {
                    let new = book(m, s, 1);
                    let mut first = s;
                    while first > floor && book(m, first - 1, 1) == new {
                        first -= 1;
                    }
                    let cs = cross_seq(&ctx.data, m, first * data::BOOK_SLOT_MS);
                    (new, first - epoch_slot + 1, cs)
                };
                let repeat_slots = LEVEL1_REPEAT_MS / data::BOOK_SLOT_MS;
                let taken = match *generation {
                    Some(g) if g == ctx.epoch.generation => {
                        let found = (cur > *slot)
                            .then(|| take(cur, *slot + 1))
                            .filter(|(new, _, _)| new != top);
                        *slot = (*slot).max(cur);
                        found
                    }
                    // A restart: the top of its slot with `u` = 1 (unless that is far
                    // behind); a later change follows at the next poll.
                    Some(_) if (0..=repeat_slots).contains(&(cur - epoch_slot)) => {
                        *slot = epoch_slot;
                        Some(take(epoch_slot, epoch_slot))
                    }
                    // The first message, or a restart long ago.
                    _ => {
                        *slot = cur;
                        Some(take(cur, (cur - repeat_slots).max(epoch_slot)))
                    }
                };
                *generation = Some(ctx.epoch.generation);
                if let Some((new, new_u, (new_seq, new_cts))) = taken {
                    (*top, *u, *seq, *cts) = (new, new_u, new_seq, new_cts);
                    *sent_ms = i64::MIN;
                }
                if *sent_ms == i64::MIN || now.saturating_sub(*sent_ms) >= LEVEL1_REPEAT_MS {
                    out.push(book_message(
                        topic,
                        sym,
                        true,
                        now,
                        &top.0,
                        &top.1,
                        *u,
                        (*seq, *cts),
                    ));
                    *sent_ms = now;
                }
            }
            State::Liquidation { window } => {
                let w = BYBIT_WINDOW_MS;
                if now.saturating_sub(*window) > MAX_LIQUIDATION_CATCH_UP_MS {
                    *window = now
                        .saturating_sub(MAX_LIQUIDATION_CATCH_UP_MS)
                        .div_euclid(w)
                        * w;
                }
                let mut looked = 0;
                while window.saturating_add(w) <= now && looked < MAX_LIQUIDATION_WINDOWS_PER_POLL {
                    let end = window.saturating_add(w);
                    let rows = venue_liquidations::bybit_window(m, *window);
                    if !rows.is_empty() {
                        out.push(liquidation_message(topic, sym, end, &rows));
                    }
                    *window = end;
                    looked += 1;
                }
            }
        }
    }
}

/// An `allLiquidation.{symbol}` message pushed at `ts` (the end of the window of `rows`).
fn liquidation_message(topic: &str, symbol: &str, ts: i64, rows: &[LiqUnits]) -> String {
    let mut s = head(topic, "snapshot", ts, 64 + 110 * rows.len());
    s.push('[');
    for (i, l) in rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"T\":");
        push_i64(&mut s, l.time);
        s.push_str(",\"s\":");
        push_json_str(&mut s, symbol);
        s.push_str(if l.long {
            ",\"S\":\"Buy\",\"v\":\""
        } else {
            ",\"S\":\"Sell\",\"v\":\""
        });
        push_fixed8(&mut s, l.qty);
        s.push_str("\",\"p\":\"");
        push_fixed8(&mut s, l.price);
        s.push_str("\"}");
    }
    s.push_str("]}");
    s
}

/// A `kline.{interval}.{symbol}` message for the candle opened at `open`.
fn kline_message(
    ctx: &Ctx,
    m: &Market,
    topic: &str,
    label: &str,
    iv: Interval,
    open: i64,
    confirm: bool,
) -> String {
    let k = data::kline_units(m, &ctx.data, iv, open, ctx.now).to_kline();
    let mut s = head(topic, "snapshot", ctx.now, 320);
    s.push_str("[{\"start\":");
    push_i64(&mut s, open);
    s.push_str(",\"end\":");
    push_i64(&mut s, iv.close_time(open));
    s.push_str(",\"interval\":");
    push_json_str(&mut s, label);
    for (key, v) in [
        (",\"open\":\"", &k.open),
        ("\",\"close\":\"", &k.close),
        ("\",\"high\":\"", &k.high),
        ("\",\"low\":\"", &k.low),
        ("\",\"volume\":\"", &k.volume),
        ("\",\"turnover\":\"", &k.quote_volume),
    ] {
        s.push_str(key);
        s.push_str(v);
    }
    s.push_str(if confirm {
        "\",\"confirm\":true,\"timestamp\":"
    } else {
        "\",\"confirm\":false,\"timestamp\":"
    });
    push_i64(&mut s, ctx.now);
    s.push_str("}]}");
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::{connect_async, MaybeTlsStream};

    use super::*;
    use crate::bybit_archive::{sequenced, trades, trades_between};
    use crate::SimConfig;

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// How long any one awaited thing may take.
    const WAIT: Duration = Duration::from_secs(10);

    async fn start(spacing_ms: i64) -> SimServer {
        let cfg = SimConfig {
            agg_trade_spacing_ms: spacing_ms,
            ..SimConfig::default()
        };
        SimServer::start(cfg, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }

    async fn connect(server: &SimServer, category: &str) -> Client {
        let url = format!("{}/v5/public/{category}", server.bybit_ws_url());
        connect_async(url).await.unwrap().0
    }

    async fn send(c: &mut Client, v: Value) {
        c.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next text message.
    async fn next(c: &mut Client) -> Value {
        loop {
            match tokio::time::timeout(WAIT, c.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
                Ok(Some(Ok(_))) => {}
                other => panic!("no message: {other:?}"),
            }
        }
    }

    /// The next answer (a message with `op`), skipping topic messages.
    async fn answer(c: &mut Client) -> Value {
        loop {
            let v = next(c).await;
            if v.get("op").is_some() {
                return v;
            }
        }
    }

    async fn request(c: &mut Client, v: Value) -> Value {
        send(c, v).await;
        answer(c).await
    }

    async fn subscribe(c: &mut Client, topics: &[&str]) {
        let a = request(c, json!({"op":"subscribe","args":topics})).await;
        assert_eq!(a["success"], true, "{a}");
    }

    /// Reads until the connection ends: `Some(whether a close frame came)`, or `None` when it
    /// is still open after `within`.
    async fn end_of(c: &mut Client, within: Duration) -> Option<bool> {
        let deadline = tokio::time::Instant::now() + within;
        let mut closed = false;
        loop {
            match tokio::time::timeout_at(deadline, c.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(closed),
                Ok(Some(Ok(Message::Close(_)))) => closed = true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond() {
            assert!(Instant::now() < deadline, "not within 10 s: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A raw HTTP/1.1 request on a fresh connection: status and body.
    async fn http(server: &SimServer, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: sim\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
        (status, body)
    }

    fn int(v: &Value) -> i64 {
        v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
    }

    /// Trade messages of one topic, read until their trades span `span_ms`.
    async fn trades_for(c: &mut Client, topic: &str, span_ms: i64) -> Vec<Value> {
        let mut got: Vec<Value> = Vec::new();
        while got.len() < 2 || int(&got[got.len() - 1]["T"]) - int(&got[0]["T"]) < span_ms {
            let m = next(c).await;
            if m.get("op").is_some() {
                continue;
            }
            assert_eq!(m["topic"], topic, "{m}");
            assert_eq!(m["type"], "snapshot");
            let rows = m["data"].as_array().unwrap();
            assert!(!rows.is_empty() && rows.len() <= MAX_TRADES_PER_MESSAGE);
            for r in rows {
                assert!(
                    int(&r["T"]) <= int(&m["ts"]),
                    "a trade sent before it happened"
                );
            }
            got.extend(rows.iter().cloned());
        }
        got
    }

    /// Checks `got` (the trades of `[first T, last T)`) against the archive's trades.
    fn same_as_archive(data: &Data, category: BybitCategory, got: &[Value]) {
        let (first, last) = (int(&got[0]["T"]), int(&got[got.len() - 1]["T"]));
        let got: Vec<&Value> = got.iter().filter(|t| int(&t["T"]) < last).collect();
        let expected = sequenced(data, category, "BTCUSDT", first, last - 1).unwrap();
        assert!(expected.len() > 20, "{} trades", expected.len());
        assert_eq!(got.len(), expected.len(), "no gap, no duplicate");
        for (g, (agg, e)) in got.iter().zip(&expected) {
            let side = if e.sell { "Sell" } else { "Buy" };
            assert_eq!(int(&g["T"]), e.time_ms);
            assert_eq!(g["i"], e.id.as_str());
            assert_eq!(g["p"], e.price.as_str());
            assert_eq!(g["v"], e.size.as_str());
            assert_eq!(g["S"], side);
            assert_eq!(g["s"], "BTCUSDT");
            assert_eq!(g["BT"], false);
            assert_eq!(g["seq"].as_u64(), Some(*agg));
            match category {
                BybitCategory::Spot => {
                    assert!(g.get("L").is_none());
                    assert!(e.id.parse::<u64>().is_ok(), "spot ids are numbers");
                }
                _ => {
                    let tick = if e.sell { "MinusTick" } else { "PlusTick" };
                    assert_eq!(g["L"], tick);
                    assert_eq!(e.id.len(), 36, "derivatives ids are UUIDs");
                }
            }
        }
    }

    #[test]
    fn trades_between_cuts_the_archive_days() {
        let data = Data::new(2_000, data::DEFAULT_LISTED_AT_MS, vec![]);
        let day = 1_704_153_600_000; // 2024-01-02
        for (category, symbol) in [
            (BybitCategory::Spot, "ETHBTC"),
            (BybitCategory::Linear, "ETHUSDT"),
            (BybitCategory::Inverse, "ETHUSD"),
        ] {
            let today = trades(&data, category, symbol, day).unwrap();
            let tomorrow = trades(&data, category, symbol, day + 86_400_000).unwrap();
            let within: Vec<_> = today
                .iter()
                .filter(|t| (day + 3_600_000..=day + 7_200_000).contains(&t.time_ms))
                .cloned()
                .collect();
            let cut = trades_between(&data, category, symbol, day + 3_600_000, day + 7_200_000);
            assert_eq!(cut.unwrap(), within);
            // Across midnight: the end of one day's file, then the start of the next.
            let (from, to) = (day + 86_400_000 - 60_000, day + 86_400_000 + 60_000);
            let across: Vec<_> = today
                .iter()
                .chain(&tomorrow)
                .filter(|t| (from..=to).contains(&t.time_ms))
                .cloned()
                .collect();
            assert!(across.len() > 50);
            assert_eq!(
                trades_between(&data, category, symbol, from, to).unwrap(),
                across
            );
        }
    }

    #[test]
    fn topics_parse_per_category() {
        let p = |c, a| parse_topic(c, a).map(|t| t.kind);
        assert_eq!(
            p(BybitCategory::Spot, "publicTrade.BTCUSDT"),
            Some(Kind::Trade)
        );
        assert_eq!(
            p(BybitCategory::Linear, "kline.D.BTCUSDT"),
            Some(Kind::Kline(Interval::D1))
        );
        assert_eq!(
            p(BybitCategory::Inverse, "orderbook.1000.BTCUSD"),
            Some(Kind::Book(1000))
        );
        for (c, bad) in [
            (BybitCategory::Linear, "orderbook.500.BTCUSDT"),
            (BybitCategory::Linear, "orderbook.050.BTCUSDT"),
            (BybitCategory::Linear, "orderbook.50.btcusdt"),
            (BybitCategory::Linear, "kline.2.BTCUSDT"),
            (BybitCategory::Linear, "kline.1m.BTCUSDT"),
            (BybitCategory::Linear, "publicTrade.BTCUSD"),
            (BybitCategory::Linear, "publicTrade.ETHBTC"),
            (BybitCategory::Inverse, "publicTrade.BTCUSDT"),
            (BybitCategory::Spot, "tickers.BTCUSDT"),
            (BybitCategory::Spot, "publicTrade."),
            (BybitCategory::Spot, "allLiquidation.BTCUSDT"),
            (BybitCategory::Linear, "allLiquidation.BTCUSD"),
            (BybitCategory::Linear, "allLiquidation."),
            (BybitCategory::Inverse, "allLiquidation.BTCUSDT"),
        ] {
            assert_eq!(parse_topic(c, bad), None, "{bad}");
        }
        assert_eq!(
            p(BybitCategory::Linear, "allLiquidation.BTCUSDT"),
            Some(Kind::Liquidation)
        );
        assert_eq!(
            p(BybitCategory::Inverse, "allLiquidation.ETHUSD"),
            Some(Kind::Liquidation)
        );
        assert_eq!(conn_id(7).len(), 25);
        assert_ne!(conn_id(7), conn_id(8));
    }

    #[tokio::test]
    async fn public_trades_are_the_archives_trades() {
        let server = start(20).await;
        let data = server.data();
        for (name, category) in [
            ("spot", BybitCategory::Spot),
            ("linear", BybitCategory::Linear),
            ("inverse", BybitCategory::Inverse),
        ] {
            let symbol = if category == BybitCategory::Inverse {
                "BTCUSD"
            } else {
                "BTCUSDT"
            };
            let topic = format!("publicTrade.{symbol}");
            let mut c = connect(&server, name).await;
            subscribe(&mut c, &[&topic]).await;
            let got = trades_for(&mut c, &topic, 1_500).await;
            if category == BybitCategory::Inverse {
                // Only the symbol differs: check it end to end on the first trades.
                let e = sequenced(
                    &data,
                    category,
                    symbol,
                    int(&got[0]["T"]),
                    int(&got[0]["T"]),
                )
                .unwrap();
                assert_eq!(got[0]["i"], e[0].1.id.as_str());
                continue;
            }
            same_as_archive(&data, category, &got);
        }
    }

    #[tokio::test]
    async fn kline_confirm_equals_rest() {
        let server = start(250).await;
        let boundary = (server.clock().now_ms() / 60_000 + 1) * 60_000;
        server.clock().set_now_ms(boundary - 1_500);
        let mut c = connect(&server, "linear").await;
        subscribe(&mut c, &["kline.1.BTCUSDT"]).await;
        let start = boundary - 60_000;
        let mut confirms = Vec::new();
        let mut updates = 0;
        loop {
            let m = next(&mut c).await;
            assert_eq!(m["topic"], "kline.1.BTCUSDT", "{m}");
            assert_eq!(m["type"], "snapshot");
            let k = &m["data"][0];
            assert_eq!(k["interval"], "1");
            assert_eq!(int(&k["end"]), int(&k["start"]) + 59_999);
            if int(&k["start"]) == boundary {
                assert_eq!(k["confirm"], false);
                break;
            }
            assert_eq!(int(&k["start"]), start, "{m}");
            if k["confirm"] == true {
                confirms.push(k.clone());
            } else {
                assert!(confirms.is_empty(), "an update after the confirm");
                updates += 1;
            }
        }
        assert!(updates >= 1);
        assert_eq!(confirms.len(), 1, "exactly one confirm per candle");
        let k = &confirms[0];
        let want = crate::bybit::kline(
            &server.data(),
            BybitCategory::Linear,
            "BTCUSDT",
            Interval::M1,
            start,
        )
        .unwrap();
        for (field, v) in [
            ("open", &want.open),
            ("high", &want.high),
            ("low", &want.low),
            ("close", &want.close),
            ("volume", &want.volume),
            ("turnover", &want.quote_volume),
        ] {
            assert_eq!(k[field], v.as_str(), "{field}");
        }
        // And over REST.
        let (status, body) = http(
            &server,
            "GET",
            &format!(
                "/bybit/v5/market/kline?category=linear&symbol=BTCUSDT&interval=1&start={start}&end={start}"
            ),
            "",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let rest: Value = serde_json::from_str(&body).unwrap();
        let row = &rest["result"]["list"][0];
        let start_text = start.to_string();
        let ws_row = [
            &start_text,
            k["open"].as_str().unwrap(),
            k["high"].as_str().unwrap(),
            k["low"].as_str().unwrap(),
            k["close"].as_str().unwrap(),
            k["volume"].as_str().unwrap(),
            k["turnover"].as_str().unwrap(),
        ];
        assert_eq!(row, &json!(ws_row));
    }

    #[tokio::test]
    async fn requests_answers_and_refusals() {
        let server = start(250).await;
        let mut s = connect(&server, "spot").await;
        // Spot: no `req_id` unless given; `ret_msg` names the op.
        let p = request(&mut s, json!({"op":"ping"})).await;
        let conn = p["conn_id"].clone();
        assert!(conn.as_str().is_some_and(|c| c.len() == 25));
        assert_eq!(
            p,
            json!({"success":true,"ret_msg":"pong","conn_id":conn,"op":"ping"})
        );
        let p = request(&mut s, json!({"op":"ping","req_id":"h1"})).await;
        assert_eq!(
            p,
            json!({"success":true,"ret_msg":"pong","conn_id":conn,"req_id":"h1","op":"ping"})
        );
        let a = request(
            &mut s,
            json!({"op":"subscribe","args":["publicTrade.ETHBTC"],"req_id":"x"}),
        )
        .await;
        assert_eq!(
            a,
            json!({"success":true,"ret_msg":"subscribe","conn_id":conn,"req_id":"x","op":"subscribe"})
        );
        let eleven: Vec<String> = (0..11).map(|i| format!("kline.1.X{i}USDT")).collect();
        let a = request(&mut s, json!({"op":"subscribe","args":eleven})).await;
        assert_eq!(
            (a["success"].clone(), a["ret_msg"].clone()),
            (json!(false), json!("args size >10"))
        );
        let a = request(
            &mut s,
            json!({"op":"unsubscribe","args":["publicTrade.ETHBTC"]}),
        )
        .await;
        assert_eq!(
            a,
            json!({"success":true,"ret_msg":"unsubscribe","conn_id":conn,"op":"unsubscribe"})
        );

        // Linear: `req_id` always, `ret_msg` empty.
        let mut l = connect(&server, "linear").await;
        let p = request(&mut l, json!({"op":"ping"})).await;
        let conn = p["conn_id"].clone();
        assert_ne!(conn, a["conn_id"]);
        assert_eq!(
            p,
            json!({"success":true,"ret_msg":"pong","conn_id":conn,"req_id":"","op":"ping"})
        );
        // One bad arg refuses the request: nothing of it is subscribed.
        let a = request(
            &mut l,
            json!({"op":"subscribe","args":["publicTrade.BTCUSDT","publicTrade.NOPE"],"req_id":"s1"}),
        )
        .await;
        assert_eq!(
            a,
            json!({"success":false,"ret_msg":"error:handler not found,topic:publicTrade.NOPE",
                   "conn_id":conn,"req_id":"s1","op":"subscribe"})
        );
        for bad in [
            "kline.7.BTCUSDT",
            "orderbook.500.BTCUSDT",
            "orderbook.50.btcusdt",
            "tickers.BTCUSDT",
            "publicTrade.BTCUSD",
        ] {
            let a = request(&mut l, json!({"op":"subscribe","args":[bad]})).await;
            assert_eq!(a["success"], false);
            assert_eq!(a["ret_msg"], format!("error:handler not found,topic:{bad}"));
        }
        let a = request(
            &mut l,
            json!({"op":"subscribe","args":["publicTrade.BTCUSDT"]}),
        )
        .await;
        assert_eq!(
            a,
            json!({"success":true,"ret_msg":"","conn_id":conn,"req_id":"","op":"subscribe"})
        );
        let a = request(
            &mut l,
            json!({"op":"subscribe","args":["publicTrade.BTCUSDT"]}),
        )
        .await;
        assert_eq!(
            a["ret_msg"],
            "error:already subscribed,topic:publicTrade.BTCUSDT"
        );
        // More than 21,000 characters of args (linear has no count limit).
        let many: Vec<String> = (0..1100).map(|i| format!("publicTrade.X{i}USDT")).collect();
        let a = request(&mut l, json!({"op":"subscribe","args":many})).await;
        assert_eq!(a["ret_msg"], "error:args length exceeds 21000");
        let a = request(&mut l, json!({"op":"hello"})).await;
        assert_eq!(
            (a["success"].clone(), a["ret_msg"].clone()),
            (json!(false), json!("error:invalid op"))
        );
        send(&mut l, json!("not an object")).await;
        let a = answer(&mut l).await;
        assert_eq!(a["success"], false);
        l.send(Message::text("hello")).await.unwrap();
        let a = answer(&mut l).await;
        assert!(a["ret_msg"]
            .as_str()
            .unwrap()
            .starts_with("Failed to decode incoming data:"));

        // Inverse symbols are `<BASE>USD`.
        let mut i = connect(&server, "inverse").await;
        subscribe(&mut i, &["orderbook.1.ETHUSD", "kline.D.BTCUSD"]).await;
        let a = request(
            &mut i,
            json!({"op":"subscribe","args":["orderbook.1.BTCUSDT"]}),
        )
        .await;
        assert_eq!(a["success"], false);

        let stats = server.bybit_ws_stats();
        assert_eq!(stats.subscriptions_refused, 10);
        assert_eq!(stats.pings_received, 3);
        assert_eq!(stats.connections_opened, 3);
        assert_eq!(server.stats().bybit_ws, stats);
        // Only spot, linear and inverse.
        let (status, _) = http(&server, "GET", "/bybit-ws/v5/public/option", "").await;
        assert_eq!(status, 404);
        let (status, _) = http(&server, "GET", "/bybit-ws/v5/public/spot", "").await;
        assert_eq!(status, 400, "not an upgrade");
    }

    #[tokio::test]
    async fn latency_delays_every_message() {
        let server = start(250).await;
        let (status, body) = http(&server, "POST", "/sim/bybit_ws", r#"{"latency_ms":300}"#).await;
        assert_eq!(status, 200, "{body}");
        let f: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            f,
            json!({"idle_timeout_ms":600000,"data_keeps_alive":true,"latency_ms":300,"kline_update_ms":1000})
        );
        assert_eq!(server.bybit_ws_faults().latency, Duration::from_millis(300));
        let mut c = connect(&server, "linear").await;
        let sent = Instant::now();
        let p = request(&mut c, json!({"op":"ping"})).await;
        assert_eq!(p["ret_msg"], "pong");
        assert!(sent.elapsed() >= Duration::from_millis(300));
        let (status, body) = http(&server, "GET", "/sim/bybit_ws", "").await;
        assert_eq!((status, body.contains("\"latency_ms\":300")), (200, true));
        let (status, _) = http(&server, "POST", "/sim/bybit_ws", r#"{"nope":1}"#).await;
        assert_eq!(status, 400);
    }

    #[tokio::test]
    async fn idle_connections_are_cut() {
        let server = start(250).await;
        server.set_bybit_ws_faults(BybitWsFaults {
            idle_timeout: Duration::from_secs(1),
            ..BybitWsFaults::default()
        });
        let opened = Instant::now();
        let mut idle = connect(&server, "linear").await;
        let mut pinging = connect(&server, "linear").await;
        let mut fed = connect(&server, "linear").await;
        subscribe(&mut fed, &["orderbook.50.BTCUSDT"]).await;
        let idle_end = async {
            let end = end_of(&mut idle, WAIT).await;
            (end, opened.elapsed())
        };
        // Pings every 300 ms keep one alive, data the other; both outlive the idle one by far.
        let keep = async {
            let until = Instant::now() + Duration::from_millis(2_500);
            while Instant::now() < until {
                let p = request(&mut pinging, json!({"op":"ping"})).await;
                assert_eq!(p["ret_msg"], "pong");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        };
        let feed = async {
            let until = Instant::now() + Duration::from_millis(2_500);
            while Instant::now() < until {
                next(&mut fed).await;
            }
        };
        let ((end, after), (), ()) = tokio::join!(idle_end, keep, feed);
        assert_eq!(end, Some(false), "cut without a close frame");
        assert!(after >= Duration::from_millis(950), "{after:?}");
        assert_eq!(server.bybit_ws_stats().idle_closes, 1);
        // Without data keeping it alive, a subscribed connection that does not ping is cut.
        server.set_bybit_ws_faults(BybitWsFaults {
            idle_timeout: Duration::from_secs(1),
            data_keeps_alive: false,
            ..BybitWsFaults::default()
        });
        let cut = end_of(&mut fed, WAIT);
        let keep = async {
            // Pinging still keeps a connection alive, past the other's cut.
            for _ in 0..6 {
                let p = request(&mut pinging, json!({"op":"ping"})).await;
                assert_eq!(p["ret_msg"], "pong");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        };
        let (cut, ()) = tokio::join!(cut, keep);
        assert_eq!(cut, Some(false));
        assert_eq!(server.bybit_ws_stats().idle_closes, 2);
    }

    /// A book kept from messages: price → size, per side.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct LocalBook {
        bids: BTreeMap<i128, String>,
        asks: BTreeMap<i128, String>,
        u: i64,
    }

    fn units(p: &Value) -> i128 {
        p.as_str().unwrap().replace('.', "").parse().unwrap()
    }

    impl LocalBook {
        /// Applies a snapshot or delta; checks the chain of `u` and the window of `depth`.
        fn apply(&mut self, m: &Value, depth: usize) {
            let d = &m["data"];
            let u = int(&d["u"]);
            let sides = [
                (&d["b"], &mut self.bids, true),
                (&d["a"], &mut self.asks, false),
            ];
            match m["type"].as_str() {
                Some("snapshot") => {
                    for (levels, side, bid) in sides {
                        side.clear();
                        let levels = levels.as_array().unwrap();
                        let prices: Vec<i128> = levels.iter().map(|l| units(&l[0])).collect();
                        let sorted = prices.windows(2).all(|w| (w[0] > w[1]) == bid);
                        assert!(sorted, "bids descending, asks ascending");
                        for l in levels {
                            side.insert(units(&l[0]), l[1].as_str().unwrap().to_string());
                        }
                    }
                }
                Some("delta") => {
                    assert_eq!(u, self.u + 1, "u rises by one per message");
                    for (levels, side, _) in sides {
                        for l in levels.as_array().unwrap() {
                            let size = l[1].as_str().unwrap();
                            if size.trim_end_matches('0').trim_end_matches('.') == "0" {
                                assert!(side.remove(&units(&l[0])).is_some(), "deleted a level");
                            } else {
                                side.insert(units(&l[0]), size.to_string());
                            }
                        }
                    }
                }
                other => panic!("type {other:?}"),
            }
            self.u = u;
            assert!(self.bids.len() <= depth && self.asks.len() <= depth);
            assert_eq!(self.asks.len(), depth);
            assert!(self.bids.keys().next_back() < self.asks.keys().next());
            assert!(int(&m["cts"]) <= int(&m["ts"]));
            assert!(d["seq"].as_u64().is_some());
            assert_eq!(d["s"], "BTCUSDT");
        }
    }

    /// Reads `topic` on `c` until its book reaches `u`.
    async fn follow(c: &mut Client, book: &mut LocalBook, depth: usize, u: i64) {
        while book.u < u {
            let m = next(c).await;
            if m.get("op").is_none() {
                book.apply(&m, depth);
            }
        }
    }

    #[tokio::test]
    async fn order_books_chain_and_agree_across_connections() {
        let server = start(250).await;
        for (category, depth) in [("linear", 50), ("spot", 200)] {
            let topic = format!("orderbook.{depth}.BTCUSDT");
            let mut a = connect(&server, category).await;
            subscribe(&mut a, &[&topic]).await;
            let mut book = LocalBook::default();
            let first = next(&mut a).await;
            assert_eq!(first["topic"], topic.as_str());
            assert_eq!(first["type"], "snapshot");
            book.apply(&first, depth);
            let target = book.u + 3;
            follow(&mut a, &mut book, depth, target).await;
            // A later connection's snapshot is the book this one built from deltas.
            let mut b = connect(&server, category).await;
            subscribe(&mut b, &[&topic]).await;
            let mut other = LocalBook::default();
            other.apply(&next(&mut b).await, depth);
            assert!(other.u >= book.u);
            follow(&mut a, &mut book, depth, other.u).await;
            assert_eq!(book, other);
            // A restart: a snapshot with u = 1, then deltas chained on it.
            assert!(server.bybit_ws_reset_books() >= 2);
            loop {
                let m = next(&mut a).await;
                let restart = m["type"] == "snapshot";
                book.apply(&m, depth);
                if restart {
                    assert_eq!(book.u, 1);
                    break;
                }
            }
            follow(&mut a, &mut book, depth, 3).await;
            let mut c = connect(&server, category).await;
            subscribe(&mut c, &[&topic]).await;
            let mut late = LocalBook::default();
            late.apply(&next(&mut c).await, depth);
            assert!(
                late.u >= 3 && late.u < 1_000,
                "u counts from the restart: {}",
                late.u
            );
            follow(&mut a, &mut book, depth, late.u).await;
            assert_eq!(book, late);
        }
        // Level 1: snapshots only, one level a side.
        let mut t = connect(&server, "linear").await;
        subscribe(&mut t, &["orderbook.1.BTCUSDT"]).await;
        let mut last_u = 0;
        for _ in 0..5 {
            let m = next(&mut t).await;
            assert_eq!(m["type"], "snapshot");
            assert_eq!(m["data"]["b"].as_array().unwrap().len(), 1);
            assert_eq!(m["data"]["a"].as_array().unwrap().len(), 1);
            assert!(int(&m["data"]["u"]) > last_u);
            last_u = int(&m["data"]["u"]);
        }
        assert_eq!(server.bybit_ws_stats().book_resets, 2);
    }

    #[tokio::test]
    async fn disconnect_all_drops_every_connection() {
        let server = start(250).await;
        let mut a = connect(&server, "spot").await;
        let mut b = connect(&server, "inverse").await;
        for c in [&mut a, &mut b] {
            assert_eq!(request(c, json!({"op":"ping"})).await["ret_msg"], "pong");
        }
        eventually("two open", || server.bybit_ws_stats().connections_open == 2).await;
        assert_eq!(server.bybit_ws_disconnect_all(), 2);
        for c in [&mut a, &mut b] {
            assert_eq!(end_of(c, WAIT).await, Some(false), "no close frame");
        }
        eventually("none open", || {
            server.bybit_ws_stats().connections_open == 0
        })
        .await;
        let stats = server.bybit_ws_stats();
        assert_eq!((stats.forced_disconnects, stats.connections_opened), (2, 2));
        let (status, body) = http(&server, "POST", "/sim/bybit_ws/disconnect", "").await;
        assert_eq!((status, body.as_str()), (200, "{\"connections\":0}"));
        let (_, body) = http(&server, "GET", "/sim/stats", "").await;
        let stats: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(stats["bybit_ws"]["forced_disconnects"], 2);
        // Stopping the server ends its connections too.
        let mut c = connect(&server, "linear").await;
        assert_eq!(
            request(&mut c, json!({"op":"ping"})).await["ret_msg"],
            "pong"
        );
        server.shutdown().await;
        assert!(end_of(&mut c, WAIT).await.is_some());
    }

    /// A liquidation as `allLiquidation` writes it.
    fn liquidation_json(l: &crate::bybit::VenueLiquidation) -> Value {
        json!({"T": l.time, "s": l.symbol, "S": l.side, "v": l.size, "p": l.price})
    }

    /// `allLiquidation` messages on `c`, read until one with `ts` = `last_ts`; checks each is
    /// pushed at a 500 ms boundary that has passed, with the liquidations of the half-second
    /// before it.
    async fn liquidation_messages(
        server: &SimServer,
        c: &mut Client,
        topic: &str,
        last_ts: i64,
    ) -> Vec<Value> {
        let mut got: Vec<Value> = Vec::new();
        while got.last().is_none_or(|m| int(&m["ts"]) < last_ts) {
            let m = next(c).await;
            if m.get("op").is_some() {
                continue;
            }
            assert!(
                server.clock().now_ms() >= int(&m["ts"]),
                "pushed before its boundary"
            );
            assert_eq!(
                (m["topic"].as_str(), m["type"].as_str()),
                (Some(topic), Some("snapshot"))
            );
            let ts = int(&m["ts"]);
            assert_eq!(ts % 500, 0, "{m}");
            let rows = m["data"].as_array().unwrap();
            assert!(!rows.is_empty(), "a message without liquidations");
            for r in rows {
                assert!((ts - 500..ts).contains(&int(&r["T"])), "{m}");
            }
            assert!(
                got.last().is_none_or(|p| int(&p["ts"]) < ts),
                "ascending windows"
            );
            got.push(m);
        }
        got
    }

    #[tokio::test]
    async fn all_liquidation_pushes_each_half_seconds_liquidations() {
        let server = start(250).await;
        let topic = "allLiquidation.BTCUSDT";
        let liquidations = |from: i64, to: i64| {
            crate::bybit::bybit_liquidations(BybitCategory::Linear, "BTCUSDT", from, to)
        };
        // Ten seconds before a half-second in which two liquidations share a millisecond.
        let day = 1_773_446_400_000; // 2026-03-14
        let schedule = liquidations(day, day + 3_600_000);
        let tie = schedule
            .windows(2)
            .find(|w| w[0].time == w[1].time)
            .expect("a shared millisecond within an hour")[0]
            .time;
        server.clock().set_now_ms(tie - 10_000);
        // Spot has no liquidations: an unknown topic there.
        let mut spot = connect(&server, "spot").await;
        let a = request(&mut spot, json!({"op":"subscribe","args":[topic]})).await;
        assert_eq!(a["success"], false);
        assert_eq!(
            a["ret_msg"],
            format!("error:handler not found,topic:{topic}")
        );
        let mut inverse = connect(&server, "inverse").await;
        subscribe(&mut inverse, &["allLiquidation.BTCUSD"]).await;

        let mut c = connect(&server, "linear").await;
        let before = server.clock().now_ms();
        subscribe(&mut c, &[topic]).await;
        let after = server.clock().now_ms();
        // Twenty seconds at once instead of waiting for them.
        server.clock().advance(Duration::from_secs(20));
        let first = after.div_euclid(500) * 500;
        let end = (after + 20_000).div_euclid(500) * 500;
        let want = liquidations(first, end - 1);
        let mut windows: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
        for l in &want {
            windows
                .entry(l.time.div_euclid(500) * 500 + 500)
                .or_default()
                .push(liquidation_json(l));
        }
        assert!(windows.len() >= 5, "{} windows", windows.len());
        let last_ts = *windows.keys().next_back().unwrap();
        let got = liquidation_messages(&server, &mut c, topic, last_ts).await;
        // Nothing older than the half-second of the subscription.
        assert!(int(&got[0]["ts"]) - 500 >= before.div_euclid(500) * 500);
        let got: BTreeMap<i64, Vec<Value>> = got
            .iter()
            .filter(|m| int(&m["ts"]) > first)
            .map(|m| (int(&m["ts"]), m["data"].as_array().unwrap().clone()))
            .collect();
        assert_eq!(
            got, windows,
            "one message per half-second with liquidations, in order"
        );
        let tied = got.values().any(|rows| {
            rows.windows(2)
                .any(|w| w[0]["T"] == w[1]["T"] && w[0]["S"] != w[1]["S"])
        });
        assert!(tied, "two liquidations at one millisecond in one message");
        // Counted apart (and as messages).
        let sent = got.len() as u64;
        eventually("liquidation messages counted", || {
            server.bybit_ws_stats().liquidation_messages_sent >= sent
        })
        .await;
        let stats = server.bybit_ws_stats();
        assert!(stats.messages_sent >= stats.liquidation_messages_sent + 3);
        assert_eq!(stats.subscriptions_refused, 1);

        // After a reconnect, nothing older than the half-second of the new subscription.
        assert!(server.bybit_ws_disconnect_all() >= 2);
        assert_eq!(end_of(&mut c, WAIT).await, Some(false));
        let mut c = connect(&server, "linear").await;
        let before = server.clock().now_ms();
        subscribe(&mut c, &[topic]).await;
        server.clock().advance(Duration::from_secs(30));
        let m = liquidation_messages(&server, &mut c, topic, 0).await;
        assert!(int(&m[0]["ts"]) - 500 >= before.div_euclid(500) * 500);
        let ts = int(&m[0]["ts"]);
        let want: Vec<Value> = liquidations(ts - 500, ts - 1)
            .iter()
            .map(liquidation_json)
            .collect();
        assert_eq!(m[0]["data"], json!(want));
    }

    #[tokio::test]
    async fn dropped_trade_messages_leave_a_gap_on_one_connection() {
        let server = start(20).await;
        let data = server.data();
        let topic = "publicTrade.BTCUSDT";
        let mut a = connect(&server, "spot").await;
        let mut b = connect(&server, "spot").await;
        subscribe(&mut a, &[topic]).await;
        subscribe(&mut b, &[topic]).await;
        // Both have trades flowing before the fault, so the gap lies within what both saw.
        let (mut ga, mut gb) =
            tokio::join!(trades_for(&mut a, topic, 0), trades_for(&mut b, topic, 0));
        let (status, _) = http(
            &server,
            "POST",
            "/sim/bybit_ws/drop_trades?topic=publicTrade.BTCUSDT&messages=2",
            "",
        )
        .await;
        assert_eq!(status, 200);
        let (ra, rb) = tokio::join!(
            trades_for(&mut a, topic, 1_500),
            trades_for(&mut b, topic, 1_500)
        );
        ga.extend(ra);
        gb.extend(rb);
        let mut short = 0;
        for got in [&ga, &gb] {
            let (first, last) = (int(&got[0]["T"]), int(&got[got.len() - 1]["T"]));
            let expected =
                trades_between(&data, BybitCategory::Spot, "BTCUSDT", first, last - 1).unwrap();
            let ids: Vec<&str> = got
                .iter()
                .filter(|t| int(&t["T"]) < last)
                .map(|t| t["i"].as_str().unwrap())
                .collect();
            if ids.len() == expected.len() {
                same_as_archive(&data, BybitCategory::Spot, got);
                continue;
            }
            short += 1;
            // Every trade it got is the archive's, in order; one run of them is missing.
            let want: Vec<&str> = expected.iter().map(|t| t.id.as_str()).collect();
            let start = want.iter().zip(&ids).take_while(|(w, g)| w == g).count();
            let missing = want.len() - ids.len();
            assert!(missing > 0);
            assert_eq!(&want[start + missing..], &ids[start..], "a single gap");
        }
        assert_eq!(short, 1, "one connection only");
        assert_eq!(server.bybit_ws_stats().trade_messages_dropped, 2);
    }
}
