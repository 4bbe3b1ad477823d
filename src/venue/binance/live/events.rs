//! Binance's stream events into records, per live type: the range gate (events before the
//! range are skipped, one at or after its end finishes the symbol), de-duplication against the
//! last id published, and the REST backfill of whatever a gap let through before the event is
//! published.

use serde::Deserialize;

use super::book::{self, WsDepth};
use super::BinanceFeed;
use crate::error::{LoaderError, Result};
use crate::flat_json;
use crate::record::{
    tag, BookTickerRecord, DepthUpdateRecord, LiquidationRecord, MarkPriceRecord, RawAggTrade,
    RawKline, RawTrade,
};
use crate::registry::LiveType;
use crate::venue::live::book::Applied;
use crate::venue::live::{RangePos, SymbolState};

#[derive(Debug, Deserialize)]
struct WsTrade<'a> {
    #[serde(rename = "E")]
    event_time: i64,
    t: u64,
    p: &'a str,
    q: &'a str,
    #[serde(rename = "T")]
    time: i64,
    m: bool,
    #[serde(rename = "M", default)]
    best_match: Option<bool>,
}

impl<'a> WsTrade<'a> {
    /// Reads one trade event the flat way (`flat_json`) where Binance's layout allows, through
    /// serde_json otherwise: the same result either way.
    fn from_json(text: &'a str) -> serde_json::Result<Self> {
        flat_json::or_serde(text, Self::from_flat)
    }

    fn from_flat(text: &'a str) -> Option<Self> {
        let (mut event_time, mut t, mut p, mut q, mut time, mut m) = Default::default();
        let mut best_match: Option<Option<bool>> = None;
        flat_json::members(text, |name, v| match name {
            "E" => flat_json::once(&mut event_time, v.i64()),
            "t" => flat_json::once(&mut t, v.u64()),
            "p" => flat_json::once(&mut p, v.str()),
            "q" => flat_json::once(&mut q, v.str()),
            "T" => flat_json::once(&mut time, v.i64()),
            "m" => flat_json::once(&mut m, v.bool()),
            "M" => flat_json::once(&mut best_match, v.opt_bool()),
            _ => Some(()),
        })?;
        Some(WsTrade {
            event_time: event_time?,
            t: t?,
            p: p?,
            q: q?,
            time: time?,
            m: m?,
            best_match: best_match.flatten(),
        })
    }
}

#[derive(Deserialize)]
struct WsKlineEvent<'a> {
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(borrow)]
    k: WsKline<'a>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsKline<'a> {
    t: i64,
    T: i64,
    o: &'a str,
    c: &'a str,
    h: &'a str,
    l: &'a str,
    v: &'a str,
    n: u64,
    x: bool,
    q: &'a str,
    V: &'a str,
    Q: &'a str,
}

impl<'a> WsKline<'a> {
    fn raw(&self) -> RawKline<'a> {
        RawKline(
            self.t,
            self.o,
            self.h,
            self.l,
            self.c,
            self.v,
            self.T,
            self.q,
            self.n,
            self.V,
            self.Q,
            serde::de::IgnoredAny,
        )
    }
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsBookTicker<'a> {
    /// Futures only: the event time.
    #[serde(default)]
    E: Option<i64>,
    u: u64,
    b: &'a str,
    B: &'a str,
    a: &'a str,
    A: &'a str,
}

/// `@markPrice@1s` (futures).
#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsMarkPrice<'a> {
    E: i64,
    p: &'a str,
    #[serde(default)]
    i: Option<&'a str>,
    P: &'a str,
    r: &'a str,
    T: i64,
}

/// `@forceOrder` (futures): the order under `o`.
#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsForceOrder<'a> {
    E: i64,
    #[serde(borrow)]
    o: WsLiquidation<'a>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct WsLiquidation<'a> {
    S: &'a str,
    o: &'a str,
    f: &'a str,
    q: &'a str,
    p: &'a str,
    ap: &'a str,
    X: &'a str,
    l: &'a str,
    z: &'a str,
    T: i64,
}

/// The fields that order one stream's events, per live type (see [`ordinal`]).
#[derive(Deserialize)]
struct AggIdOrdinal {
    a: i64,
}

#[derive(Deserialize)]
struct TradeIdOrdinal {
    t: i64,
}

#[derive(Deserialize)]
struct UpdateIdOrdinal {
    u: i64,
}

#[derive(Deserialize)]
struct KlineOrdinal {
    k: OpenTime,
}

#[derive(Deserialize)]
struct OpenTime {
    t: i64,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct EventTimeOrdinal {
    E: i64,
}

#[derive(Deserialize)]
struct LiquidationOrdinal {
    o: TradeTime,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct TradeTime {
    T: i64,
}

/// The ordinal that orders a stream of `live_type`'s events and de-duplicates them (the same
/// one [`BinanceFeed::event`] admits by); `None` when the event cannot be read.
pub(super) fn ordinal(live_type: LiveType, data: &str) -> Option<i64> {
    fn parse<'a, T: Deserialize<'a>>(data: &'a str) -> Option<T> {
        serde_json::from_str(data).ok()
    }
    match live_type {
        LiveType::AggTrades => parse(data).map(|o: AggIdOrdinal| o.a),
        LiveType::Trades => parse(data).map(|o: TradeIdOrdinal| o.t),
        LiveType::Depth | LiveType::OrderBook | LiveType::BookTicker => {
            parse(data).map(|o: UpdateIdOrdinal| o.u)
        }
        LiveType::Candles(_) => parse(data).map(|o: KlineOrdinal| o.k.t),
        LiveType::MarkPrice => parse(data).map(|o: EventTimeOrdinal| o.E),
        LiveType::Liquidations => parse(data).map(|o: LiquidationOrdinal| o.o.T),
    }
}

/// A live trade as the records know it.
fn raw_trade<'a>(w: &WsTrade<'a>) -> RawTrade<'a> {
    RawTrade {
        id: w.t,
        price: w.p,
        qty: w.q,
        time: w.time,
        is_buyer_maker: w.m,
        is_best_match: w.best_match,
    }
}

fn unexpected(data: &str) -> impl Fn(serde_json::Error) -> LoaderError + '_ {
    move |e| LoaderError::Exchange(format!("unexpected live event ({e}): {data:.200}"))
}

impl BinanceFeed {
    /// [`event`](Self::event) without awaiting, for the kinds a busy stream sends (trades), where
    /// the event needs nothing fetched before it: `Ok(false)` leaves it to `event` as it was.
    pub(super) fn event_now(&self, st: &mut SymbolState, data: &str) -> Result<bool> {
        if st.done {
            return Ok(true);
        }
        match self.scope.live_type {
            LiveType::AggTrades => {
                let t = RawAggTrade::from_json(data).map_err(unexpected(data))?;
                self.scope.note_event(t.time);
                let Some(admitted) = self.trade_now(st, t.time, t.a) else {
                    return Ok(false);
                };
                if admitted {
                    st.batch.push_agg_trade(&t)?;
                }
            }
            LiveType::Trades => {
                let w = WsTrade::from_json(data).map_err(unexpected(data))?;
                self.scope.note_event(w.event_time);
                let t = raw_trade(&w);
                let Some(admitted) = self.trade_now(st, t.time, t.id) else {
                    return Ok(false);
                };
                if admitted {
                    st.batch.push_trade(&t)?;
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// [`before_trade`](Self::before_trade) and the cursor, where no backfill is needed:
    /// whether the trade is to be published; `None` when a backfill must come first (nothing
    /// changed).
    fn trade_now(&self, st: &mut SymbolState, time: i64, id: u64) -> Option<bool> {
        if !self.scope.gate(st, time) {
            return Some(false);
        }
        if self.may_miss(st, time, id) {
            return None;
        }
        Some(st.cursor.admit(time, id as i64))
    }

    /// Whether trades before `id` (at `time`) may be missing: what was published does not lead
    /// up to it.
    fn may_miss(&self, st: &SymbolState, time: i64, id: u64) -> bool {
        match st.cursor.next_id() {
            Some(next) => id > next,
            None => self.scope.range.is_some_and(|r| r.start_ms < time),
        }
    }

    pub(super) async fn event(&self, st: &mut SymbolState, data: &str) -> Result<()> {
        if st.done {
            return Ok(());
        }
        let bad = unexpected(data);
        match self.scope.live_type {
            LiveType::AggTrades => {
                let t = RawAggTrade::from_json(data).map_err(bad)?;
                self.scope.note_event(t.time);
                if self.before_trade(st, t.time, t.a).await? && st.cursor.admit(t.time, t.a as i64)
                {
                    st.batch.push_agg_trade(&t)?;
                }
            }
            LiveType::Trades => {
                let w = WsTrade::from_json(data).map_err(bad)?;
                self.scope.note_event(w.event_time);
                let t = raw_trade(&w);
                if self.before_trade(st, t.time, t.id).await?
                    && st.cursor.admit(t.time, t.id as i64)
                {
                    st.batch.push_trade(&t)?;
                }
            }
            LiveType::Candles(iv) => {
                let ev: WsKlineEvent = serde_json::from_str(data).map_err(bad)?;
                self.scope.note_event(ev.event_time);
                let k = &ev.k;
                if !k.x {
                    // Updates of the open candle share its _key: published only on request,
                    // and never for a candle already published closed.
                    if self.scope.cfg.all_kline_updates
                        && self.scope.position(k.t) == RangePos::In
                        && st.cursor.last.is_none_or(|l| k.t > l)
                    {
                        st.batch.push_kline(iv.as_str(), &k.raw())?;
                    }
                    return Ok(());
                }
                if !self.scope.gate(st, k.t) {
                    return Ok(());
                }
                let from = match st.cursor.last {
                    Some(last) => Some(iv.next_open(last)),
                    None => self.scope.range.map(|r| iv.align_up(r.start_ms)),
                };
                if let Some(from) = from.filter(|&f| f < k.t) {
                    Box::pin(self.fill_candles(st, iv, from, k.t)).await?;
                }
                if st.cursor.admit(k.t, k.t) {
                    st.batch.push_kline(iv.as_str(), &k.raw())?;
                }
            }
            LiveType::Depth => {
                let d: WsDepth = serde_json::from_str(data).map_err(bad)?;
                self.scope.note_event(d.E);
                if !self.scope.gate(st, d.E) {
                    return Ok(());
                }
                // Spot ids chain as U = previous u + 1; futures events name the previous u.
                let sequence_break = st.cursor.last.is_some_and(|last| {
                    d.u as i64 > last
                        && match d.pu {
                            Some(pu) => pu as i64 != last,
                            None => d.U as i64 != last + 1,
                        }
                });
                if !st.cursor.admit(d.E, d.u as i64) {
                    return Ok(());
                }
                if sequence_break {
                    st.out.summary.sequence_breaks += 1;
                    tracing::warn!(symbol = %st.symbol, got = d.U, "diff depth sequence broke: updates were lost");
                }
                let key = st.batch.key(tag::DEPTH_UPDATE, d.u);
                st.batch.push_record(
                    d.E,
                    &key,
                    &DepthUpdateRecord {
                        _key: &key,
                        market: self.exchange.market().as_str(),
                        symbol: &st.symbol,
                        timestamp: d.E,
                        first_update_id: d.U,
                        final_update_id: d.u,
                        previous_final_update_id: d.pu,
                        bids: &d.b,
                        asks: &d.a,
                        sequence_break,
                    },
                )?;
            }
            LiveType::BookTicker => {
                let b: WsBookTicker = serde_json::from_str(data).map_err(bad)?;
                // Binance's spot bookTicker carries no event time: the receive time stands in.
                let now = b.E.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                self.scope.note_event(now);
                if !self.scope.gate(st, now) || !st.cursor.admit(now, b.u as i64) {
                    return Ok(());
                }
                let key = st.batch.key(tag::BOOK_TICKER, b.u);
                st.batch.push_record(
                    now,
                    &key,
                    &BookTickerRecord {
                        _key: &key,
                        exchange: None,
                        market: self.exchange.market().as_str(),
                        symbol: &st.symbol,
                        timestamp: now,
                        update_id: b.u,
                        best_bid_price: b.b,
                        best_bid_qty: b.B,
                        best_ask_price: b.a,
                        best_ask_qty: b.A,
                    },
                )?;
            }
            LiveType::MarkPrice => {
                let m: WsMarkPrice = serde_json::from_str(data).map_err(bad)?;
                self.scope.note_event(m.E);
                if !self.scope.gate(st, m.E) || !st.cursor.admit(m.E, m.E) {
                    return Ok(());
                }
                let key = st.batch.key(tag::MARK_PRICE, m.E);
                st.batch.push_record(
                    m.E,
                    &key,
                    &MarkPriceRecord {
                        _key: &key,
                        market: self.exchange.market().as_str(),
                        symbol: &st.symbol,
                        timestamp: m.E,
                        mark_price: m.p,
                        index_price: m.i,
                        estimated_settle_price: m.P,
                        funding_rate: m.r,
                        next_funding_time: m.T,
                    },
                )?;
            }
            LiveType::Liquidations => {
                let f: WsForceOrder = serde_json::from_str(data).map_err(bad)?;
                self.scope.note_event(f.E);
                let o = &f.o;
                if !self.scope.gate(st, o.T) || !st.cursor.admit(o.T, o.T) {
                    return Ok(());
                }
                let key = st.batch.key(tag::LIQUIDATION, o.T);
                st.batch.push_record(
                    o.T,
                    &key,
                    &LiquidationRecord {
                        _key: &key,
                        exchange: None,
                        market: self.exchange.market().as_str(),
                        symbol: &st.symbol,
                        timestamp: o.T,
                        event_time: Some(f.E),
                        side: o.S,
                        quantity: o.q,
                        price: o.p,
                        order_type: Some(o.o),
                        time_in_force: Some(o.f),
                        average_price: Some(o.ap),
                        status: Some(o.X),
                        last_filled_quantity: Some(o.l),
                        filled_quantity: Some(o.z),
                    },
                )?;
            }
            LiveType::OrderBook => {
                let d: WsDepth = serde_json::from_str(data).map_err(bad)?;
                self.scope.note_event(d.E);
                if !self.scope.gate(st, d.E) {
                    return Ok(());
                }
                // A snapshot older than this event cannot take it; the next event tries again.
                for _ in 0..3 {
                    if book::apply(&mut st.book, &d) == Applied::Ok {
                        break;
                    }
                    Box::pin(self.load_snapshot(st)).await?;
                }
            }
        }
        Ok(())
    }

    /// For a streamed trade at `time` with `id`: whether it is in the range; before it is
    /// published, the trades since the range start (on the first one) or since the last one
    /// published (after a gap) are fetched over REST.
    async fn before_trade(&self, st: &mut SymbolState, time: i64, id: u64) -> Result<bool> {
        if !self.scope.gate(st, time) {
            return Ok(false);
        }
        if self.may_miss(st, time, id) {
            // Boxed: the future of every event stays small (the seam boxes one per event), and
            // only a gap pays for the backfill's.
            Box::pin(self.fill_before(st, time, id)).await?;
        }
        Ok(true)
    }

    /// [`before_trade`](Self::before_trade)'s backfill.
    async fn fill_before(&self, st: &mut SymbolState, time: i64, id: u64) -> Result<()> {
        let end_time = self.scope.range.map_or(i64::MAX, |r| r.end_ms);
        match st.cursor.next_id() {
            Some(next) if id > next => self.fill_trades(st, next, Some(id), end_time).await?,
            Some(_) => {}
            None => {
                if let Some(r) = self.scope.range.filter(|r| r.start_ms < time) {
                    if let Some(first) = self
                        .first_trade_id_at_or_after(&st.symbol, r.start_ms)
                        .await?
                    {
                        if first < id {
                            self.fill_trades(st, first, Some(id), end_time).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trade event read the fast way is what serde_json reads (spot's layout with `M`,
    /// futures' without), and whatever serde_json refuses is declined.
    #[test]
    fn trades_read_the_fast_way_are_what_serde_json_reads() {
        let spot = r#"{"e":"trade","E":1704067200123,"s":"BTCUSDT","t":3000000001,"p":"42000.10000000","q":"0.00100000","T":1704067200120,"m":true,"M":true}"#;
        let futures = r#"{"e":"trade","E":1704067200123,"T":1704067200120,"s":"BTCUSDT","t":5,"p":"42000.1","q":"0.001","X":"MARKET","m":false}"#;
        for event in [spot, futures] {
            assert!(WsTrade::from_flat(event).is_some(), "{event}");
            let texts = flat_json::check::variants(event);
            let fast = flat_json::check::same_as_serde(&texts, WsTrade::from_flat);
            assert!(
                fast > 40,
                "the fast way took only {fast} of {}",
                texts.len()
            );
            flat_json::check::same_result(&texts, WsTrade::from_json);
        }
    }
}
