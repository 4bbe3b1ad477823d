//! OKX's v5 public WebSocket, served under `/okx-ws` ([`SimServer::okx_ws_url`]): OKX's
//! `wss://ws.okx.com:8443` becomes `ws://IP:PORT/okx-ws`, so its two public services are
//! `/okx-ws/ws/v5/public` and `/okx-ws/ws/v5/business`. Computed from the same deterministic
//! data as OKX's REST venue ([`crate::okx`]) and archive ([`crate::okx_archive`]), as OKX
//! documents it (www.okx.com/docs-v5/en/, anchors cited below):
//!
//! - **Connecting** (#overview-websocket-connect): "Connection limit: 3 requests per second
//!   (based on IP)"; an upgrade over it is refused with HTTP 429 (OKX does not document the
//!   answer: an assumption), refused ones not counted. Paths other than the two services are
//!   HTTP 404; a plain GET on them HTTP 400.
//! - **Requests** (#overview-websocket-subscribe, #overview-websocket-unsubscribe):
//!   `{"id":"1512","op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"}]}`, `id`
//!   optional (up to 32 letters and digits, echoed), `op` `subscribe` or `unsubscribe`. Each arg
//!   is answered on its own, in order: `{"id":"1512","event":"subscribe","arg":{"channel":…,
//!   "instId":…},"connId":"a4d3ae55"}` (`unsubscribe` alike), or for an unknown channel, an
//!   instrument OKX does not have, or a channel of the other service
//!   `{"event":"error","code":"60018","msg":"Wrong URL or channel:candle1m,instId:BTC-USDT
//!   doesn't exist. Please use the correct URL, channel and parameters referring to API
//!   document.","connId":…}` (#error-code-websocket-public; the message as OKX sends it for a
//!   candle channel on `/public`: okx-api issue 106, aiviaio/okex issue 76). A request that is
//!   not JSON, has no `op` or no `args` list: code `60012` `"Invalid request: {the request}"`;
//!   another `op`: `60019` `"Invalid op: {op}"`. "The total number of 'subscribe'/'unsubscribe'/
//!   'login' requests per connection is limited to 480 times per hour" (#overview-websocket-
//!   connect): beyond it, `60014` "Requests too frequent" (what OKX answers: ccxt issue 25373)
//!   and nothing is (un)subscribed. Subscribing again to `books` sends a new snapshot (the way
//!   a client resyncs); to another channel, only the answer.
//! - **Heartbeat** (#overview-websocket-connect): the text `ping` is answered `pong`. "The
//!   connection will break automatically if the subscription is not established or data has
//!   not been pushed for more than 30 seconds": a connection on which nothing was received from
//!   the client and nothing pushed to it for [`OkxWsConfig::idle_timeout`] gets the close frame
//!   `4004` "No data received in 30s." (#error-code-websocket-public, "Close Frame"). A client
//!   that follows OKX's advice (ping when nothing arrived for N < 30 s) is never closed.
//! - **Channels on `/public`**: `trades` (#order-book-trading-market-data-ws-trades-channel),
//!   `books` (400 levels) and `bbo-tbt` (#order-book-trading-market-data-ws-order-book-channel);
//!   **on `/business`**: the candlesticks (#order-book-trading-market-data-ws-candlesticks-
//!   channel, "URL Path /ws/v5/business"). Other channels OKX has (tickers, books5, …) are not
//!   simulated and answered 60018.
//! - `trades`: `{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",
//!   "tradeId":"130639474","px":"…","sz":"…","side":"buy","ts":"1630048897897","count":"1",
//!   "source":"0","seqId":130639474}]}`, one message per trade (OKX aggregates the fills of a
//!   taker order at one price into one message with their `count`; here every message holds
//!   one trade), sent once the trade's time has passed on the simulator's clock, from the first
//!   trade after the subscription on: exactly the trades history-trades and the archive serve
//!   ([`okx::trades`]), same ids, times, prices, sizes and sides, in trade-id order (`seqId` is
//!   the trade id).
//! - candles: `candle1s`, `candle1m`, `candle3m`, `candle5m`, `candle15m`, `candle30m`,
//!   `candle1H`, `candle2H`, `candle4H` and the UTC-aligned `candle6Hutc`, `candle12Hutc`,
//!   `candle1Dutc`, `candle1Wutc`, `candle1Mutc`. OKX also has UTC+8 bars (`candle6H` …
//!   `candle3M`) and `candle2Dutc`, `candle3Dutc`, `candle5Dutc`, `candle3Mutc`; like the REST
//!   venue, the simulator does not serve them (60018). Rows `[ts,o,h,l,c,vol,volCcy,
//!   volCcyQuote,confirm]` as history-candles gives them: the open candle with `confirm` `0`
//!   every [`OkxWsConfig::candle_update`] ("the fastest interval 1 second"), and once it closed
//!   the closed candle with `confirm` `1`, exactly once per candle and equal to history-candles.
//! - `books`: a snapshot of 400 levels a side, then every 100 ms the changed levels (size `"0"`
//!   deletes one): `{"arg":{…},"action":"snapshot"|"update","data":[{"asks":[["px","sz","0",
//!   "numOrders"]],"bids":[…],"ts":"…","checksum":0,"prevSeqId":-1,"seqId":…}]}`. An update's
//!   `prevSeqId` is the `seqId` of the message before it (-1 on a snapshot); seqIds grow and
//!   jump. Books are deterministic: applying the updates to a snapshot gives the book
//!   [`order_book`] computes for the update's `ts`. OKX deprecated `checksum`: "its value is
//!   fixed to 0 and must no longer be used for integrity verification. Please use
//!   seqId/prevSeqId" (the order book channel's docs; ccxt PR 30299 measured only zeros). So
//!   by default it is 0; with [`OkxWsConfig::book_checksum`] it is the CRC-32 OKX documented
//!   before ([`checksum`]).
//! - `bbo-tbt`: `{"arg":{…},"data":[{"asks":[["px","sz","0","n"]],"bids":[[…]],"ts":"…",
//!   "seqId":…}]}` whenever the best levels changed (OKX: every 10 ms; the book here changes
//!   every 100 ms).
//! - `liquidation-orders` (#public-data-websocket-liquidation-orders-channel), on `/public`:
//!   subscribed by instrument type, `{"channel":"liquidation-orders","instType":"SWAP"}` or
//!   `"FUTURES"` (the answer echoes that arg; any other `instType`, or none, is refused with
//!   60018 `Wrong URL or channel:liquidation-orders,instType:SPOT doesn't exist…`, like a bad
//!   instrument). It covers every instrument of the type the simulator lists
//!   ([`okx::okx_liquidation_instruments_at`]: five perpetuals, and the current and next
//!   quarterly future of three families), so a client interested in one instrument filters.
//!   Pushes `{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"instId":
//!   "BTC-USDT-SWAP","instFamily":"BTC-USDT","instType":"SWAP","uly":"BTC-USDT","details":
//!   [{"bkLoss":"0","bkPx":"…","ccy":"","posSide":"long","side":"sell","sz":"3","ts":"…"}]}]}`
//!   ("each contract will only show a maximum of one order per one-second period"; `side` is
//!   the liquidation order's, `sell` for a long position, `sz` in contracts, `bkPx` the
//!   bankruptcy price without trailing zeros). The liquidations are exactly
//!   [`okx::okx_liquidations`]', each sent once the simulator's clock passed its `ts`, from
//!   the first millisecond after the subscription on: everything that came due since the last
//!   tick goes in ONE message, one `data` entry per instrument (in the order of their first
//!   `ts`, ties in the list's order) with its `details` by `ts`; the schedule puts several
//!   instruments at the same millisecond now and then (a cascade), so such messages happen in
//!   real time too. A tick looks at most a minute of the simulator's time (the rest follows at
//!   the next ticks); a subscription more than an hour behind (a clock jump) skips to the last
//!   hour.
//!
//! Prices and sizes of books are decimals without trailing zeros (`"30000.5"`, `"0.01"`), as
//! OKX prints them; trades and candles carry history-candles' and history-trades' strings.
//! Instruments are those [`OkxInstType::of_inst`] accepts (spot, swaps, futures).
//!
//! Faults and controls ([`SimServer`] methods, `GET`/`POST /sim/okx_ws`, `POST
//! /sim/okx_ws/disconnect`): the [`OkxWsConfig`] (idle timeout, limits, candle pace, checksum,
//! latency), dropping every connection abruptly, dropping the next trade messages of an
//! instrument on one connection (a gap), corrupting the next book update's checksum, breaking
//! the seqId chain (an update is swallowed); [`OkxWsStats`] counts what happened, also in
//! [`crate::SimStats::okx_ws`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
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
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kline_interval::Interval;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::clock::SimClock;
use crate::data::{self, Data, Market, TradeUnits};
use crate::fmt::{push_fixed8, push_i64, push_json_str};
use crate::market::SimMarket;
use crate::okx::{self, OkxInstType};
use crate::venue_liquidations::{self as liq, LiqUnits, OkxLiqInst};
use crate::SimServer;

use crate::ws::{Outgoing, Ws};

/// How often a session checks its timers and sends what came due.
const TICK: Duration = Duration::from_millis(20);
/// How long the server waits for the client's close frame after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// At most this many trades or candles per subscription and tick; the rest follow.
const MAX_EVENTS_PER_POLL: usize = 2000;
/// Levels a side of a `books` snapshot.
pub const BOOK_DEPTH: usize = 400;
/// Levels a side the (deprecated) checksum covers.
pub const CHECKSUM_LEVELS: usize = 25;
/// The close code of an idle connection and its reason (#error-code-websocket-public).
pub const IDLE_CLOSE_CODE: u16 = 4004;
pub const IDLE_CLOSE_REASON: &str = "No data received in 30s.";
const SALT_ORDERS: u64 = 0x4f4b_5857_0000_0001;
/// The channel of liquidation orders, subscribed by `instType`.
pub const LIQUIDATION_CHANNEL: &str = "liquidation-orders";
/// The simulator's time a `liquidation-orders` subscription looks at per tick at most.
const MAX_LIQUIDATION_SPAN_PER_POLL_MS: i64 = 60_000;
/// A `liquidation-orders` subscription further behind than this (a clock jump) skips to the
/// last hour.
const MAX_LIQUIDATION_CATCH_UP_MS: i64 = 3_600_000;

/// Behaviours of OKX's WebSocket and settings tests change; the default is OKX's.
///
/// Set it with [`SimServer::set_okx_ws_config`] (open connections follow at their next tick)
/// or `POST /sim/okx_ws` (`{"idle_timeout_ms":30000,"max_connections_per_sec":3,
/// "max_requests_per_hour":480,"candle_update_ms":1000,"book_checksum":false,
/// "latency_ms":0}`, any subset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OkxWsConfig {
    /// A connection that received nothing from its client and pushed nothing to it for this
    /// long is closed with `4004` (OKX: 30 s).
    pub idle_timeout: Duration,
    /// Connection requests one IP may make in any second (OKX: 3; `0` = no limit); more get
    /// HTTP 429. Counted on the simulator's clock.
    pub max_connections_per_sec: u32,
    /// `subscribe`/`unsubscribe` requests one connection may send in any hour (OKX: 480;
    /// `0` = no limit); more are answered 60014. Counted on the simulator's clock.
    pub max_requests_per_hour: u32,
    /// How often the open candle of a candle channel is pushed (OKX: at most every second).
    pub candle_update: Duration,
    /// `books` carry the CRC-32 checksum OKX documented until it deprecated it (`true`), or
    /// `0` as OKX sends now (`false`, the default).
    pub book_checksum: bool,
    /// Every message the server sends leaves this much later, in order.
    pub latency: Duration,
}

impl Default for OkxWsConfig {
    fn default() -> Self {
        OkxWsConfig {
            idle_timeout: Duration::from_secs(30),
            max_connections_per_sec: 3,
            max_requests_per_hour: 480,
            candle_update: Duration::from_secs(1),
            book_checksum: false,
            latency: Duration::ZERO,
        }
    }
}

/// What OKX's WebSocket did since the server started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OkxWsStats {
    /// Upgrades accepted (HTTP 101).
    pub connections_opened: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Upgrades refused with HTTP 429 (over the connection limit).
    pub connection_attempts_rejected: u64,
    /// Text messages sent: pushes, answers, errors, `pong`s.
    pub messages_sent: u64,
    /// `ping`s received.
    pub pings_received: u64,
    /// Channels subscribed (one per accepted arg).
    pub subscriptions: u64,
    /// Args or requests answered with an error event (60012, 60014, 60018, 60019).
    pub subscriptions_refused: u64,
    /// Requests answered 60014 (over the requests per hour).
    pub requests_too_frequent: u64,
    /// Connections dropped by [`SimServer::okx_ws_disconnect_all`].
    pub forced_disconnects: u64,
    /// Connections closed with 4004 for being idle.
    pub idle_closes: u64,
    /// Trade messages swallowed by [`SimServer::okx_ws_drop_trades`].
    pub trade_messages_dropped: u64,
    /// Book updates sent with a wrong checksum ([`SimServer::okx_ws_corrupt_next_checksum`]).
    pub checksums_corrupted: u64,
    /// Book updates swallowed ([`SimServer::okx_ws_break_next_seq`]).
    pub seq_breaks: u64,
    /// `liquidation-orders` pushes sent (also counted in [`messages_sent`](Self::messages_sent)).
    pub liquidation_messages_sent: u64,
}

/// Faults waiting for a connection to take them.
#[derive(Default)]
struct OneShots {
    /// The instrument and how many of its trade messages the first connection to send one
    /// swallows.
    drop_trades: Option<(String, u32)>,
    corrupt_checksum: u32,
    break_seq: u32,
}

/// What OKX's sessions share: the configuration, the data, the disconnect order, the per-IP
/// connection log, the pending faults and the counters.
pub(crate) struct OkxWsHub {
    config: watch::Sender<OkxWsConfig>,
    data: watch::Sender<Arc<Data>>,
    disconnect: broadcast::Sender<()>,
    /// Connection attempts per IP, in simulated ms.
    attempts: Mutex<HashMap<IpAddr, VecDeque<i64>>>,
    faults: Mutex<OneShots>,
    stats: Mutex<OkxWsStats>,
    next_conn: AtomicU64,
    clock: SimClock,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OkxWsHub {
    pub fn new(config: OkxWsConfig, data: Arc<Data>, clock: SimClock) -> OkxWsHub {
        OkxWsHub {
            config: watch::Sender::new(config),
            data: watch::Sender::new(data),
            disconnect: broadcast::Sender::new(16),
            attempts: Mutex::new(HashMap::new()),
            faults: Mutex::default(),
            stats: Mutex::default(),
            next_conn: AtomicU64::new(1),
            clock,
        }
    }

    pub fn set_config(&self, c: OkxWsConfig) {
        self.config.send_replace(c);
    }

    pub fn config(&self) -> OkxWsConfig {
        self.config.borrow().clone()
    }

    pub fn set_data(&self, data: Arc<Data>) {
        self.data.send_replace(data);
    }

    pub fn stats(&self) -> OkxWsStats {
        lock(&self.stats).clone()
    }

    fn bump(&self, f: impl FnOnce(&mut OkxWsStats)) {
        f(&mut lock(&self.stats));
    }

    /// Drops every open connection; returns how many there were.
    pub fn disconnect_all(&self) -> usize {
        self.disconnect.send(()).unwrap_or(0)
    }

    pub fn drop_trades(&self, inst_id: &str, messages: u32) {
        lock(&self.faults).drop_trades = (messages > 0).then(|| (inst_id.to_string(), messages));
    }

    pub fn corrupt_next_checksum(&self) {
        lock(&self.faults).corrupt_checksum += 1;
    }

    pub fn break_next_seq(&self) {
        lock(&self.faults).break_seq += 1;
    }

    /// The pending trade-dropping fault when it is for `inst_id` (it becomes the caller's).
    fn claim_drop_trades(&self, inst_id: &str) -> Option<u32> {
        let mut f = lock(&self.faults);
        match &f.drop_trades {
            Some((inst, _)) if inst == inst_id => f.drop_trades.take().map(|(_, n)| n),
            _ => None,
        }
    }

    fn take_corrupt(&self) -> bool {
        let mut f = lock(&self.faults);
        let hit = f.corrupt_checksum > 0;
        f.corrupt_checksum = f.corrupt_checksum.saturating_sub(1);
        hit
    }

    fn take_break(&self) -> bool {
        let mut f = lock(&self.faults);
        let hit = f.break_seq > 0;
        f.break_seq = f.break_seq.saturating_sub(1);
        hit
    }

    /// Records a connection request of `ip` unless it is over the limit.
    fn admit(&self, ip: IpAddr, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let now = self.clock.now_ms();
        let mut attempts = lock(&self.attempts);
        if attempts.len() > 1024 {
            attempts.retain(|_, q| q.back().is_some_and(|&t| now - t < 1_000));
        }
        let log = attempts.entry(ip).or_default();
        while log.front().is_some_and(|&t| now - t >= 1_000) {
            log.pop_front();
        }
        if log.len() >= limit as usize {
            return false;
        }
        log.push_back(now);
        true
    }
}

// ---------------------------------------------------------------------------------------------
// SimServer's controls

impl SimServer {
    /// `ws://IP:PORT/okx-ws`: OKX's WebSocket base, OKX's `wss://ws.okx.com:8443` (append
    /// `/ws/v5/public` or `/ws/v5/business`); see [`crate::okx_ws`].
    pub fn okx_ws_url(&self) -> String {
        format!("ws://{}/okx-ws", self.local_addr())
    }

    /// Replaces OKX's WebSocket behaviours; open connections follow at their next tick.
    pub fn set_okx_ws_config(&self, c: OkxWsConfig) {
        self.okx_ws_hub().set_config(c);
    }

    /// OKX's WebSocket behaviours in force.
    pub fn okx_ws_config(&self) -> OkxWsConfig {
        self.okx_ws_hub().config()
    }

    /// Drops every open OKX WebSocket connection abruptly (TCP close without a close frame);
    /// returns how many there were.
    pub fn okx_ws_disconnect_all(&self) -> usize {
        self.okx_ws_hub().disconnect_all()
    }

    /// The first connection that sends a `trades` message of `inst_id` from now on swallows
    /// it and its next `messages - 1` trade messages of `inst_id`: a gap in the trade ids.
    pub fn okx_ws_drop_trades(&self, inst_id: &str, messages: u32) {
        self.okx_ws_hub().drop_trades(inst_id, messages);
    }

    /// The next `books` update sent (on any connection) carries a wrong checksum.
    pub fn okx_ws_corrupt_next_checksum(&self) {
        self.okx_ws_hub().corrupt_next_checksum();
    }

    /// The next `books` update due (on any connection) is swallowed, so the following one's
    /// `prevSeqId` is not the last `seqId` the client saw (and the levels it held are lost).
    pub fn okx_ws_break_next_seq(&self) {
        self.okx_ws_hub().break_next_seq();
    }

    /// OKX's WebSocket counters.
    pub fn okx_ws_stats(&self) -> OkxWsStats {
        self.okx_ws_hub().stats()
    }
}

// ---------------------------------------------------------------------------------------------
// Books and the checksum

/// An order book of OKX's `books` channel as a client holds it: `(price, size)` as sent, bids
/// best (highest) first, asks best (lowest) first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OkxBook {
    /// The `seqId` of the message that left the book so.
    pub seq_id: i64,
    /// The book's time (`ts`): the start of its 100 ms slot.
    pub ts: i64,
    pub bids: Vec<(String, String)>,
    pub asks: Vec<(String, String)>,
}

/// The `books` book of `inst_id` at time `t` (400 levels a side, fewer bids when prices would
/// reach zero); `None` for an instrument OKX does not have.
pub fn order_book(inst_id: &str, t: i64) -> Option<OkxBook> {
    let m = market_of(inst_id)?;
    let slot = data::book_slot(t);
    let book = book_at(&m, slot);
    let text = |side: &[(i64, i64)]| side.iter().map(|&(p, q)| (dec(p), dec(q))).collect();
    Some(OkxBook {
        seq_id: seq_id(&m, slot),
        ts: slot * data::BOOK_SLOT_MS,
        bids: text(&book.bids),
        asks: text(&book.asks),
    })
}

/// The string OKX's (deprecated) checksum covers: the first 25 bids and asks interleaved,
/// `bid1px:bid1sz:ask1px:ask1sz:bid2px:…`, a side that has run out simply left out, prices
/// and sizes as sent.
pub fn checksum_string<S: AsRef<str>>(bids: &[(S, S)], asks: &[(S, S)]) -> String {
    let mut s = String::with_capacity(CHECKSUM_LEVELS * 64);
    for i in 0..CHECKSUM_LEVELS {
        for side in [bids, asks] {
            if let Some((p, q)) = side.get(i) {
                if !s.is_empty() {
                    s.push(':');
                }
                s.push_str(p.as_ref());
                s.push(':');
                s.push_str(q.as_ref());
            }
        }
    }
    s
}

/// OKX's book checksum as documented before its deprecation: the CRC-32 (IEEE, as zlib's) of
/// [`checksum_string`], as a signed 32-bit integer.
pub fn checksum<S: AsRef<str>>(bids: &[(S, S)], asks: &[(S, S)]) -> i32 {
    crc32(checksum_string(bids, asks).as_bytes()) as i32
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, reflected, the one of zlib and zip).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn market_of(inst_id: &str) -> Option<Market> {
    OkxInstType::of_inst(inst_id)?.market(inst_id)
}

/// The `seqId` of book slot `s`: grows with the slot and jumps between slots.
fn seq_id(m: &Market, s: i64) -> i64 {
    data::last_update_id(SimMarket::UsdM, m, s) as i64
}

/// The 400-level book of slot `s`, in units (the same mid price and level sizes as the other
/// venues' books, deeper).
fn book_at(m: &Market, s: i64) -> data::Book {
    let mid = data::book_mid(m, s);
    let tick = m.tick_units();
    let mut book = data::Book {
        bids: Vec::with_capacity(BOOK_DEPTH),
        asks: Vec::with_capacity(BOOK_DEPTH),
    };
    for i in 0..BOOK_DEPTH as i64 {
        let price = mid - (i + 1) * tick;
        if price <= 0 {
            break;
        }
        book.bids.push((price, data::level_qty(m, price, true, s)));
    }
    for i in 0..BOOK_DEPTH as i64 {
        let price = mid + i * tick;
        book.asks.push((price, data::level_qty(m, price, false, s)));
    }
    book
}

/// The orders at a level (OKX's fourth field): a deterministic 1 to 12.
fn num_orders(m: &Market, price: i64, qty: i64) -> u64 {
    1 + data::hash(
        m.seed,
        SALT_ORDERS,
        (price as u64) ^ (qty as u64).rotate_left(29),
    ) % 12
}

/// A decimal of 1e-8 units without trailing zeros (`30000`, `0.01`), as OKX prints them.
fn push_dec(buf: &mut String, units: i64) {
    push_fixed8(buf, units);
    while buf.ends_with('0') {
        buf.pop();
    }
    if buf.ends_with('.') {
        buf.pop();
    }
}

fn dec(units: i64) -> String {
    let mut s = String::with_capacity(24);
    push_dec(&mut s, units);
    s
}

/// `[["px","sz","0","n"],…]`; a level of size 0 (deleted) has 0 orders.
fn push_levels(s: &mut String, m: &Market, levels: &[(i64, i64)]) {
    s.push('[');
    for (i, &(p, q)) in levels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("[\"");
        push_dec(s, p);
        s.push_str("\",\"");
        push_dec(s, q);
        s.push_str("\",\"0\",\"");
        let n = if q == 0 { 0 } else { num_orders(m, p, q) };
        push_i64(s, n as i64);
        s.push_str("\"]");
    }
    s.push(']');
}

fn book_checksum(book: &data::Book) -> i32 {
    let text = |side: &[(i64, i64)]| -> Vec<(String, String)> {
        side.iter()
            .take(CHECKSUM_LEVELS)
            .map(|&(p, q)| (dec(p), dec(q)))
            .collect()
    };
    checksum(&text(&book.bids), &text(&book.asks))
}

// ---------------------------------------------------------------------------------------------
// Channels and subscriptions

/// Which of OKX's services a connection is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Public,
    Business,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Trades,
    Candle(Interval),
    Books,
    BboTbt,
}

impl Channel {
    fn parse(name: &str) -> Option<Channel> {
        Some(match name {
            "trades" => Channel::Trades,
            "books" => Channel::Books,
            "bbo-tbt" => Channel::BboTbt,
            _ => {
                let bar = name.strip_prefix("candle")?;
                if bar == "1s" {
                    Channel::Candle(Interval::S1)
                } else {
                    Channel::Candle(okx::bar_of(bar)?)
                }
            }
        })
    }

    /// Candles moved to `/business` (#order-book-trading-market-data-ws-candlesticks-channel);
    /// trades and books stay on `/public`.
    fn service(self) -> Service {
        match self {
            Channel::Candle(_) => Service::Business,
            _ => Service::Public,
        }
    }
}

enum SubState {
    Trades {
        next_raw: u64,
    },
    Candle {
        interval: Interval,
        open: i64,
        last_update: i64,
    },
    Books {
        /// The slot, book and seqId of the last message (sent or swallowed).
        last: Option<(i64, data::Book, i64)>,
    },
    Bbo {
        last_slot: i64,
        last_top: Option<data::BookTop>,
    },
}

struct Sub {
    channel: String,
    inst_id: String,
    /// `{"channel":"…","instId":"…"}`
    arg: String,
    market: Market,
    contracts: bool,
    inverse: bool,
    state: SubState,
}

fn arg_json(channel: &str, inst_id: &str) -> String {
    let mut s = String::with_capacity(48 + channel.len() + inst_id.len());
    s.push_str("{\"channel\":");
    push_json_str(&mut s, channel);
    s.push_str(",\"instId\":");
    push_json_str(&mut s, inst_id);
    s.push('}');
    s
}

impl Sub {
    fn new(
        channel: Channel,
        name: &str,
        inst_id: &str,
        market: Market,
        data: &Data,
        now: i64,
    ) -> Sub {
        let state = match channel {
            Channel::Trades => SubState::Trades {
                next_raw: data
                    .agg_ceil_existing(&market, now.saturating_add(1))
                    .map_or(u64::MAX, |a| data::raw_range(&market, a).0),
            },
            Channel::Candle(interval) => SubState::Candle {
                interval,
                open: interval.align_down(now),
                last_update: i64::MIN,
            },
            Channel::Books => SubState::Books { last: None },
            Channel::BboTbt => SubState::Bbo {
                last_slot: i64::MIN,
                last_top: None,
            },
        };
        let kind = OkxInstType::of_inst(inst_id);
        Sub {
            channel: name.to_string(),
            inst_id: inst_id.to_string(),
            arg: arg_json(name, inst_id),
            market,
            contracts: kind.is_some_and(|k| k != OkxInstType::Spot),
            inverse: inst_id.split('-').nth(1) == Some("USD"),
            state,
        }
    }
}

/// A `liquidation-orders` subscription: one instrument type.
struct LiqSub {
    kind: OkxInstType,
    /// `{"channel":"liquidation-orders","instType":"SWAP"}`
    arg: String,
    /// Liquidations from this millisecond on are still to be sent.
    next_ms: i64,
    /// The instruments covered somewhere in `covered_for` (the first quarterly deliveries after
    /// the span's ends), kept while a poll's span has the same.
    covered: Vec<OkxLiqInst>,
    covered_for: Option<(i64, i64)>,
}

fn liquidation_arg(kind: OkxInstType) -> String {
    format!(
        "{{\"channel\":\"{LIQUIDATION_CHANNEL}\",\"instType\":\"{}\"}}",
        kind.name()
    )
}

impl LiqSub {
    fn new(kind: OkxInstType, now: i64) -> LiqSub {
        LiqSub {
            kind,
            arg: liquidation_arg(kind),
            next_ms: now.saturating_add(1),
            covered: Vec::new(),
            covered_for: None,
        }
    }

    /// Appends the message of what came due by `now`, if anything did.
    fn poll(&mut self, now: i64, out: &mut Vec<String>) {
        if now < self.next_ms {
            return;
        }
        if now.saturating_sub(self.next_ms) > MAX_LIQUIDATION_CATCH_UP_MS {
            self.next_ms = now.saturating_sub(MAX_LIQUIDATION_CATCH_UP_MS);
        }
        let (from, to) = (
            self.next_ms,
            now.min(
                self.next_ms
                    .saturating_add(MAX_LIQUIDATION_SPAN_PER_POLL_MS - 1),
            ),
        );
        let key = (
            liq::okx_cover_key(self.kind, from),
            liq::okx_cover_key(self.kind, to),
        );
        if self.covered_for != Some(key) {
            self.covered = liq::okx_covered(self.kind, from, to);
            self.covered_for = Some(key);
        }
        let mut due: Vec<(usize, LiqUnits)> = Vec::new();
        for (i, inst) in self.covered.iter().enumerate() {
            let mut sec = from.div_euclid(1000) * 1000;
            while sec <= to {
                if let Some(l) = liq::okx_liquidation_at(inst, sec) {
                    if (from..=to).contains(&l.time) {
                        due.push((i, l));
                    }
                }
                let Some(next) = sec.checked_add(1000) else {
                    break;
                };
                sec = next;
            }
        }
        self.next_ms = to.saturating_add(1);
        if due.is_empty() {
            return;
        }
        due.sort_by_key(|(i, l)| (l.time, *i));
        out.push(liquidation_message(&self.arg, &self.covered, &due));
    }
}

/// A `liquidation-orders` push: one `data` entry per instrument, in the order of their first
/// liquidation in `due` (sorted by time), each with its liquidations as `details`.
fn liquidation_message(arg: &str, covered: &[OkxLiqInst], due: &[(usize, LiqUnits)]) -> String {
    let mut order: Vec<usize> = Vec::new();
    for (i, _) in due {
        if !order.contains(i) {
            order.push(*i);
        }
    }
    let mut s = String::with_capacity(64 + arg.len() + 200 * order.len() + 150 * due.len());
    s.push_str("{\"arg\":");
    s.push_str(arg);
    s.push_str(",\"data\":[");
    for (n, &i) in order.iter().enumerate() {
        let Some(inst) = covered.get(i) else {
            continue;
        };
        if n > 0 {
            s.push(',');
        }
        s.push_str("{\"instId\":");
        push_json_str(&mut s, &inst.inst_id);
        s.push_str(",\"instFamily\":");
        push_json_str(&mut s, &inst.family);
        s.push_str(",\"instType\":\"");
        s.push_str(inst.kind.name());
        s.push_str("\",\"uly\":");
        push_json_str(&mut s, &inst.family);
        s.push_str(",\"details\":[");
        for (k, (_, l)) in due.iter().filter(|(j, _)| *j == i).enumerate() {
            if k > 0 {
                s.push(',');
            }
            s.push_str("{\"bkLoss\":\"0\",\"bkPx\":\"");
            push_dec(&mut s, l.price);
            s.push_str(if l.long {
                "\",\"ccy\":\"\",\"posSide\":\"long\",\"side\":\"sell\",\"sz\":\""
            } else {
                "\",\"ccy\":\"\",\"posSide\":\"short\",\"side\":\"buy\",\"sz\":\""
            });
            push_i64(&mut s, l.qty);
            s.push_str("\",\"ts\":\"");
            push_i64(&mut s, l.time);
            s.push_str("\"}");
        }
        s.push_str("]}");
    }
    s.push_str("]}");
    s
}

/// What a poll needs besides the subscription.
struct PollCtx<'a> {
    data: &'a Data,
    now: i64,
    candle_update_ms: i64,
    book_checksum: bool,
    hub: &'a OkxWsHub,
}

fn trade_message(arg: &str, inst_id: &str, t: &TradeUnits) -> String {
    let id = okx::trade_id(t.id);
    let mut s = String::with_capacity(256);
    s.push_str("{\"arg\":");
    s.push_str(arg);
    s.push_str(",\"data\":[{\"instId\":");
    push_json_str(&mut s, inst_id);
    s.push_str(",\"tradeId\":\"");
    push_i64(&mut s, id as i64);
    s.push_str("\",\"px\":\"");
    push_fixed8(&mut s, t.price);
    s.push_str("\",\"sz\":\"");
    push_fixed8(&mut s, t.qty);
    // The taker's side: a taker that sells hits a buyer who made the market.
    s.push_str(if t.buyer_maker {
        "\",\"side\":\"sell\",\"ts\":\""
    } else {
        "\",\"side\":\"buy\",\"ts\":\""
    });
    push_i64(&mut s, t.time);
    s.push_str("\",\"count\":\"1\",\"source\":\"0\",\"seqId\":");
    push_i64(&mut s, id as i64);
    s.push_str("}]}");
    s
}

/// A candle row as history-candles gives it: closed (`confirm` 1) or so far at `now`.
fn candle_message(
    arg: &str,
    m: &Market,
    (contracts, inverse): (bool, bool),
    ctx: &PollCtx<'_>,
    (iv, open): (Interval, i64),
    closed: bool,
) -> String {
    let until = if closed { i64::MAX } else { ctx.now };
    let k = data::kline_units(m, ctx.data, iv, open, until).to_kline();
    // Spot: vol in the base coin, volCcy and volCcyQuote in the quote coin; contracts: vol in
    // contracts, volCcy in the base coin, volCcyQuote in the quote coin (inverse contracts of
    // 1 USD: the base coin is the quote volume, the USD value the contracts).
    let (vol_ccy, vol_quote) = match (contracts, inverse) {
        (true, true) => (&k.quote_volume, &k.volume),
        (true, false) => (&k.volume, &k.quote_volume),
        (false, _) => (&k.quote_volume, &k.quote_volume),
    };
    let mut s = String::with_capacity(320);
    s.push_str("{\"arg\":");
    s.push_str(arg);
    s.push_str(",\"data\":[[\"");
    push_i64(&mut s, k.open_time);
    for v in [
        &k.open, &k.high, &k.low, &k.close, &k.volume, vol_ccy, vol_quote,
    ] {
        s.push_str("\",\"");
        s.push_str(v);
    }
    s.push_str(if closed { "\",\"1\"]]}" } else { "\",\"0\"]]}" });
    s
}

/// A `books` message: the levels, then `ts`, `checksum`, `prevSeqId` and `seqId`.
struct BookMsg<'a> {
    snapshot: bool,
    bids: &'a [(i64, i64)],
    asks: &'a [(i64, i64)],
    ts: i64,
    checksum: i32,
    prev_seq: i64,
    seq: i64,
}

fn book_message(arg: &str, m: &Market, b: BookMsg<'_>) -> String {
    let BookMsg {
        snapshot,
        bids,
        asks,
        ts,
        checksum,
        prev_seq,
        seq,
    } = b;
    let mut s = String::with_capacity(64 + 40 * (bids.len() + asks.len()));
    s.push_str("{\"arg\":");
    s.push_str(arg);
    s.push_str(if snapshot {
        ",\"action\":\"snapshot\",\"data\":[{\"asks\":"
    } else {
        ",\"action\":\"update\",\"data\":[{\"asks\":"
    });
    push_levels(&mut s, m, asks);
    s.push_str(",\"bids\":");
    push_levels(&mut s, m, bids);
    s.push_str(",\"ts\":\"");
    push_i64(&mut s, ts);
    s.push_str("\",\"checksum\":");
    push_i64(&mut s, i64::from(checksum));
    s.push_str(",\"prevSeqId\":");
    push_i64(&mut s, prev_seq);
    s.push_str(",\"seqId\":");
    push_i64(&mut s, seq);
    s.push_str("}]}");
    s
}

/// Appends the messages of `sub` due at `ctx.now`; `drop_trades` is the connection's claimed
/// trade-dropping fault.
fn poll(sub: &mut Sub, ctx: &PollCtx<'_>, drop_trades: &mut u32, out: &mut Vec<String>) {
    let Sub {
        inst_id,
        arg,
        market: m,
        contracts,
        inverse,
        state,
        ..
    } = sub;
    let (arg, m) = (arg.as_str(), &*m);
    match state {
        SubState::Trades { next_raw } => {
            if *next_raw == u64::MAX {
                return;
            }
            let mut rows = Vec::new();
            ctx.data
                .raw_from_id(m, *next_raw, ctx.now, MAX_EVENTS_PER_POLL, &mut rows);
            let Some(last) = rows.last() else {
                return;
            };
            *next_raw = last.id + 1;
            if let Some(n) = ctx.hub.claim_drop_trades(inst_id) {
                *drop_trades += n;
            }
            for t in &rows {
                if *drop_trades > 0 {
                    *drop_trades -= 1;
                    ctx.hub.bump(|s| s.trade_messages_dropped += 1);
                    continue;
                }
                out.push(trade_message(arg, inst_id, t));
            }
        }
        SubState::Candle {
            interval,
            open,
            last_update,
        } => {
            let iv = *interval;
            if ctx.now < *open {
                // The clock was put back: follow it.
                *open = iv.align_down(ctx.now);
            }
            let kind = (*contracts, *inverse);
            let mut closed = 0;
            while ctx.now > iv.close_time(*open) {
                if closed == MAX_EVENTS_PER_POLL {
                    // Far behind: skip to the present.
                    *open = iv.align_down(ctx.now);
                    break;
                }
                out.push(candle_message(arg, m, kind, ctx, (iv, *open), true));
                *open = iv.next_open(*open);
                closed += 1;
            }
            if ctx.now.saturating_sub(*last_update) >= ctx.candle_update_ms {
                *last_update = ctx.now;
                out.push(candle_message(arg, m, kind, ctx, (iv, *open), false));
            }
        }
        SubState::Books { last } => {
            let cur = data::book_slot(ctx.now);
            let ts = cur * data::BOOK_SLOT_MS;
            let sum_of = |book: &data::Book| {
                if ctx.book_checksum {
                    book_checksum(book)
                } else {
                    0
                }
            };
            let Some((slot, book, seq)) = last.as_mut() else {
                let book = book_at(m, cur);
                let seq = seq_id(m, cur);
                out.push(book_message(
                    arg,
                    m,
                    BookMsg {
                        snapshot: true,
                        bids: &book.bids,
                        asks: &book.asks,
                        ts,
                        checksum: sum_of(&book),
                        prev_seq: -1,
                        seq,
                    },
                ));
                *last = Some((cur, book, seq));
                return;
            };
            if cur <= *slot {
                return;
            }
            *slot = cur;
            let new = book_at(m, cur);
            let bids = data::side_diff(&book.bids, &new.bids, true);
            let asks = data::side_diff(&book.asks, &new.asks, false);
            if bids.is_empty() && asks.is_empty() {
                return;
            }
            let prev = *seq;
            *seq = seq_id(m, cur);
            let mut checksum = sum_of(&new);
            *book = new;
            if ctx.hub.take_break() {
                // Swallowed: the next update's prevSeqId is this one's seqId.
                ctx.hub.bump(|s| s.seq_breaks += 1);
                return;
            }
            if ctx.hub.take_corrupt() {
                checksum ^= 0x5555_5555;
                ctx.hub.bump(|s| s.checksums_corrupted += 1);
            }
            out.push(book_message(
                arg,
                m,
                BookMsg {
                    snapshot: false,
                    bids: &bids,
                    asks: &asks,
                    ts,
                    checksum,
                    prev_seq: prev,
                    seq: *seq,
                },
            ));
        }
        SubState::Bbo {
            last_slot,
            last_top,
        } => {
            let cur = data::book_slot(ctx.now);
            if cur == *last_slot {
                return;
            }
            *last_slot = cur;
            let top = data::book_top(m, cur);
            if *last_top == Some(top) {
                return;
            }
            *last_top = Some(top);
            let (bid, ask) = top;
            let mut s = String::with_capacity(220);
            s.push_str("{\"arg\":");
            s.push_str(arg);
            s.push_str(",\"data\":[{\"asks\":");
            push_levels(&mut s, m, &[ask]);
            s.push_str(",\"bids\":");
            push_levels(&mut s, m, bid.as_slice());
            s.push_str(",\"ts\":\"");
            push_i64(&mut s, cur * data::BOOK_SLOT_MS);
            s.push_str("\",\"seqId\":");
            push_i64(&mut s, seq_id(m, cur));
            s.push_str("}]}");
            out.push(s);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The upgrade

/// An accepted upgrade waiting for hyper to hand over the connection.
pub(crate) struct Pending {
    on_upgrade: OnUpgrade,
    hub: Arc<OkxWsHub>,
    service: Service,
}

fn plain(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn header_has_token(req: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Answers a request under `/okx-ws` (`rest` is the path after it): the 101 response and the
/// session to serve, or the refusal (404 unknown path, 400 not an upgrade, 429 over the
/// connection limit).
pub(crate) fn upgrade(
    hub: &Arc<OkxWsHub>,
    req: &mut Request<Incoming>,
    peer: IpAddr,
    rest: &str,
) -> (Response<Full<Bytes>>, Option<Pending>) {
    let service = match rest {
        "/ws/v5/public" => Service::Public,
        "/ws/v5/business" => Service::Business,
        _ => return (plain(404, "{\"code\":\"404\",\"msg\":\"Not Found\"}"), None),
    };
    let key = req.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let handshake_ok = req.method() == Method::GET
        && header_has_token(req, UPGRADE, "websocket")
        && header_has_token(req, CONNECTION, "upgrade")
        && req
            .headers()
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = key.filter(|_| handshake_ok) else {
        let body = "{\"code\":\"400\",\"msg\":\"This endpoint only accepts WebSocket upgrades.\"}";
        return (plain(400, body), None);
    };
    if !hub.admit(peer, hub.config().max_connections_per_sec) {
        hub.bump(|s| s.connection_attempts_rejected += 1);
        let body = "{\"code\":\"50011\",\"msg\":\"Too Many Requests\"}";
        return (plain(429, body), None);
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    hub.bump(|s| s.connections_opened += 1);
    let pending = Pending {
        on_upgrade: hyper::upgrade::on(req),
        hub: hub.clone(),
        service,
    };
    (resp, Some(pending))
}

/// Runs the session of an accepted upgrade until it ends.
pub(crate) async fn serve(p: Pending) {
    let upgraded = match p.on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "okx websocket upgrade failed");
            return;
        }
    };
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let hub = p.hub;
    hub.bump(|s| s.connections_open += 1);
    let n = hub.next_conn.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let session = Session {
        conn_id: format!("{:08x}", data::mix(n ^ SALT_ORDERS) as u32),
        hub: hub.clone(),
        service: p.service,
        subs: Vec::new(),
        liq_subs: Vec::new(),
        requests: VecDeque::new(),
        last_in: now,
        last_out: now,
        out: Outgoing::default(),
        drop_trades: 0,
    };
    session.run(ws).await;
    hub.bump(|s| s.connections_open = s.connections_open.saturating_sub(1));
}

/// Why a session ended.
enum End {
    ClientGone,
    /// Dropped without a close frame.
    Abrupt,
    /// A close frame, then the end.
    Close(u16, &'static str),
}

struct Session {
    hub: Arc<OkxWsHub>,
    service: Service,
    conn_id: String,
    subs: Vec<Sub>,
    /// `liquidation-orders` subscriptions (one per instrument type).
    liq_subs: Vec<LiqSub>,
    /// Times (simulated ms) of the subscribe/unsubscribe requests of the last hour.
    requests: VecDeque<i64>,
    /// When the client last sent something, and the server last pushed something.
    last_in: Instant,
    last_out: Instant,
    out: Outgoing,
    /// Trade messages this connection still swallows ([`SimServer::okx_ws_drop_trades`]).
    drop_trades: u32,
}

impl Session {
    async fn run(mut self, mut ws: Ws) {
        let mut disconnect = self.hub.disconnect.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    None | Some(Err(_)) => break End::ClientGone,
                    Some(Ok(msg)) => {
                        if let Some(end) = self.on_message(&mut ws, msg).await {
                            break end;
                        }
                    }
                },
                _ = tick.tick() => {
                    if let Some(end) = self.on_tick(&mut ws).await {
                        break end;
                    }
                }
                _ = disconnect.recv() => break End::Abrupt,
            }
        };
        drop(disconnect);
        match end {
            End::ClientGone => {}
            End::Abrupt => {
                self.hub.bump(|s| s.forced_disconnects += 1);
                drop(ws);
            }
            End::Close(code, reason) => {
                if self.out.drain(&mut ws).await.is_err() {
                    return;
                }
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    if ws.close(Some(frame)).await.is_ok() {
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                })
                .await;
            }
        }
    }

    /// Queues a text message; `Err` when the client is gone.
    async fn send(&mut self, ws: &mut Ws, text: String) -> Result<(), ()> {
        self.send_counted(ws, text, false).await
    }

    /// [`send`](Self::send), counting a `liquidation-orders` push as one.
    async fn send_counted(&mut self, ws: &mut Ws, text: String, liq: bool) -> Result<(), ()> {
        self.out.lag = self.hub.config.borrow().latency;
        self.out.feed(ws, Message::text(text)).await?;
        self.last_out = Instant::now();
        self.hub.bump(|s| {
            s.messages_sent += 1;
            s.liquidation_messages_sent += u64::from(liq);
        });
        Ok(())
    }

    async fn on_message(&mut self, ws: &mut Ws, msg: Message) -> Option<End> {
        self.last_in = Instant::now();
        let text = match msg {
            Message::Text(t) => t.as_str().to_string(),
            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            Message::Ping(_) => {
                // tungstenite queued the pong; send it now.
                return ws.flush().await.is_err().then_some(End::ClientGone);
            }
            Message::Pong(_) | Message::Close(_) | Message::Frame(_) => return None,
        };
        let replies = if text == "ping" {
            self.hub.bump(|s| s.pings_received += 1);
            vec!["pong".to_string()]
        } else {
            self.request(&text)
        };
        for reply in replies {
            if self.send(ws, reply).await.is_err() {
                return Some(End::ClientGone);
            }
        }
        ws.flush().await.is_err().then_some(End::ClientGone)
    }

    async fn on_tick(&mut self, ws: &mut Ws) -> Option<End> {
        let cfg = self.hub.config();
        if self.out.release(ws).await.is_err() {
            return Some(End::ClientGone);
        }
        let idle_since = self.last_in.max(self.last_out);
        if Instant::now() - idle_since >= cfg.idle_timeout {
            self.hub.bump(|s| s.idle_closes += 1);
            return Some(End::Close(IDLE_CLOSE_CODE, IDLE_CLOSE_REASON));
        }
        if self.subs.is_empty() && self.liq_subs.is_empty() {
            return None;
        }
        let data = self.hub.data.borrow().clone();
        let ctx = PollCtx {
            data: &data,
            now: self.hub.clock.now_ms(),
            candle_update_ms: cfg.candle_update.as_millis().min(i64::MAX as u128) as i64,
            book_checksum: cfg.book_checksum,
            hub: &self.hub,
        };
        let mut msgs = Vec::new();
        for sub in &mut self.subs {
            poll(sub, &ctx, &mut self.drop_trades, &mut msgs);
        }
        // Liquidation pushes come last: `msgs[liq_from..]`.
        let liq_from = msgs.len();
        for sub in &mut self.liq_subs {
            sub.poll(ctx.now, &mut msgs);
        }
        if msgs.is_empty() {
            return None;
        }
        for (k, msg) in msgs.into_iter().enumerate() {
            if self.send_counted(ws, msg, k >= liq_from).await.is_err() {
                return Some(End::ClientGone);
            }
        }
        ws.flush().await.is_err().then_some(End::ClientGone)
    }

    /// `{"id":…,"event":"error","code":"…","msg":"…","connId":"…"}`
    fn error(&self, id: Option<&str>, code: &str, msg: &str) -> String {
        self.hub.bump(|s| s.subscriptions_refused += 1);
        let mut s = String::with_capacity(96 + msg.len());
        s.push('{');
        if let Some(id) = id {
            s.push_str("\"id\":");
            push_json_str(&mut s, id);
            s.push(',');
        }
        s.push_str("\"event\":\"error\",\"code\":\"");
        s.push_str(code);
        s.push_str("\",\"msg\":");
        push_json_str(&mut s, msg);
        s.push_str(",\"connId\":\"");
        s.push_str(&self.conn_id);
        s.push_str("\"}");
        s
    }

    /// `{"id":…,"event":"subscribe","arg":{…},"connId":"…"}`
    fn event(&self, id: Option<&str>, event: &str, arg: &str) -> String {
        let mut s = String::with_capacity(96 + arg.len());
        s.push('{');
        if let Some(id) = id {
            s.push_str("\"id\":");
            push_json_str(&mut s, id);
            s.push(',');
        }
        s.push_str("\"event\":\"");
        s.push_str(event);
        s.push_str("\",\"arg\":");
        s.push_str(arg);
        s.push_str(",\"connId\":\"");
        s.push_str(&self.conn_id);
        s.push_str("\"}");
        s
    }

    /// Answers a request other than `ping`: one message per arg, or one error.
    fn request(&mut self, text: &str) -> Vec<String> {
        let invalid =
            |s: &Session| vec![s.error(None, "60012", &format!("Invalid request: {text}"))];
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
            return invalid(self);
        };
        let id = match obj.get("id") {
            None => None,
            Some(Value::String(s))
                if !s.is_empty()
                    && s.len() <= 32
                    && s.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Some(s.clone())
            }
            Some(_) => return invalid(self),
        };
        let id = id.as_deref();
        let Some(op) = obj.get("op").and_then(Value::as_str) else {
            return vec![self.error(id, "60012", &format!("Invalid request: {text}"))];
        };
        let subscribe = match op {
            "subscribe" => true,
            "unsubscribe" => false,
            other => return vec![self.error(id, "60019", &format!("Invalid op: {other}"))],
        };
        let limit = self.hub.config().max_requests_per_hour;
        if limit > 0 {
            let now = self.hub.clock.now_ms();
            while self.requests.front().is_some_and(|&t| now - t >= 3_600_000) {
                self.requests.pop_front();
            }
            if self.requests.len() >= limit as usize {
                self.hub.bump(|s| s.requests_too_frequent += 1);
                return vec![self.error(id, "60014", "Requests too frequent")];
            }
            self.requests.push_back(now);
        }
        let Some(args) = obj
            .get("args")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        else {
            return vec![self.error(id, "60012", &format!("Invalid request: {text}"))];
        };
        let data = self.hub.data.borrow().clone();
        let now = self.hub.clock.now_ms();
        let mut replies = Vec::with_capacity(args.len());
        for arg in args {
            let channel = arg.get("channel").and_then(Value::as_str);
            if channel == Some(LIQUIDATION_CHANNEL) {
                replies.push(self.liquidation_request(id, arg, subscribe, now));
                continue;
            }
            let inst_id = arg.get("instId").and_then(Value::as_str);
            let (Some(name), Some(inst_id)) = (channel, inst_id) else {
                let what = match (channel, inst_id) {
                    (Some(c), None) => format!("channel:{c}"),
                    _ => format!("{arg}"),
                };
                replies.push(self.error(id, "60018", &wrong_url(&what)));
                continue;
            };
            let parsed = Channel::parse(name).filter(|c| c.service() == self.service);
            let (Some(channel), Some(market)) = (parsed, market_of(inst_id)) else {
                let what = format!("channel:{name},instId:{inst_id}");
                replies.push(self.error(id, "60018", &wrong_url(&what)));
                continue;
            };
            let existing = self
                .subs
                .iter()
                .position(|s| s.channel == name && s.inst_id == inst_id);
            let arg = arg_json(name, inst_id);
            if subscribe {
                let sub = Sub::new(channel, name, inst_id, market, &data, now);
                match existing {
                    // A client resyncs a book by subscribing again: a new snapshot.
                    Some(k) if channel == Channel::Books => self.subs[k] = sub,
                    Some(_) => {}
                    None => self.subs.push(sub),
                }
                self.hub.bump(|s| s.subscriptions += 1);
            } else if let Some(k) = existing {
                self.subs.remove(k);
            }
            let event = if subscribe {
                "subscribe"
            } else {
                "unsubscribe"
            };
            replies.push(self.event(id, event, &arg));
        }
        replies
    }
}

impl Session {
    /// Answers one `liquidation-orders` arg: subscribed by `instType` `SWAP` or `FUTURES` on
    /// `/public`; anything else is 60018.
    fn liquidation_request(
        &mut self,
        id: Option<&str>,
        arg: &Value,
        subscribe: bool,
        now: i64,
    ) -> String {
        let inst_type = arg.get("instType").and_then(Value::as_str);
        let kind = inst_type
            .and_then(liq::okx_liq_type)
            .filter(|_| self.service == Service::Public);
        let Some(kind) = kind else {
            let what = match inst_type {
                Some(t) => format!("channel:{LIQUIDATION_CHANNEL},instType:{t}"),
                None => format!("channel:{LIQUIDATION_CHANNEL}"),
            };
            return self.error(id, "60018", &wrong_url(&what));
        };
        let existing = self.liq_subs.iter().position(|s| s.kind == kind);
        if subscribe {
            if existing.is_none() {
                self.liq_subs.push(LiqSub::new(kind, now));
            }
            self.hub.bump(|s| s.subscriptions += 1);
        } else if let Some(k) = existing {
            self.liq_subs.remove(k);
        }
        let event = if subscribe {
            "subscribe"
        } else {
            "unsubscribe"
        };
        self.event(id, event, &liquidation_arg(kind))
    }
}

/// OKX's 60018 message.
fn wrong_url(what: &str) -> String {
    format!(
        "Wrong URL or {what} doesn't exist. Please use the correct URL, channel and parameters \
         referring to API document."
    )
}

// ---------------------------------------------------------------------------------------------
// `/sim/okx_ws`

/// The JSON of `/sim/okx_ws`: durations in ms; a POST may send any subset, plus one-shot
/// faults (`"drop_trades":{"inst_id":"BTC-USDT","messages":3}`, `"corrupt_next_checksum":true`,
/// `"break_next_seq":true`).
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections_per_sec: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_requests_per_hour: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candle_update_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    book_checksum: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u64>,
    #[serde(skip_serializing)]
    drop_trades: Option<DropTradesJson>,
    #[serde(skip_serializing)]
    corrupt_next_checksum: Option<bool>,
    #[serde(skip_serializing)]
    break_next_seq: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DropTradesJson {
    inst_id: String,
    messages: u32,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn config_json(c: &OkxWsConfig) -> String {
    let j = ConfigJson {
        idle_timeout_ms: Some(ms(c.idle_timeout)),
        max_connections_per_sec: Some(c.max_connections_per_sec),
        max_requests_per_hour: Some(c.max_requests_per_hour),
        candle_update_ms: Some(ms(c.candle_update)),
        book_checksum: Some(c.book_checksum),
        latency_ms: Some(ms(c.latency)),
        ..ConfigJson::default()
    };
    serde_json::to_string(&j).unwrap_or_else(|_| "{}".into())
}

/// Answers `/sim/okx_ws…` (`name` is the part after `/sim/`): status and JSON body.
pub(crate) async fn sim_request(
    hub: &OkxWsHub,
    name: &str,
    req: Request<Incoming>,
) -> (u16, String) {
    let bad = |msg: String| {
        (
            400,
            serde_json::json!({ "code": -1102, "msg": msg }).to_string(),
        )
    };
    match (name, req.method().clone()) {
        ("okx_ws", Method::GET) => (200, config_json(&hub.config())),
        ("okx_ws", Method::POST | Method::PUT) => {
            let body = match Limited::new(req.into_body(), 1 << 16).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return bad(format!("could not read body: {e}")),
            };
            let j: ConfigJson = match serde_json::from_slice(&body) {
                Ok(j) => j,
                Err(e) => return bad(format!("invalid okx_ws JSON: {e}")),
            };
            let mut c = hub.config();
            let d = Duration::from_millis;
            if let Some(v) = j.idle_timeout_ms {
                c.idle_timeout = d(v);
            }
            if let Some(v) = j.max_connections_per_sec {
                c.max_connections_per_sec = v;
            }
            if let Some(v) = j.max_requests_per_hour {
                c.max_requests_per_hour = v;
            }
            if let Some(v) = j.candle_update_ms {
                c.candle_update = d(v);
            }
            if let Some(v) = j.book_checksum {
                c.book_checksum = v;
            }
            if let Some(v) = j.latency_ms {
                c.latency = d(v);
            }
            hub.set_config(c.clone());
            if let Some(t) = j.drop_trades {
                hub.drop_trades(&t.inst_id, t.messages);
            }
            if j.corrupt_next_checksum == Some(true) {
                hub.corrupt_next_checksum();
            }
            if j.break_next_seq == Some(true) {
                hub.break_next_seq();
            }
            (200, config_json(&c))
        }
        ("okx_ws/disconnect", Method::POST) => {
            (200, format!("{{\"connections\":{}}}", hub.disconnect_all()))
        }
        ("okx_ws/stats", Method::GET) => (
            200,
            serde_json::to_string(&hub.stats()).unwrap_or_else(|_| "{}".into()),
        ),
        _ => (404, "{\"code\":-1,\"msg\":\"Not found\"}".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::{connect_async, MaybeTlsStream};

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    const WAIT: Duration = Duration::from_secs(10);

    async fn start(cfg: OkxWsConfig) -> SimServer {
        let server = SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        server.set_okx_ws_config(cfg);
        server
    }

    /// No limit on connections: tests open several at once.
    fn relaxed() -> OkxWsConfig {
        OkxWsConfig {
            max_connections_per_sec: 0,
            ..OkxWsConfig::default()
        }
    }

    async fn connect(server: &SimServer, service: &str) -> Client {
        let url = format!("{}/ws/v5/{service}", server.okx_ws_url());
        connect_async(url).await.unwrap().0
    }

    async fn send(c: &mut Client, text: &str) {
        c.send(Message::text(text.to_string())).await.unwrap();
    }

    async fn subscribe(c: &mut Client, channel: &str, inst_id: &str) {
        let req = format!(
            "{{\"op\":\"subscribe\",\"args\":[{{\"channel\":\"{channel}\",\"instId\":\"{inst_id}\"}}]}}"
        );
        send(c, &req).await;
    }

    /// The next text message, within 10 s.
    async fn next_text(c: &mut Client) -> String {
        loop {
            match tokio::time::timeout(WAIT, c.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return t.as_str().to_string(),
                Ok(Some(Ok(_))) => {}
                other => panic!("no text message: {other:?}"),
            }
        }
    }

    async fn next_json(c: &mut Client) -> Value {
        let t = next_text(c).await;
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"))
    }

    /// The next push of `channel` (answers and other channels' pushes skipped).
    async fn next_push(c: &mut Client, channel: &str) -> Value {
        loop {
            let v = next_json(c).await;
            if v["arg"]["channel"] == channel && v.get("event").is_none() {
                return v;
            }
        }
    }

    /// A GET on a fresh connection: status and body.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let raw = String::from_utf8(raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond() {
            assert!(Instant::now() < deadline, "not within 10 s: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn s(v: &Value) -> &str {
        v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
    }

    fn num(v: &Value) -> i64 {
        s(v).parse().unwrap()
    }

    #[test]
    fn okx_ws_checksum_of_the_documented_examples() {
        // The order book channel's checksum section (before its deprecation): more than 25
        // levels (two shown), and fewer asks than bids.
        let bids = [("3366.1", "7"), ("3366", "6")];
        let asks = [("3366.8", "9"), ("3368", "8")];
        assert_eq!(
            checksum_string(&bids, &asks),
            "3366.1:7:3366.8:9:3366:6:3368:8"
        );
        assert_eq!(checksum(&bids, &asks), -1_881_014_294);
        let bids = [("3366.1", "7")];
        let asks = [("3366.8", "9"), ("3368", "8"), ("3372", "8")];
        assert_eq!(
            checksum_string(&bids, &asks),
            "3366.1:7:3366.8:9:3368:8:3372:8"
        );
        assert_eq!(checksum(&bids, &asks), 831_078_360);
        // Only 25 levels a side count.
        let many: Vec<(String, String)> = (0..30)
            .map(|i| (format!("{}", 100 - i), "1".into()))
            .collect();
        assert_eq!(checksum_string(&many, &[]).split(':').count(), 50);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            (dec(3_000_000_000_000), dec(1_000_000), dec(0)),
            ("30000".into(), "0.01".into(), "0".into())
        );
    }

    #[test]
    fn okx_ws_channels_and_services() {
        assert_eq!(Channel::parse("trades"), Some(Channel::Trades));
        assert_eq!(
            Channel::parse("candle1s"),
            Some(Channel::Candle(Interval::S1))
        );
        assert_eq!(
            Channel::parse("candle1H"),
            Some(Channel::Candle(Interval::H1))
        );
        assert_eq!(
            Channel::parse("candle1Dutc"),
            Some(Channel::Candle(Interval::D1))
        );
        for unserved in [
            "candle1D", "candle6H", "candle1h", "tickers", "books5", "candle",
        ] {
            assert_eq!(Channel::parse(unserved), None, "{unserved}");
        }
        assert_eq!(
            Channel::parse("candle1m").unwrap().service(),
            Service::Business
        );
        assert_eq!(Channel::parse("books").unwrap().service(), Service::Public);
    }

    /// Live trades are exactly the trades `okx::trades` and history-trades give for their span,
    /// in trade-id order, with no gap nor duplicate.
    #[tokio::test]
    async fn okx_ws_trades_equal_rest_trades() {
        let server = start(relaxed()).await;
        let mut c = connect(&server, "public").await;
        send(
            &mut c,
            r#"{"id":"t1","op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"trades","instId":"ETH-USDT-SWAP"}]}"#,
        )
        .await;
        for inst in ["BTC-USDT", "ETH-USDT-SWAP"] {
            let ack = next_json(&mut c).await;
            assert_eq!(ack["id"], "t1");
            assert_eq!(ack["event"], "subscribe");
            assert_eq!(
                ack["arg"],
                serde_json::json!({"channel":"trades","instId":inst})
            );
            assert_eq!(s(&ack["connId"]).len(), 8);
        }
        let start_ms = server.clock().now_ms();
        // Five seconds of trades at once instead of waiting for them.
        server.clock().advance(Duration::from_secs(5));
        let mut got: HashMap<String, Vec<Value>> = HashMap::new();
        while got
            .values()
            .map(|v| v.last().map_or(0, |t| num(&t["ts"])))
            .min()
            .unwrap_or(0)
            < start_ms + 4_000
            || got.len() < 2
        {
            let v = next_push(&mut c, "trades").await;
            let data = v["data"].as_array().unwrap();
            assert_eq!(data.len(), 1);
            let t = &data[0];
            assert_eq!(t["instId"], v["arg"]["instId"]);
            assert_eq!(
                (t["count"].as_str(), t["source"].as_str()),
                (Some("1"), Some("0"))
            );
            assert_eq!(t["seqId"].as_i64().unwrap(), num(&t["tradeId"]));
            got.entry(s(&t["instId"]).to_string())
                .or_default()
                .push(t.clone());
        }
        let data = server.data();
        for (inst, trades) in &got {
            let (first, last) = (&trades[0], trades.last().unwrap());
            let want: Vec<Value> =
                okx::trades(&data, inst, num(&first["ts"]), num(&last["ts"]) + 1)
                    .unwrap()
                    .into_iter()
                    .filter(|t| {
                        let span = num(&first["tradeId"])..=num(&last["tradeId"]);
                        span.contains(&(t.trade_id as i64))
                    })
                    .map(|t| {
                        serde_json::json!({
                            "instId": inst, "tradeId": t.trade_id.to_string(), "px": t.px,
                            "sz": t.sz, "side": t.side, "ts": t.time.to_string(), "count": "1",
                            "source": "0", "seqId": t.trade_id,
                        })
                    })
                    .collect();
            assert!(want.len() > 5, "{inst}: {}", want.len());
            assert_eq!(trades, &want, "{inst}");
            // And history-trades answers the same trades (newest first).
            let path = format!(
                "/okx/api/v5/market/history-trades?instId={inst}&type=2&after={}&limit=100",
                num(&last["ts"]) + 1
            );
            let (status, body) = get(server.local_addr(), &path).await;
            assert_eq!(status, 200, "{body}");
            let rest: Value = serde_json::from_str(&body).unwrap();
            let mut matched = 0;
            for r in rest["data"].as_array().unwrap() {
                if let Some(t) = trades.iter().find(|t| t["tradeId"] == r["tradeId"]) {
                    for k in ["px", "sz", "side", "ts", "instId"] {
                        assert_eq!(t[k], r[k], "{inst} {k}");
                    }
                    matched += 1;
                }
            }
            assert!(matched > 5, "{inst}: {matched}");
        }
    }

    /// A dropped run of trade messages is a gap of exactly that many trades on one connection.
    #[tokio::test]
    async fn okx_ws_dropped_trade_messages_leave_a_gap() {
        let server = start(relaxed()).await;
        let mut c = connect(&server, "public").await;
        subscribe(&mut c, "trades", "BTC-USDT").await;
        assert_eq!(next_json(&mut c).await["event"], "subscribe");
        server.clock().advance(Duration::from_secs(1));
        let first = next_push(&mut c, "trades").await["data"][0].clone();
        // Set after a trade arrived, so the gap is between received trades.
        server.okx_ws_drop_trades("BTC-USDT", 3);
        server.clock().advance(Duration::from_secs(5));
        let mut ids = vec![num(&first["tradeId"]) as u64];
        let start_ms = num(&first["ts"]);
        let mut last_ts = start_ms;
        while last_ts < start_ms + 4_000 {
            let t = &next_push(&mut c, "trades").await["data"][0];
            ids.push(num(&t["tradeId"]) as u64);
            last_ts = num(&t["ts"]);
        }
        let all: Vec<u64> = okx::trades(&server.data(), "BTC-USDT", start_ms, last_ts + 1)
            .unwrap()
            .into_iter()
            .map(|t| t.trade_id)
            .filter(|id| (ids[0]..=*ids.last().unwrap()).contains(id))
            .collect();
        assert_eq!(all[0], ids[0]);
        let same = ids.iter().zip(&all).take_while(|(a, b)| a == b).count();
        assert!(same < ids.len(), "no gap in {ids:?}");
        assert_eq!(&ids[same..], &all[same + 3..]);
        assert_eq!(server.okx_ws_stats().trade_messages_dropped, 3);
    }

    /// Candles close exactly once each with `confirm` 1 and the values of history-candles;
    /// they are served on `/business` only.
    #[tokio::test]
    async fn okx_ws_candle_confirm_equals_rest_candle() {
        let server = start(relaxed()).await;
        let wall = server.clock().now_ms();
        let at = wall.div_euclid(60_000) * 60_000 - 600_000 + 30_000;
        server.clock().set_now_ms(at);
        let mut c = connect(&server, "business").await;
        send(
            &mut c,
            r#"{"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"},{"channel":"candle1m","instId":"BTC-USD-SWAP"}]}"#,
        )
        .await;
        for _ in 0..2 {
            assert_eq!(next_json(&mut c).await["event"], "subscribe");
        }
        let open0 = at.div_euclid(60_000) * 60_000;
        let first = next_push(&mut c, "candle1m").await;
        let row = first["data"][0].as_array().unwrap();
        assert_eq!((num(&row[0]), s(&row[8])), (open0, "0"));
        server.clock().advance(Duration::from_secs(180));
        let mut closed: HashMap<String, Vec<Value>> = HashMap::new();
        let mut current: HashMap<String, i64> = HashMap::new();
        while current.len() < 2 || current.values().any(|&t| t < open0 + 180_000) {
            let v = next_push(&mut c, "candle1m").await;
            let inst = s(&v["arg"]["instId"]).to_string();
            let row = v["data"][0].clone();
            match s(&row[8]) {
                "1" => closed.entry(inst).or_default().push(row),
                "0" => {
                    current.insert(inst, num(&row[0]));
                }
                other => panic!("confirm {other}"),
            }
        }
        for inst in ["BTC-USDT", "BTC-USD-SWAP"] {
            let rows = &closed[inst];
            let opens: Vec<i64> = rows.iter().map(|r| num(&r[0])).collect();
            assert_eq!(
                opens,
                vec![open0, open0 + 60_000, open0 + 120_000],
                "{inst}"
            );
            for r in rows {
                let path = format!(
                    "/okx/api/v5/market/history-candles?instId={inst}&bar=1m&after={}&limit=1",
                    num(&r[0]) + 1
                );
                let (status, body) = get(server.local_addr(), &path).await;
                assert_eq!(status, 200, "{body}");
                let rest: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(&rest["data"][0], r, "{inst}");
            }
        }
    }

    /// Wrong service, unknown instruments and channels, bad requests: OKX's error events.
    #[tokio::test]
    async fn okx_ws_refusals_and_unsubscribe() {
        let server = start(relaxed()).await;
        let mut public = connect(&server, "public").await;
        send(
            &mut public,
            r#"{"id":"a1","op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"},{"channel":"trades","instId":"FOO-USD-SWAP"},{"channel":"trades","instId":"BTCUSDT"},{"channel":"tickers","instId":"BTC-USDT"},{"channel":"books","instId":"BTC-USDT"}]}"#,
        )
        .await;
        for what in [
            "channel:candle1m,instId:BTC-USDT",
            "channel:trades,instId:FOO-USD-SWAP",
            "channel:trades,instId:BTCUSDT",
            "channel:tickers,instId:BTC-USDT",
        ] {
            let e = next_json(&mut public).await;
            assert_eq!(e["event"], "error", "{e}");
            assert_eq!(
                (e["code"].as_str(), e["id"].as_str()),
                (Some("60018"), Some("a1"))
            );
            assert_eq!(s(&e["msg"]), wrong_url(what));
            assert_eq!(s(&e["connId"]).len(), 8);
        }
        let ok = next_json(&mut public).await;
        assert_eq!(
            (ok["event"].as_str(), ok["arg"]["channel"].as_str()),
            (Some("subscribe"), Some("books"))
        );
        let mut business = connect(&server, "business").await;
        subscribe(&mut business, "trades", "BTC-USDT").await;
        let e = next_json(&mut business).await;
        assert_eq!((e["code"].as_str(), e.get("id")), (Some("60018"), None));
        for (req, code) in [
            ("{not json", "60012"),
            (r#"{"op":"subscribe","argss":[]}"#, "60012"),
            (r#"{"op":"subscribe","args":[]}"#, "60012"),
            (r#"{"op":"login","args":[]}"#, "60019"),
            (r#"{"id":"bad-id!","op":"subscribe","args":[]}"#, "60012"),
        ] {
            send(&mut business, req).await;
            let e = next_json(&mut business).await;
            assert_eq!(e["code"], code, "{req}: {e}");
        }
        // Unsubscribing stops the pushes: the answer, then nothing but pongs.
        send(
            &mut public,
            r#"{"op":"unsubscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}"#,
        )
        .await;
        loop {
            let v = next_json(&mut public).await;
            if v["event"] == "unsubscribe" {
                assert_eq!(
                    v["arg"],
                    serde_json::json!({"channel":"books","instId":"BTC-USDT"})
                );
                break;
            }
        }
        for _ in 0..3 {
            send(&mut public, "ping").await;
            assert_eq!(next_text(&mut public).await, "pong");
        }
        let stats = server.okx_ws_stats();
        assert_eq!(stats.subscriptions, 1);
        assert_eq!(stats.subscriptions_refused, 4 + 1 + 5);
    }

    /// `ping` is answered `pong`; a connection idle in both directions is closed with 4004
    /// after the idle timeout, one that pings or gets data is not.
    #[tokio::test]
    async fn okx_ws_ping_pong_and_idle_close() {
        let timeout = Duration::from_millis(400);
        let server = start(OkxWsConfig {
            idle_timeout: timeout,
            ..relaxed()
        })
        .await;
        let opened = Instant::now();
        let mut idle = connect(&server, "public").await;
        let mut pinger = connect(&server, "business").await;
        let mut fed = connect(&server, "public").await;
        subscribe(&mut fed, "books", "BTC-USDT").await;
        let mut pace = tokio::time::interval(timeout / 4);
        let mut pongs = 0;
        let mut idle_closed = None;
        let deadline = Instant::now() + WAIT;
        // Ping and read the fed connection until the idle one was closed three timeouts ago.
        while idle_closed.is_none_or(|t: Instant| t.elapsed() < 3 * timeout) {
            assert!(Instant::now() < deadline, "the idle connection stayed open");
            pace.tick().await;
            send(&mut pinger, "ping").await;
            assert_eq!(next_text(&mut pinger).await, "pong");
            pongs += 1;
            while let Ok(msg) = tokio::time::timeout(Duration::from_millis(1), fed.next()).await {
                assert!(matches!(msg, Some(Ok(Message::Text(_)))), "{msg:?}");
            }
            if idle_closed.is_some() {
                continue;
            }
            if let Ok(msg) = tokio::time::timeout(Duration::from_millis(1), idle.next()).await {
                let Some(Ok(Message::Close(Some(frame)))) = msg else {
                    panic!("idle connection got {msg:?}");
                };
                assert_eq!(u16::from(frame.code), IDLE_CLOSE_CODE);
                assert_eq!(frame.reason.as_str(), IDLE_CLOSE_REASON);
                assert!(opened.elapsed() >= timeout);
                idle_closed = Some(Instant::now());
            }
        }
        let stats = server.okx_ws_stats();
        assert_eq!(stats.idle_closes, 1);
        assert_eq!(stats.pings_received, pongs);
        assert_eq!(stats.connections_open, 2);
        // With latency, the pong comes that much later.
        server.set_okx_ws_config(OkxWsConfig {
            latency: Duration::from_millis(300),
            ..server.okx_ws_config()
        });
        let sent = Instant::now();
        send(&mut pinger, "ping").await;
        assert_eq!(next_text(&mut pinger).await, "pong");
        assert!(
            sent.elapsed() >= Duration::from_millis(300),
            "{:?}",
            sent.elapsed()
        );
    }

    /// A client's book: levels by price.
    #[derive(Default)]
    struct LocalBook {
        bids: Vec<(String, String)>,
        asks: Vec<(String, String)>,
        seq: i64,
    }

    fn px(p: &str) -> f64 {
        p.parse().unwrap()
    }

    impl LocalBook {
        fn apply(&mut self, d: &Value, snapshot: bool) {
            if snapshot {
                self.bids.clear();
                self.asks.clear();
            }
            for (side, key, desc) in [
                (&mut self.bids, "bids", true),
                (&mut self.asks, "asks", false),
            ] {
                for lv in d[key].as_array().unwrap() {
                    let (p, q) = (s(&lv[0]).to_string(), s(&lv[1]).to_string());
                    assert_eq!(s(&lv[2]), "0");
                    let n: u64 = s(&lv[3]).parse().unwrap();
                    assert_eq!(n == 0, q == "0", "{lv}");
                    let pos = side.iter().position(|(x, _)| px(x) == px(&p));
                    match (pos, q.as_str()) {
                        (Some(k), "0") => {
                            side.remove(k);
                        }
                        (Some(k), _) => side[k].1 = q,
                        (None, "0") => panic!("deleting a level that is not there: {p}"),
                        (None, _) => {
                            let at = side
                                .iter()
                                .position(
                                    |(x, _)| if desc { px(x) < px(&p) } else { px(x) > px(&p) },
                                )
                                .unwrap_or(side.len());
                            side.insert(at, (p, q));
                        }
                    }
                }
            }
        }

        fn checksum(&self) -> i32 {
            let top = |v: &[(String, String)]| v.iter().take(25).cloned().collect::<Vec<_>>();
            checksum(&top(&self.bids), &top(&self.asks))
        }
    }

    /// Snapshot and updates chain by seqId, every message's checksum is the book's, the book
    /// built is [`order_book`]'s; a corrupted checksum and a broken chain are detectable and a
    /// new subscription resyncs.
    #[tokio::test]
    async fn okx_ws_book_checksum_and_seq_chain() {
        let server = start(OkxWsConfig {
            book_checksum: true,
            ..relaxed()
        })
        .await;
        let mut c = connect(&server, "public").await;
        subscribe(&mut c, "books", "BTC-USDT").await;
        assert_eq!(next_json(&mut c).await["event"], "subscribe");
        let mut book = LocalBook::default();
        let snap = next_push(&mut c, "books").await;
        assert_eq!(snap["action"], "snapshot");
        let d = &snap["data"][0];
        assert_eq!(d["prevSeqId"], -1);
        assert_eq!(d["asks"].as_array().unwrap().len(), BOOK_DEPTH);
        assert_eq!(d["bids"].as_array().unwrap().len(), BOOK_DEPTH);
        book.apply(d, true);
        book.seq = d["seqId"].as_i64().unwrap();
        assert_eq!(book.checksum(), d["checksum"].as_i64().unwrap() as i32);
        let mut last_ts = num(&d["ts"]);
        for _ in 0..12 {
            let u = next_push(&mut c, "books").await;
            assert_eq!(u["action"], "update");
            let d = &u["data"][0];
            assert_eq!(d["prevSeqId"].as_i64().unwrap(), book.seq);
            assert!(d["seqId"].as_i64().unwrap() > book.seq);
            book.apply(d, false);
            book.seq = d["seqId"].as_i64().unwrap();
            assert_eq!(book.checksum(), d["checksum"].as_i64().unwrap() as i32);
            last_ts = num(&d["ts"]);
        }
        let want = order_book("BTC-USDT", last_ts).unwrap();
        assert_eq!(
            (&book.bids, &book.asks, book.seq),
            (&want.bids, &want.asks, want.seq_id)
        );
        // A corrupted checksum: the client's own checksum differs (on an update that may
        // follow one already on its way).
        server.okx_ws_corrupt_next_checksum();
        let mut updates = 0;
        loop {
            let u = next_push(&mut c, "books").await;
            let d = &u["data"][0];
            assert_eq!(d["prevSeqId"].as_i64().unwrap(), book.seq);
            book.apply(d, false);
            book.seq = d["seqId"].as_i64().unwrap();
            if book.checksum() != d["checksum"].as_i64().unwrap() as i32 {
                break;
            }
            updates += 1;
            assert!(updates < 5, "no corrupted checksum");
        }
        // The client resyncs by subscribing again: a new snapshot that checks out.
        subscribe(&mut c, "books", "BTC-USDT").await;
        let snap = loop {
            let v = next_push(&mut c, "books").await;
            if v["action"] == "snapshot" {
                break v;
            }
        };
        let d = &snap["data"][0];
        book.apply(d, true);
        book.seq = d["seqId"].as_i64().unwrap();
        assert_eq!(book.checksum(), d["checksum"].as_i64().unwrap() as i32);
        // A broken chain: an update does not follow the last seqId.
        server.okx_ws_break_next_seq();
        let mut updates = 0;
        loop {
            let u = next_push(&mut c, "books").await;
            let d = &u["data"][0];
            if d["prevSeqId"].as_i64().unwrap() != book.seq {
                break;
            }
            book.apply(d, false);
            book.seq = d["seqId"].as_i64().unwrap();
            assert_eq!(book.checksum(), d["checksum"].as_i64().unwrap() as i32);
            updates += 1;
            assert!(updates < 5, "no break in the chain");
        }
        let stats = server.okx_ws_stats();
        assert_eq!((stats.checksums_corrupted, stats.seq_breaks), (1, 1));
        // bbo-tbt shows the book's best levels.
        subscribe(&mut c, "bbo-tbt", "BTC-USDT").await;
        let b = next_push(&mut c, "bbo-tbt").await;
        let d = &b["data"][0];
        let want = order_book("BTC-USDT", num(&d["ts"])).unwrap();
        assert_eq!(
            (s(&d["asks"][0][0]), s(&d["asks"][0][1])),
            (want.asks[0].0.as_str(), want.asks[0].1.as_str())
        );
        assert_eq!(
            (s(&d["bids"][0][0]), s(&d["bids"][0][1])),
            (want.bids[0].0.as_str(), want.bids[0].1.as_str())
        );
        assert_eq!(d["seqId"].as_i64().unwrap(), want.seq_id);
    }

    /// By default the checksum is 0, as OKX sends it since it deprecated it.
    #[tokio::test]
    async fn okx_ws_book_checksum_is_zero_by_default() {
        let server = start(relaxed()).await;
        let mut c = connect(&server, "public").await;
        subscribe(&mut c, "books", "ETH-USDT-SWAP").await;
        for _ in 0..4 {
            let v = next_push(&mut c, "books").await;
            assert_eq!(v["data"][0]["checksum"], 0);
        }
    }

    /// `okx_ws_disconnect_all` drops every connection without a close frame.
    #[tokio::test]
    async fn okx_ws_disconnect_all_closes_connections() {
        let server = start(relaxed()).await;
        let mut a = connect(&server, "public").await;
        let mut b = connect(&server, "business").await;
        eventually("two open", || server.okx_ws_stats().connections_open == 2).await;
        assert_eq!(server.okx_ws_disconnect_all(), 2);
        for c in [&mut a, &mut b] {
            match tokio::time::timeout(WAIT, c.next()).await.unwrap() {
                None
                | Some(Err(WsError::Protocol(_) | WsError::Io(_) | WsError::ConnectionClosed)) => {}
                other => panic!("expected an abrupt end, got {other:?}"),
            }
        }
        eventually("none open", || server.okx_ws_stats().connections_open == 0).await;
        assert_eq!(server.okx_ws_stats().forced_disconnects, 2);
        // The simulator's endpoint does the same.
        let _c = connect(&server, "public").await;
        eventually("one open", || server.okx_ws_stats().connections_open == 1).await;
        let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
        let req = "POST /sim/okx_ws/disconnect HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        assert!(raw.ends_with("{\"connections\":1}"), "{raw}");
    }

    /// Three connection requests a second per IP, 480 (here 2) requests an hour per connection.
    #[tokio::test]
    async fn okx_ws_connection_and_request_limits() {
        let server = start(OkxWsConfig {
            max_requests_per_hour: 2,
            ..OkxWsConfig::default()
        })
        .await;
        let mut first = connect(&server, "public").await;
        let _second = connect(&server, "public").await;
        let _third = connect(&server, "business").await;
        let url = format!("{}/ws/v5/public", server.okx_ws_url());
        match connect_async(url.clone()).await {
            Err(WsError::Http(resp)) => assert_eq!(resp.status(), 429),
            other => panic!("expected HTTP 429, got {:?}", other.map(|_| ())),
        }
        assert_eq!(server.okx_ws_stats().connection_attempts_rejected, 1);
        server.clock().advance(Duration::from_millis(1_000));
        let _fourth = connect_async(url).await.unwrap();
        for _ in 0..2 {
            subscribe(&mut first, "trades", "BTC-USDT").await;
            assert_eq!(next_json(&mut first).await["event"], "subscribe");
        }
        subscribe(&mut first, "trades", "BTC-USDT").await;
        let e = loop {
            let v = next_json(&mut first).await;
            if v.get("event").is_some() {
                break v;
            }
        };
        assert_eq!(
            (e["code"].as_str(), e["msg"].as_str()),
            (Some("60014"), Some("Requests too frequent"))
        );
        assert_eq!(server.okx_ws_stats().requests_too_frequent, 1);
        // Other paths and plain GETs are refused.
        assert_eq!(
            get(server.local_addr(), "/okx-ws/ws/v5/private").await.0,
            404
        );
        assert_eq!(
            get(server.local_addr(), "/okx-ws/ws/v5/public").await.0,
            400
        );
    }

    /// A liquidation of a push's detail, as [`okx::okx_liquidations`] gives it; checks the
    /// fields that follow from it.
    fn liquidation_of(entry: &Value, d: &Value) -> okx::VenueLiquidation {
        assert_eq!((s(&d["bkLoss"]), s(&d["ccy"])), ("0", ""), "{d}");
        let side = match (s(&d["posSide"]), s(&d["side"])) {
            ("long", "sell") => "sell",
            ("short", "buy") => "buy",
            other => panic!("posSide and side {other:?}"),
        };
        okx::VenueLiquidation {
            time: num(&d["ts"]),
            side: side.to_string(),
            size: s(&d["sz"]).to_string(),
            price: s(&d["bkPx"]).to_string(),
            symbol: s(&entry["instId"]).to_string(),
        }
    }

    /// `liquidation-orders` pushes of `inst_type` on `c`, read until one holds a liquidation at
    /// `last_ts`: the pushes and their liquidations per instrument. Checks every entry's fields
    /// and that a push names each instrument once, its details ascending.
    async fn liquidation_pushes(
        c: &mut Client,
        inst_type: &str,
        last_ts: i64,
    ) -> (Vec<Value>, BTreeMap<String, Vec<okx::VenueLiquidation>>) {
        let mut pushes = Vec::new();
        let mut per_inst: BTreeMap<String, Vec<okx::VenueLiquidation>> = BTreeMap::new();
        let mut seen_last = false;
        while !seen_last {
            let v = next_push(c, LIQUIDATION_CHANNEL).await;
            assert_eq!(
                v["arg"],
                serde_json::json!({"channel": LIQUIDATION_CHANNEL, "instType": inst_type})
            );
            let data = v["data"].as_array().unwrap();
            assert!(!data.is_empty());
            let mut insts = Vec::new();
            for entry in data {
                let inst = s(&entry["instId"]).to_string();
                assert!(!insts.contains(&inst), "{inst} twice in one push");
                let family = inst.rsplit_once('-').unwrap().0;
                assert_eq!(
                    (
                        s(&entry["instFamily"]),
                        s(&entry["uly"]),
                        s(&entry["instType"])
                    ),
                    (family, family, inst_type)
                );
                let details = entry["details"].as_array().unwrap();
                assert!(!details.is_empty());
                let list = per_inst.entry(inst.clone()).or_default();
                for d in details {
                    let l = liquidation_of(entry, d);
                    seen_last |= l.time == last_ts;
                    assert!(list.last().is_none_or(|p| p.time < l.time), "ascending");
                    list.push(l);
                }
                insts.push(inst);
            }
            pushes.push(v);
        }
        (pushes, per_inst)
    }

    /// `liquidation-orders` pushes every liquidation of every instrument of the type, exactly
    /// [`okx::okx_liquidations`]', batched per tick; two instruments' liquidations at one
    /// millisecond come in one push, also in real time.
    #[tokio::test]
    async fn okx_ws_liquidation_orders_cover_every_instrument_of_the_type() {
        let server = start(relaxed()).await;
        let day = 1_773_446_400_000; // 2026-03-14
        server.clock().set_now_ms(day + 1_234);
        for (inst_type, count) in [("SWAP", 5), ("FUTURES", 6)] {
            let covered = okx::okx_liquidation_instruments_at(inst_type, day);
            assert_eq!(covered.len(), count);
            let mut c = connect(&server, "public").await;
            let req = format!(
                r#"{{"id":"l1","op":"subscribe","args":[{{"channel":"liquidation-orders","instType":"{inst_type}"}}]}}"#
            );
            send(&mut c, &req).await;
            let ack = next_json(&mut c).await;
            assert_eq!(
                ack,
                serde_json::json!({"id":"l1","event":"subscribe",
                    "arg":{"channel":"liquidation-orders","instType":inst_type},
                    "connId":ack["connId"]})
            );
            let after = server.clock().now_ms();
            // Twenty seconds at once instead of waiting for them.
            server.clock().advance(Duration::from_secs(20));
            let want: BTreeMap<String, Vec<okx::VenueLiquidation>> = covered
                .iter()
                .map(|i| {
                    (
                        i.clone(),
                        okx::okx_liquidations(i, after + 1, after + 20_000),
                    )
                })
                .filter(|(_, l)| !l.is_empty())
                .collect();
            assert!(want.len() >= 2, "{inst_type}: {want:?}");
            let last_ts = want.values().flatten().map(|l| l.time).max().unwrap();
            let (pushes, mut got) = liquidation_pushes(&mut c, inst_type, last_ts).await;
            for list in got.values_mut() {
                list.retain(|l| (after + 1..=last_ts).contains(&l.time));
            }
            got.retain(|_, l| !l.is_empty());
            assert_eq!(got, want, "{inst_type}");
            for list in got.values() {
                assert!(list.windows(2).all(|w| w[0].time / 1000 < w[1].time / 1000));
            }
            assert!(pushes
                .iter()
                .any(|p| p["data"].as_array().unwrap().len() >= 2));
        }

        // In real time: a millisecond with liquidations of two instruments (a cascade).
        let mut c = connect(&server, "public").await;
        send(
            &mut c,
            r#"{"op":"subscribe","args":[{"channel":"liquidation-orders","instType":"SWAP"}]}"#,
        )
        .await;
        assert_eq!(next_json(&mut c).await["event"], "subscribe");
        let from = server.clock().now_ms() + 5_000;
        let mut by_ms: BTreeMap<i64, usize> = BTreeMap::new();
        for inst in okx::okx_liquidation_instruments("SWAP") {
            for l in okx::okx_liquidations(&inst, from, from + 3_600_000) {
                *by_ms.entry(l.time).or_default() += 1;
            }
        }
        let (&shared, _) = by_ms
            .iter()
            .find(|(_, n)| **n >= 2)
            .expect("a cascade within an hour");
        server.clock().set_now_ms(shared - 300);
        let pushes_before = server.okx_ws_stats().liquidation_messages_sent;
        let (pushes, _) = liquidation_pushes(&mut c, "SWAP", shared).await;
        let push = pushes.last().unwrap();
        let at_shared = push["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["details"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| num(&d["ts"]) == shared)
            })
            .count();
        assert!(at_shared >= 2, "{push}");
        let stats = server.okx_ws_stats();
        assert!(stats.liquidation_messages_sent >= pushes_before + pushes.len() as u64);
        assert!(stats.messages_sent > stats.liquidation_messages_sent);
    }

    /// `liquidation-orders` takes `instType` `SWAP` or `FUTURES` on `/public` only;
    /// unsubscribing stops the pushes.
    #[tokio::test]
    async fn okx_ws_liquidation_orders_refusals_and_unsubscribe() {
        let server = start(relaxed()).await;
        let mut public = connect(&server, "public").await;
        send(
            &mut public,
            r#"{"id":"r1","op":"subscribe","args":[{"channel":"liquidation-orders","instType":"SPOT"},{"channel":"liquidation-orders"},{"channel":"liquidation-orders","instId":"BTC-USDT-SWAP"},{"channel":"liquidation-orders","instType":"MARGIN"},{"channel":"liquidation-orders","instType":"FUTURES"}]}"#,
        )
        .await;
        for what in [
            "channel:liquidation-orders,instType:SPOT",
            "channel:liquidation-orders",
            "channel:liquidation-orders",
            "channel:liquidation-orders,instType:MARGIN",
        ] {
            let e = next_json(&mut public).await;
            assert_eq!(
                (e["event"].as_str(), e["code"].as_str(), e["id"].as_str()),
                (Some("error"), Some("60018"), Some("r1")),
                "{e}"
            );
            assert_eq!(s(&e["msg"]), wrong_url(what));
        }
        let ok = next_json(&mut public).await;
        assert_eq!(ok["event"], "subscribe");
        assert_eq!(
            ok["arg"],
            serde_json::json!({"channel":"liquidation-orders","instType":"FUTURES"})
        );
        let mut business = connect(&server, "business").await;
        send(
            &mut business,
            r#"{"op":"subscribe","args":[{"channel":"liquidation-orders","instType":"SWAP"}]}"#,
        )
        .await;
        let e = next_json(&mut business).await;
        assert_eq!(e["code"], "60018", "{e}");
        // Pushes flow, then stop after the unsubscribe's answer.
        server.clock().advance(Duration::from_secs(30));
        next_push(&mut public, LIQUIDATION_CHANNEL).await;
        send(
            &mut public,
            r#"{"op":"unsubscribe","args":[{"channel":"liquidation-orders","instType":"FUTURES"}]}"#,
        )
        .await;
        loop {
            let v = next_json(&mut public).await;
            if v["event"] == "unsubscribe" {
                assert_eq!(v["arg"]["instType"], "FUTURES");
                break;
            }
        }
        server.clock().advance(Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&mut public, "ping").await;
        assert_eq!(next_text(&mut public).await, "pong");
        let stats = server.okx_ws_stats();
        assert_eq!((stats.subscriptions, stats.subscriptions_refused), (1, 5));
    }

    /// `/sim/okx_ws` reads and changes the configuration.
    #[tokio::test]
    async fn okx_ws_sim_endpoint() {
        let server = start(OkxWsConfig::default()).await;
        let (status, body) = get(server.local_addr(), "/sim/okx_ws").await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"idle_timeout_ms":30000,"max_connections_per_sec":3,
                "max_requests_per_hour":480,"candle_update_ms":1000,"book_checksum":false,
                "latency_ms":0})
        );
        let body = r#"{"idle_timeout_ms":500,"book_checksum":true,"break_next_seq":true}"#;
        let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
        let req = format!(
            "POST /sim/okx_ws HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.unwrap();
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
        let c = server.okx_ws_config();
        assert_eq!(
            (c.idle_timeout, c.book_checksum, c.max_connections_per_sec),
            (Duration::from_millis(500), true, 3)
        );
        assert_eq!(lock(&server.okx_ws_hub().faults).break_seq, 1);
        let stats = server.stats();
        assert_eq!(stats.okx_ws, server.okx_ws_stats());
    }
}
