//! The WebSocket side of the simulator: the HTTP upgrade on `/ws`, `/ws/<stream>` and
//! `/stream?streams=…` of each market (spot at the root, futures under `/usdm` and `/coinm`;
//! on USD-M Binance's routed `/public/…` (book streams) and `/market/…` (the others), its
//! unrouted forms delivering book streams only, as since their retirement), with handshake, stream validation, per-IP connection limit; and the
//! per-connection session: live SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS/SET_PROPERTY/
//! GET_PROPERTY requests, stream events on a fixed tick, and Binance's connection behaviours and
//! injected faults (pings and pong timeout, lifetime rotation, `serverShutdown`, message-rate
//! limit, forced disconnects, stalls). [`Hub`] holds what sessions share and the counters.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, RETRY_AFTER, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::api::error_body;
use crate::clock::SimClock;
use crate::data::Data;
use crate::fmt::{push_i64, push_json_str};
use crate::market::SimMarket;
use crate::query::Query;
use crate::streams::{parse_stream, Kind, PollCtx, Stream, StreamName};
use crate::{SimStats, WsFaults};

type Body = Full<Bytes>;
pub(crate) type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// How often a session checks its timers and sends the events that came due.
const TICK: Duration = Duration::from_millis(20);
/// How long the server waits for the client's close frame after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Unanswered pings remembered per connection.
const MAX_OUTSTANDING_PINGS: usize = 64;

/// A server-wide order to every open session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    /// Drop the connection without a close frame.
    Disconnect,
    /// Send `serverShutdown`, close after the grace period.
    Shutdown,
    /// Go silent for good.
    Stall,
    /// Deliver everything sent from now on this much later (see [`crate::SimServer::lag_all`]).
    Lag(Duration),
}

/// What a session sends, held back by its lag: messages leave in order, each no earlier than
/// `lag` after it was sent, and a close frame after the last of them. With no lag and nothing
/// held, messages go straight to the socket. Every venue's sessions send through one (OKX's
/// latency fault is this lag too).
#[derive(Default)]
pub(crate) struct Outgoing {
    pub(crate) lag: Duration,
    held: VecDeque<(Instant, Message)>,
}

impl Outgoing {
    /// Queues `msg` on the socket (or holds it); `Err` when the client is gone.
    pub(crate) async fn feed(&mut self, ws: &mut Ws, msg: Message) -> Result<(), ()> {
        if self.lag.is_zero() && self.held.is_empty() {
            return ws.feed(msg).await.map_err(drop);
        }
        self.held.push_back((Instant::now() + self.lag, msg));
        Ok(())
    }

    /// Sends what is due and flushes; `Err` when the client is gone.
    pub(crate) async fn release(&mut self, ws: &mut Ws) -> Result<(), ()> {
        let now = Instant::now();
        let mut any = false;
        while self.held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, msg) = self.held.pop_front().expect("front");
            ws.feed(msg).await.map_err(drop)?;
            any = true;
        }
        if any {
            ws.flush().await.map_err(drop)?;
        }
        Ok(())
    }

    /// Sends everything held, each message when it is due (at most the lag from now).
    pub(crate) async fn drain(&mut self, ws: &mut Ws) -> Result<(), ()> {
        while let Some((due, msg)) = self.held.pop_front() {
            tokio::time::sleep_until(due).await;
            ws.send(msg).await.map_err(drop)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    open: AtomicU64,
    sent: AtomicU64,
    pings: AtomicU64,
    pongs: AtomicU64,
    forced: AtomicU64,
    rejected: AtomicU64,
    pong_timeouts: AtomicU64,
    lifetime: AtomicU64,
    rate: AtomicU64,
    shutdown: AtomicU64,
    stalled: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What every session shares: the current faults and data, the control channel, the per-IP
/// connection log and the counters.
pub(crate) struct Hub {
    faults: watch::Sender<WsFaults>,
    data: watch::Sender<Arc<Data>>,
    ctl: broadcast::Sender<Control>,
    /// Connection attempts per IP, in simulated ms.
    attempts: Mutex<HashMap<IpAddr, VecDeque<i64>>>,
    counters: Counters,
    /// Event times, the message rate and the attempt window follow it; a connection's own
    /// timers (pings, lifetime, lag, shutdown grace) run on the wall clock.
    clock: SimClock,
}

impl Hub {
    pub fn new(faults: WsFaults, data: Arc<Data>, clock: SimClock) -> Hub {
        Hub {
            faults: watch::Sender::new(faults),
            data: watch::Sender::new(data),
            ctl: broadcast::Sender::new(16),
            attempts: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            clock,
        }
    }

    pub fn set_faults(&self, f: WsFaults) {
        self.faults.send_replace(f);
    }

    pub fn faults(&self) -> WsFaults {
        self.faults.borrow().clone()
    }

    pub fn set_data(&self, data: Arc<Data>) {
        self.data.send_replace(data);
    }

    /// Sends `c` to every open session; returns how many got it.
    pub fn broadcast(&self, c: Control) -> usize {
        self.ctl.send(c).unwrap_or(0)
    }

    /// Adds this hub's counters to `s` (the server has one hub for spot, one for futures).
    pub fn fill_stats(&self, s: &mut SimStats) {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.ws_connections_opened += get(&c.opened);
        s.ws_connections_open += get(&c.open);
        s.ws_messages_sent += get(&c.sent);
        s.ws_pings_sent += get(&c.pings);
        s.ws_pongs_received += get(&c.pongs);
        s.ws_forced_disconnects += get(&c.forced);
        s.ws_connection_attempts_rejected += get(&c.rejected);
        s.ws_pong_timeouts += get(&c.pong_timeouts);
        s.ws_lifetime_closes += get(&c.lifetime);
        s.ws_rate_limit_closes += get(&c.rate);
        s.ws_shutdown_notices += get(&c.shutdown);
        s.ws_stalled += get(&c.stalled);
    }

    /// Records a connection of `ip` unless it is over the limit; `Err` = seconds to wait.
    fn admit(&self, ip: IpAddr, f: &WsFaults) -> Result<(), u64> {
        if f.max_connections_per_window == 0 {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let window = f.connection_window.as_millis().min(i64::MAX as u128) as i64;
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        // Forget idle IPs now and then so the map stays small.
        if attempts.len() > 1024 {
            attempts.retain(|_, q| q.back().is_some_and(|&t| now - t < window));
        }
        let log = attempts.entry(ip).or_default();
        while log.front().is_some_and(|&t| now - t >= window) {
            log.pop_front();
        }
        if log.len() >= f.max_connections_per_window as usize {
            let oldest = log.front().copied().unwrap_or(now);
            let wait = (oldest + window - now).max(0) as u64;
            return Err(wait.div_ceil(1000).max(1));
        }
        log.push_back(now);
        Ok(())
    }
}

/// An accepted upgrade waiting for hyper to hand over the connection.
pub(crate) struct Pending {
    on_upgrade: OnUpgrade,
    streams: Vec<StreamName>,
    combined: bool,
    market: SimMarket,
    route: Route,
}

/// Which streams a WebSocket endpoint serves: every one (spot and COIN-M `/ws`, `/stream`), on
/// USD-M the routed `/public/…` (book streams: `@depth…`, `@bookTicker`) and `/market/…` (all
/// others), and USD-M's retired unrouted `/ws`, `/stream`, which since 2026-04-23 accept every
/// subscription but deliver only the book streams (the trap loaders fell into: connected,
/// subscribed, and silent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    All,
    Public,
    Market,
    UsdmLegacy,
}

impl Route {
    /// Whether a subscription to `kind` is accepted.
    fn allows(self, kind: Kind) -> bool {
        match self {
            Route::All | Route::UsdmLegacy => true,
            Route::Public => kind.is_public(),
            Route::Market => !kind.is_public(),
        }
    }

    /// Whether the events of an accepted `kind` are sent.
    fn delivers(self, kind: Kind) -> bool {
        match self {
            Route::UsdmLegacy => kind.is_public(),
            _ => true,
        }
    }
}

/// Whether `path` is one of the WebSocket endpoints.
pub(crate) fn is_ws_path(path: &str) -> bool {
    path == "/ws" || path.starts_with("/ws/") || path == "/stream" || path == "/stream/"
}

/// The route and the `/ws…` or `/stream` part of a futures WebSocket path (the part after the
/// market's prefix): `/ws/x`, `/public/stream`, `/market/ws/x`, …
pub(crate) fn futures_route(rest: &str) -> Option<(Route, &str)> {
    let (route, inner) = if let Some(inner) = rest.strip_prefix("/public") {
        (Route::Public, inner)
    } else if let Some(inner) = rest.strip_prefix("/market") {
        (Route::Market, inner)
    } else {
        (Route::All, rest)
    };
    is_ws_path(inner).then_some((route, inner))
}

fn wrong_route(name: &str) -> String {
    format!("Invalid request: stream {name} is not served on this endpoint")
}

fn plain(status: u16, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp
}

fn header_has_token(req: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Where an upgrade request goes: the market, the route and the `/ws…` or `/stream` part of
/// the path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Endpoint<'p> {
    pub market: SimMarket,
    pub route: Route,
    pub path: &'p str,
}

/// Answers a request on a WebSocket path: the 101 response and the pending session, or the
/// refusal (400 bad handshake or streams, 429 over the connection limit) and `None`.
pub(crate) fn upgrade(
    hub: &Hub,
    req: &mut Request<Incoming>,
    peer: IpAddr,
    ep: Endpoint<'_>,
) -> (Response<Body>, Option<Pending>) {
    match try_upgrade(hub, req, peer, ep) {
        Ok((resp, pending)) => (resp, Some(pending)),
        Err(resp) => (*resp, None),
    }
}

fn try_upgrade(
    hub: &Hub,
    req: &mut Request<Incoming>,
    peer: IpAddr,
    ep: Endpoint<'_>,
) -> Result<(Response<Body>, Pending), Box<Response<Body>>> {
    let key = req.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let handshake_ok = req.method() == Method::GET
        && header_has_token(req, UPGRADE, "websocket")
        && header_has_token(req, CONNECTION, "upgrade")
        && req
            .headers()
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = key.filter(|_| handshake_ok) else {
        return Err(Box::new(plain(
            400,
            error_body(
                -1100,
                "This endpoint only accepts WebSocket upgrade requests.",
            ),
        )));
    };
    let faults = hub.faults();
    let reject = |status: u16, body: String| {
        bump(&hub.counters.rejected, 1);
        Box::new(plain(status, body))
    };
    let path = ep.path;
    let (names, combined): (Vec<String>, bool) = if let Some(rest) = path.strip_prefix("/ws") {
        (
            rest.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            false,
        )
    } else {
        let q = Query::parse(req.uri().query());
        let list = q.get("streams").unwrap_or("");
        (
            list.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            true,
        )
    };
    let mut streams: Vec<StreamName> = Vec::with_capacity(names.len());
    for name in &names {
        let Some(parsed) = parse_stream(ep.market, name) else {
            return Err(reject(
                400,
                ws_error_inner(2, "Invalid request: invalid stream"),
            ));
        };
        if !ep.route.allows(parsed.kind) {
            return Err(reject(400, ws_error_inner(2, &wrong_route(name))));
        }
        if !streams.iter().any(|s| s.name == parsed.name) {
            streams.push(parsed);
        }
    }
    if streams.len() > faults.max_streams_in(ep.market) {
        return Err(reject(
            400,
            ws_error_inner(2, &too_many_streams(&faults, ep.market)),
        ));
    }
    if let Err(retry_after) = hub.admit(peer, &faults) {
        let mut resp = reject(
            429,
            error_body(
                -1003,
                &format!(
                    "Too many connection attempts; current limit is {} connections per {} \
                     seconds per IP.",
                    faults.max_connections_per_window,
                    faults.connection_window.as_secs_f64()
                ),
            ),
        );
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after));
        return Err(resp);
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    bump(&hub.counters.opened, 1);
    let pending = Pending {
        on_upgrade: hyper::upgrade::on(req),
        streams,
        combined,
        market: ep.market,
        route: ep.route,
    };
    Ok((resp, pending))
}

fn too_many_streams(f: &WsFaults, market: SimMarket) -> String {
    format!(
        "Invalid request: too many streams; at most {} per connection",
        f.max_streams_in(market)
    )
}

/// `{"code":c,"msg":"…"}`
fn ws_error_inner(code: i32, msg: &str) -> String {
    let mut s = String::with_capacity(msg.len() + 24);
    s.push_str("{\"code\":");
    push_i64(&mut s, i64::from(code));
    s.push_str(",\"msg\":");
    push_json_str(&mut s, msg);
    s.push('}');
    s
}

/// Binance's error answer to a request: `{"error":{"code":c,"msg":"…"},"id":…}`.
fn ws_error(code: i32, msg: &str, id: &Value) -> String {
    format!(
        "{{\"error\":{},\"id\":{}}}",
        ws_error_inner(code, msg),
        serde_json::to_string(id).unwrap_or_else(|_| "null".into())
    )
}

fn ws_result(result: &Value, id: &Value) -> String {
    serde_json::json!({ "result": result, "id": id }).to_string()
}

/// Runs the session of an accepted upgrade until it ends.
pub(crate) async fn serve(hub: Arc<Hub>, pending: Pending) {
    let upgraded = match pending.on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return;
        }
    };
    let _open = OpenGuard::new(hub.clone());
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let now = hub.clock.now_ms();
    let data = hub.data.borrow().clone();
    let subs = pending
        .streams
        .into_iter()
        .map(|s| Stream::new(s, &data, now))
        .collect();
    let opened = Instant::now();
    let session = Session {
        hub,
        subs,
        market: pending.market,
        route: pending.route,
        combined: pending.combined,
        opened,
        last_ping: opened,
        outstanding: VecDeque::new(),
        incoming: VecDeque::new(),
        shutdown_at: None,
        out: Outgoing::default(),
    };
    session.run(ws).await;
}

/// Counts a connection as open while it lives.
struct OpenGuard(Arc<Hub>);

impl OpenGuard {
    fn new(hub: Arc<Hub>) -> OpenGuard {
        bump(&hub.counters.open, 1);
        OpenGuard(hub)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a session's main loop ended.
enum End {
    /// The client closed the connection or it broke.
    ClientGone,
    /// Drop without a close frame.
    Abrupt,
    /// Send a close frame, then drop.
    Close(CloseCode, &'static str),
    /// Go silent.
    Stall,
}

struct Session {
    hub: Arc<Hub>,
    subs: Vec<Stream>,
    market: SimMarket,
    route: Route,
    combined: bool,
    opened: Instant,
    last_ping: Instant,
    /// Payloads and send times of pings not answered yet, oldest first.
    outstanding: VecDeque<(Bytes, Instant)>,
    /// Arrival times (simulated ms) of the counted incoming messages of the last second.
    incoming: VecDeque<i64>,
    shutdown_at: Option<Instant>,
    out: Outgoing,
}

impl Session {
    async fn run(mut self, mut ws: Ws) {
        let mut ctl = self.hub.ctl.subscribe();
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
                c = ctl.recv() => match c {
                    Ok(Control::Disconnect) | Err(broadcast::error::RecvError::Closed) => {
                        break End::Abrupt;
                    }
                    Ok(Control::Stall) => break End::Stall,
                    Ok(Control::Lag(lag)) => self.out.lag = lag,
                    Ok(Control::Shutdown) => {
                        if let Some(end) = self.on_shutdown(&mut ws).await {
                            break end;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                },
            }
        };
        let c = &self.hub.counters;
        if let End::Stall = end {
            bump(&c.stalled, 1);
            self.stalled(ws, ctl).await;
            return;
        }
        // Orders sent from now on are not for this connection.
        drop(ctl);
        match end {
            End::ClientGone | End::Stall => {}
            End::Abrupt => {
                bump(&c.forced, 1);
                drop(ws);
            }
            End::Close(code, reason) => {
                // The close frame follows what the lag still holds, as on a real link.
                if self.out.drain(&mut ws).await.is_err() {
                    return;
                }
                let frame = CloseFrame {
                    code,
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

    /// Silence: read and discard until the client closes, a disconnect order or the lifetime.
    async fn stalled(&self, mut ws: Ws, mut ctl: broadcast::Receiver<Control>) {
        let lifetime = self.hub.faults().max_lifetime;
        let end = self.opened.checked_add(lifetime);
        let io = ws.get_mut();
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                r = io.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                c = ctl.recv() => match c {
                    Ok(Control::Disconnect) | Err(broadcast::error::RecvError::Closed) => {
                        bump(&self.hub.counters.forced, 1);
                        return;
                    }
                    _ => {}
                },
                _ = sleep_until_opt(end) => return,
            }
        }
    }

    /// Counts an incoming message; `Some` when the connection is over its rate.
    fn over_rate(&mut self, f: &WsFaults) -> Option<End> {
        if f.max_incoming_per_sec == 0 {
            return None;
        }
        let now = self.hub.clock.now_ms();
        while self.incoming.front().is_some_and(|&t| now - t >= 1_000) {
            self.incoming.pop_front();
        }
        self.incoming.push_back(now);
        if self.incoming.len() <= f.max_incoming_per_sec as usize {
            return None;
        }
        bump(&self.hub.counters.rate, 1);
        Some(End::Close(CloseCode::Policy, "Too many messages"))
    }

    async fn on_message(&mut self, ws: &mut Ws, msg: Message) -> Option<End> {
        let f = self.hub.faults();
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                if let Some(end) = self.over_rate(&f) {
                    return Some(end);
                }
                let text = match &msg {
                    Message::Text(t) => t.as_str().to_string(),
                    other => String::from_utf8_lossy(&other.clone().into_data()).into_owned(),
                };
                let reply = self.request(&text, &f);
                if self.out.feed(ws, Message::text(reply)).await.is_err()
                    || ws.flush().await.is_err()
                {
                    return Some(End::ClientGone);
                }
                bump(&self.hub.counters.sent, 1);
            }
            Message::Ping(_) => {
                if let Some(end) = self.over_rate(&f) {
                    return Some(end);
                }
                // tungstenite queued the pong; send it now.
                if ws.flush().await.is_err() {
                    return Some(End::ClientGone);
                }
            }
            Message::Pong(payload) => {
                bump(&self.hub.counters.pongs, 1);
                match self.outstanding.iter().position(|(p, _)| *p == payload) {
                    Some(k) => {
                        self.outstanding.drain(..=k);
                    }
                    None => {
                        if let Some(end) = self.over_rate(&f) {
                            return Some(end);
                        }
                    }
                }
            }
            Message::Close(_) | Message::Frame(_) => {}
        }
        None
    }

    async fn on_tick(&mut self, ws: &mut Ws) -> Option<End> {
        let f = self.hub.faults();
        let c = &self.hub.counters;
        let now = Instant::now();
        let age = now - self.opened;
        if self.out.release(ws).await.is_err() {
            return Some(End::ClientGone);
        }
        if f.stall || f.stall_after.is_some_and(|d| age >= d) {
            return Some(End::Stall);
        }
        if f.drop_every.is_some_and(|d| age >= d) {
            return Some(End::Abrupt);
        }
        if age >= f.max_lifetime {
            bump(&c.lifetime, 1);
            return Some(End::Close(CloseCode::Away, "Connection lifetime reached"));
        }
        if self.shutdown_at.is_some_and(|t| now >= t) {
            return Some(End::Close(CloseCode::Away, "Server shutdown"));
        }
        if self
            .outstanding
            .front()
            .is_some_and(|&(_, sent)| now - sent >= f.pong_timeout)
        {
            bump(&c.pong_timeouts, 1);
            return Some(End::Close(CloseCode::Policy, "Pong timeout"));
        }
        let mut queued = false;
        if now - self.last_ping >= f.ping_interval {
            let payload = Bytes::from(self.hub.clock.now_ms().to_string());
            if self.outstanding.len() < MAX_OUTSTANDING_PINGS {
                self.outstanding.push_back((payload.clone(), now));
            }
            self.last_ping = now;
            if ws.feed(Message::Ping(payload)).await.is_err() {
                return Some(End::ClientGone);
            }
            bump(&c.pings, 1);
            queued = true;
        }
        if !self.subs.is_empty() {
            let data = self.hub.data.borrow().clone();
            let ctx = PollCtx {
                data: &data,
                now: self.hub.clock.now_ms(),
                kline_update_ms: f.kline_update.as_millis().min(i64::MAX as u128) as i64,
                depth_gap_every: f.depth_gap_every,
            };
            let mut raw = Vec::new();
            let mut sent = 0;
            for sub in &mut self.subs {
                sub.poll(&ctx, &mut raw);
                if !self.route.delivers(sub.kind) {
                    raw.clear();
                    continue;
                }
                for payload in raw.drain(..) {
                    let text = if self.combined {
                        wrap(&sub.name, &payload)
                    } else {
                        payload
                    };
                    if self.out.feed(ws, Message::text(text)).await.is_err() {
                        return Some(End::ClientGone);
                    }
                    sent += 1;
                }
            }
            bump(&c.sent, sent);
            queued |= sent > 0;
        }
        if queued && ws.flush().await.is_err() {
            return Some(End::ClientGone);
        }
        None
    }

    async fn on_shutdown(&mut self, ws: &mut Ws) -> Option<End> {
        let f = self.hub.faults();
        let mut event = String::from("{\"e\":\"serverShutdown\",\"E\":");
        push_i64(&mut event, self.hub.clock.now_ms());
        event.push('}');
        let text = if self.combined {
            wrap("!serverShutdown", &event)
        } else {
            event
        };
        if self.out.feed(ws, Message::text(text)).await.is_err() || ws.flush().await.is_err() {
            return Some(End::ClientGone);
        }
        bump(&self.hub.counters.sent, 1);
        bump(&self.hub.counters.shutdown, 1);
        if self.shutdown_at.is_none() {
            self.shutdown_at = Some(Instant::now() + f.shutdown_grace);
        }
        None
    }

    /// Answers one request message, errors in the market's own shape: futures wrap them in
    /// `{"error":{…},"id":…}`, spot sends `{"code":…,"msg":…,"id":…}` (no `id` when the request
    /// had none; Binance's spot web-socket-streams.md, "Error Messages").
    fn request(&mut self, text: &str, f: &WsFaults) -> String {
        let reply = self.answer(text, f);
        if self.market != SimMarket::Spot || !reply.starts_with("{\"error\":") {
            return reply;
        }
        let Ok(v) = serde_json::from_str::<Value>(&reply) else {
            return reply;
        };
        let mut out = v["error"].as_object().cloned().unwrap_or_default();
        if !v["id"].is_null() {
            out.insert("id".into(), v["id"].clone());
        }
        Value::Object(out).to_string()
    }

    fn answer(&mut self, text: &str, f: &WsFaults) -> String {
        let null = Value::Null;
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return ws_error(3, &format!("Invalid JSON: {e}"), &null),
        };
        let Some(obj) = v.as_object() else {
            return ws_error(2, "Invalid request: expected a JSON object", &null);
        };
        let id = match obj.get("id") {
            None | Some(Value::Null) => Value::Null,
            Some(Value::Number(n)) if n.is_i64() => Value::Number(n.clone()),
            Some(Value::String(s))
                if s.len() <= 36 && s.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Value::String(s.clone())
            }
            Some(_) => {
                return ws_error(
                    2,
                    "Invalid request: request ID must be an unsigned integer",
                    &null,
                )
            }
        };
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "method" | "params" | "id"))
        {
            return ws_error(2, &format!("Invalid request: unknown field `{k}`"), &id);
        }
        let method = match obj.get("method") {
            Some(Value::String(m)) => m.as_str(),
            Some(_) => return ws_error(2, "Invalid request: method must be a string", &id),
            None => return ws_error(2, "Invalid request: missing field `method`", &id),
        };
        let params = obj.get("params");
        match method {
            "SUBSCRIBE" | "UNSUBSCRIBE" => {
                let Some(list) = params.and_then(Value::as_array) else {
                    return ws_error(2, "Invalid request: params must be a list of streams", &id);
                };
                let mut parsed = Vec::with_capacity(list.len());
                for p in list {
                    match p.as_str().and_then(|n| parse_stream(self.market, n)) {
                        Some(s) if !self.route.allows(s.kind) => {
                            return ws_error(2, &wrong_route(&s.name), &id)
                        }
                        Some(s) => parsed.push(s),
                        None => return ws_error(2, "Invalid request: invalid stream", &id),
                    }
                }
                if method == "UNSUBSCRIBE" {
                    self.subs
                        .retain(|s| !parsed.iter().any(|p| p.name == s.name));
                    return ws_result(&Value::Null, &id);
                }
                parsed.retain(|p| !self.subs.iter().any(|s| s.name == p.name));
                parsed.dedup_by(|a, b| a.name == b.name);
                if self.subs.len() + parsed.len() > f.max_streams_in(self.market) {
                    return ws_error(2, &too_many_streams(f, self.market), &id);
                }
                let data = self.hub.data.borrow().clone();
                let now = self.hub.clock.now_ms();
                self.subs
                    .extend(parsed.into_iter().map(|p| Stream::new(p, &data, now)));
                ws_result(&Value::Null, &id)
            }
            "LIST_SUBSCRIPTIONS" => {
                let names: Vec<Value> = self
                    .subs
                    .iter()
                    .map(|s| Value::String(s.name.clone()))
                    .collect();
                ws_result(&Value::Array(names), &id)
            }
            "SET_PROPERTY" | "GET_PROPERTY" => {
                let list = params.and_then(Value::as_array);
                let Some(name) = list.and_then(|l| l.first()).and_then(Value::as_str) else {
                    return ws_error(2, "Invalid request: property name must be a string", &id);
                };
                if name != "combined" {
                    return ws_error(0, "Unknown property", &id);
                }
                if method == "GET_PROPERTY" {
                    return ws_result(&Value::Bool(self.combined), &id);
                }
                match list.and_then(|l| l.get(1)).and_then(Value::as_bool) {
                    Some(b) => {
                        self.combined = b;
                        ws_result(&Value::Null, &id)
                    }
                    None => ws_error(1, "Invalid value type: expected Boolean", &id),
                }
            }
            other => ws_error(
                2,
                &format!(
                    "Invalid request: unknown variant `{other}`, expected one of `SUBSCRIBE`, \
                     `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
                ),
                &id,
            ),
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// `{"stream":"<name>","data":<payload>}`
fn wrap(name: &str, payload: &str) -> String {
    let mut s = String::with_capacity(payload.len() + name.len() + 24);
    s.push_str("{\"stream\":");
    push_json_str(&mut s, name);
    s.push_str(",\"data\":");
    s.push_str(payload);
    s.push('}');
    s
}
