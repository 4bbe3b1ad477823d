//! Binance market streams: parsing stream names (`btcusdt@trade`, `btcusdt@kline_1m`,
//! `btcusd_perp@markPrice@1s`, …) per market and turning the deterministic data of
//! [`crate::data`] and [`crate::futures`] into each stream's events, in Binance's JSON shapes
//! (spot's or the futures'), as wall-clock time passes.
//!
//! Every subscription keeps a cursor (the next trade id, the current candle, the last book
//! slot sent, the next mark-price second), so events are exactly the REST records of the same
//! server and market: trades in id order as their trade time passes, kline updates and closed
//! candles equal to the klines endpoint, diff-depth events that chain the books the depth
//! endpoint shows (see [`crate::data::order_book_in`]), mark prices and funding rates equal to
//! the mark-price klines and `fundingRate`.

use crate::data::{self, Data, Market};
use crate::fmt::{push_fixed8, push_fixed8_wide, push_i64, push_json_str, push_u64};
use crate::futures::{self, FUNDING_INTERVAL_MS};
use crate::market::SimMarket;
use kline_interval::Interval;

/// At most this many events per stream and poll; the rest follow at the next poll.
const MAX_EVENTS_PER_POLL: usize = 2000;
/// A liquidation stream that fell further behind than this skips to the present.
const MAX_LIQUIDATION_CATCH_UP_MS: i64 = 3_600_000;

/// What a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Spot only.
    Trade,
    AggTrade,
    Kline(Interval),
    /// Diff depth, one event per `period_ms` (spot: 100 or 1000; futures: 100, 250 or 500).
    Depth {
        period_ms: i64,
    },
    BookTicker,
    /// Futures only from here on: mark price, index and funding every `every_ms`.
    MarkPrice {
        every_ms: i64,
    },
    /// Liquidations of one symbol.
    ForceOrder,
    /// `!forceOrder@arr`: liquidations of every listed symbol of the market.
    ForceOrderAll,
}

impl Kind {
    /// Whether the routed futures endpoint `/public/…` serves it (book streams); every other
    /// stream is served by `/market/…`.
    pub fn is_public(self) -> bool {
        matches!(self, Kind::Depth { .. } | Kind::BookTicker)
    }
}

/// A valid stream name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StreamName {
    /// The name as the client sent it (`btcusdt@depth@100ms`).
    pub name: String,
    /// The upper-case symbol (`BTCUSDT`; empty for `!forceOrder@arr`).
    pub symbol: String,
    pub kind: Kind,
    pub market: SimMarket,
}

/// Parses `<lower-case symbol>@<type>` of `market`; `None` for anything Binance would not
/// stream there (futures: no `@trade`, no `1s` klines; spot: no mark prices, liquidations).
pub(crate) fn parse_stream(market: SimMarket, name: &str) -> Option<StreamName> {
    let futures = market.is_futures();
    if futures && name == "!forceOrder@arr" {
        return Some(StreamName {
            name: name.to_string(),
            symbol: String::new(),
            kind: Kind::ForceOrderAll,
            market,
        });
    }
    let (sym, rest) = name.split_once('@')?;
    if sym.is_empty()
        || !sym
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || (futures && b == b'_'))
    {
        return None;
    }
    let symbol = sym.to_ascii_uppercase();
    market.parse_symbol(&symbol).ok()?;
    let kind = match (rest, futures) {
        ("trade", false) => Kind::Trade,
        ("aggTrade", _) => Kind::AggTrade,
        ("bookTicker", _) => Kind::BookTicker,
        ("depth" | "depth@1000ms", false) => Kind::Depth { period_ms: 1000 },
        ("depth@100ms", _) => Kind::Depth { period_ms: 100 },
        ("depth" | "depth@250ms", true) => Kind::Depth { period_ms: 250 },
        ("depth@500ms", true) => Kind::Depth { period_ms: 500 },
        ("markPrice", true) => Kind::MarkPrice { every_ms: 3000 },
        ("markPrice@1s", true) => Kind::MarkPrice { every_ms: 1000 },
        ("forceOrder", true) => Kind::ForceOrder,
        (other, _) => {
            let iv: Interval = other.strip_prefix("kline_")?.parse().ok()?;
            if futures && iv == Interval::S1 {
                return None;
            }
            Kind::Kline(iv)
        }
    };
    Some(StreamName {
        name: name.to_string(),
        symbol,
        kind,
        market,
    })
}

/// What a poll needs besides the stream's own state.
pub(crate) struct PollCtx<'a> {
    pub data: &'a Data,
    /// Wall-clock milliseconds: the event time `E` and the horizon of what is due.
    pub now: i64,
    pub kline_update_ms: i64,
    pub depth_gap_every: u32,
}

#[derive(Debug)]
enum State {
    Trade {
        next_raw: u64,
    },
    AggTrade {
        next_agg: u64,
    },
    Kline {
        interval: Interval,
        open: i64,
        last_update: i64,
    },
    Depth {
        period_ms: i64,
        last_slot: i64,
        events: u64,
    },
    BookTicker {
        last_slot: i64,
        last_top: Option<data::BookTop>,
    },
    MarkPrice {
        every_ms: i64,
        /// The next event time (a multiple of `every_ms`).
        next: i64,
    },
    ForceOrder {
        /// Liquidations with time `>= from` are still to be sent.
        from: i64,
        /// The symbols covered (one, or every listed one for `!forceOrder@arr`).
        symbols: Vec<(String, Market)>,
    },
}

/// One subscription of a connection: its name and cursor.
#[derive(Debug)]
pub(crate) struct Stream {
    pub name: String,
    pub kind: Kind,
    symbol: String,
    venue: SimMarket,
    market: Market,
    state: State,
}

impl Stream {
    /// A subscription made at `now`: trades from the first one after `now`, the current candle,
    /// book changes after the current slot.
    pub fn new(parsed: StreamName, data: &Data, now: i64) -> Stream {
        let market = Market::of(parsed.market, &parsed.symbol);
        let first_agg = || data.agg_ceil_existing(&market, now.saturating_add(1));
        let slot = data::book_slot(now);
        let state = match parsed.kind {
            Kind::Trade => State::Trade {
                next_raw: first_agg().map_or(u64::MAX, |a| data::raw_range(&market, a).0),
            },
            Kind::AggTrade => State::AggTrade {
                next_agg: first_agg().unwrap_or(u64::MAX),
            },
            Kind::Kline(interval) => State::Kline {
                interval,
                open: interval.align_down(now),
                last_update: i64::MIN,
            },
            Kind::Depth { period_ms } => State::Depth {
                period_ms,
                last_slot: slot,
                events: 0,
            },
            Kind::BookTicker => State::BookTicker {
                last_slot: i64::MIN,
                last_top: None,
            },
            Kind::MarkPrice { every_ms } => State::MarkPrice {
                every_ms,
                next: (now.div_euclid(every_ms) + 1) * every_ms,
            },
            Kind::ForceOrder => State::ForceOrder {
                from: now.saturating_add(1),
                symbols: vec![(parsed.symbol.clone(), market.clone())],
            },
            Kind::ForceOrderAll => State::ForceOrder {
                from: now.saturating_add(1),
                symbols: parsed
                    .market
                    .listed_symbols()
                    .into_iter()
                    .map(|s| {
                        let m = Market::of(parsed.market, &s);
                        (s, m)
                    })
                    .collect(),
            },
        };
        Stream {
            name: parsed.name,
            kind: parsed.kind,
            symbol: parsed.symbol,
            venue: parsed.market,
            market,
            state,
        }
    }

    /// Appends the raw payloads of the events due at `ctx.now`.
    pub fn poll(&mut self, ctx: &PollCtx<'_>, out: &mut Vec<String>) {
        let m = &self.market;
        let sym = self.symbol.as_str();
        let venue = self.venue;
        let futures = venue.is_futures();
        match &mut self.state {
            State::Trade { next_raw } => {
                if *next_raw == u64::MAX {
                    return;
                }
                let mut rows = Vec::new();
                ctx.data
                    .raw_from_id(m, *next_raw, ctx.now, MAX_EVENTS_PER_POLL, &mut rows);
                for t in &rows {
                    let mut s = event_head("trade", ctx.now, sym, 160);
                    s.push_str(",\"t\":");
                    push_u64(&mut s, t.id);
                    s.push_str(",\"p\":\"");
                    push_fixed8(&mut s, t.price);
                    s.push_str("\",\"q\":\"");
                    push_fixed8(&mut s, t.qty);
                    s.push_str("\",\"T\":");
                    push_i64(&mut s, t.time);
                    push_maker(&mut s, t.buyer_maker);
                    out.push(s);
                }
                if let Some(last) = rows.last() {
                    *next_raw = last.id + 1;
                }
            }
            State::AggTrade { next_agg } => {
                if *next_agg == u64::MAX {
                    return;
                }
                let mut rows = Vec::new();
                ctx.data
                    .agg_from_id(m, *next_agg, ctx.now, MAX_EVENTS_PER_POLL, &mut rows);
                for a in &rows {
                    let mut s = event_head("aggTrade", ctx.now, sym, 180);
                    s.push_str(",\"a\":");
                    push_u64(&mut s, a.id);
                    s.push_str(",\"p\":\"");
                    push_fixed8(&mut s, a.price);
                    s.push_str("\",\"q\":\"");
                    push_fixed8(&mut s, a.qty);
                    s.push_str("\",\"f\":");
                    push_u64(&mut s, a.first);
                    s.push_str(",\"l\":");
                    push_u64(&mut s, a.last);
                    s.push_str(",\"T\":");
                    push_i64(&mut s, a.time);
                    if futures {
                        // Futures events have no best-match flag.
                        s.push_str(if a.buyer_maker {
                            ",\"m\":true}"
                        } else {
                            ",\"m\":false}"
                        });
                    } else {
                        push_maker(&mut s, a.buyer_maker);
                    }
                    out.push(s);
                }
                if let Some(last) = rows.last() {
                    *next_agg = last.id + 1;
                }
            }
            State::Kline {
                interval,
                open,
                last_update,
            } => {
                let iv = *interval;
                let mut closed = 0;
                while ctx.now > iv.close_time(*open) {
                    if closed == MAX_EVENTS_PER_POLL {
                        // Far behind (the client did not read for ages): skip to the present.
                        *open = iv.align_down(ctx.now);
                        break;
                    }
                    out.push(kline_event(ctx, m, sym, iv, *open, true));
                    *open = iv.next_open(*open);
                    closed += 1;
                }
                if ctx.now.saturating_sub(*last_update) >= ctx.kline_update_ms {
                    out.push(kline_event(ctx, m, sym, iv, *open, false));
                    *last_update = ctx.now;
                }
            }
            State::Depth {
                period_ms,
                last_slot,
                events,
            } => {
                let cur = data::book_slot(ctx.now);
                // An event is due when the slots enter a new period (100 ms: every slot).
                let period = |slot: i64| (slot * data::BOOK_SLOT_MS).div_euclid(*period_ms);
                if period(cur) <= period(*last_slot) {
                    return;
                }
                let from = *last_slot + 1;
                *last_slot = cur;
                *events += 1;
                let gap = ctx.depth_gap_every;
                if gap > 0 && *events % u64::from(gap) == 0 {
                    // Swallowed: the next event starts after a hole in the update ids.
                    return;
                }
                let old = data::book_at(m, from - 1);
                let new = data::book_at(m, cur);
                let mut s = if futures {
                    futures_head("depthUpdate", ctx.now, ctx.now, sym, 4096)
                } else {
                    event_head("depthUpdate", ctx.now, sym, 4096)
                };
                s.push_str(",\"U\":");
                push_u64(&mut s, data::first_update_id(venue, m, from));
                s.push_str(",\"u\":");
                push_u64(&mut s, data::last_update_id(venue, m, cur));
                if futures {
                    // Futures ids jump between events: clients chain them by `pu`.
                    s.push_str(",\"pu\":");
                    push_u64(&mut s, data::last_update_id(venue, m, from - 1));
                }
                s.push_str(",\"b\":");
                push_levels(&mut s, &data::side_diff(&old.bids, &new.bids, true));
                s.push_str(",\"a\":");
                push_levels(&mut s, &data::side_diff(&old.asks, &new.asks, false));
                s.push('}');
                out.push(s);
            }
            State::BookTicker {
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
                let (bid, (ask, ask_qty)) = top;
                let (bid, bid_qty) = bid.unwrap_or((0, 0));
                let mut s = String::with_capacity(200);
                if futures {
                    s.push_str("{\"e\":\"bookTicker\",\"u\":");
                    push_u64(&mut s, data::last_update_id(venue, m, cur));
                    s.push_str(",\"E\":");
                    push_i64(&mut s, ctx.now);
                    s.push_str(",\"T\":");
                    push_i64(&mut s, ctx.now);
                } else {
                    s.push_str("{\"u\":");
                    push_u64(&mut s, data::slot_last_update_id(m, cur));
                }
                s.push_str(",\"s\":");
                push_json_str(&mut s, sym);
                for (key, v) in [(",\"b\":\"", bid), ("\",\"B\":\"", bid_qty)] {
                    s.push_str(key);
                    push_fixed8(&mut s, v);
                }
                for (key, v) in [("\",\"a\":\"", ask), ("\",\"A\":\"", ask_qty)] {
                    s.push_str(key);
                    push_fixed8(&mut s, v);
                }
                s.push_str("\"}");
                out.push(s);
            }
            State::MarkPrice { every_ms, next } => {
                if ctx.now.saturating_sub(*next) > MAX_LIQUIDATION_CATCH_UP_MS {
                    // Far behind (the client did not read for ages): skip to the present.
                    *next = ctx.now.div_euclid(*every_ms) * *every_ms;
                }
                while *next <= ctx.now {
                    out.push(mark_price_event(m, sym, *next));
                    *next += *every_ms;
                }
            }
            State::ForceOrder { from, symbols } => {
                if ctx.now < *from {
                    return;
                }
                if ctx.now - *from > MAX_LIQUIDATION_CATCH_UP_MS {
                    *from = ctx.now - MAX_LIQUIDATION_CATCH_UP_MS;
                }
                let mut due = Vec::new();
                for (symbol, m) in symbols.iter() {
                    let mut sec = from.div_euclid(1000) * 1000;
                    while sec <= ctx.now {
                        if let Some(l) = futures::liquidation_at(m, sec)
                            .filter(|l| l.time >= *from && l.time <= ctx.now)
                        {
                            due.push((l, symbol.as_str()));
                        }
                        sec += 1000;
                    }
                }
                due.sort_by_key(|(l, s)| (l.time, *s));
                for (l, symbol) in due {
                    out.push(force_order_event(ctx.now, symbol, &l));
                }
                *from = ctx.now + 1;
            }
        }
    }
}

/// `{"e":"<event>","E":<now>,"T":<time>,"s":"<SYMBOL>"` (the object is left open): the futures
/// events' head, with a transaction time.
fn futures_head(event: &str, now: i64, time: i64, symbol: &str, capacity: usize) -> String {
    let mut s = String::with_capacity(capacity);
    s.push_str("{\"e\":\"");
    s.push_str(event);
    s.push_str("\",\"E\":");
    push_i64(&mut s, now);
    s.push_str(",\"T\":");
    push_i64(&mut s, time);
    s.push_str(",\"s\":");
    push_json_str(&mut s, symbol);
    s
}

/// The `markPriceUpdate` of second `t`: mark, index, estimated settle price, and the rate and
/// time of the next funding (the rate `fundingRate` reports for that funding).
fn mark_price_event(m: &Market, sym: &str, t: i64) -> String {
    let k = futures::next_funding_index(t);
    let mut s = event_head("markPriceUpdate", t, sym, 220);
    for (key, v) in [
        (",\"p\":\"", futures::mark_units(m, t)),
        ("\",\"i\":\"", futures::index_units(m, t)),
        ("\",\"P\":\"", futures::settle_units(m, t)),
        ("\",\"r\":\"", futures::funding_units(m, k)),
    ] {
        s.push_str(key);
        push_fixed8(&mut s, v);
    }
    s.push_str("\",\"T\":");
    push_i64(&mut s, k * FUNDING_INTERVAL_MS);
    s.push('}');
    s
}

/// A `forceOrder` event: the liquidation order, filled at once.
fn force_order_event(now: i64, sym: &str, l: &futures::LiqUnits) -> String {
    let mut s = String::with_capacity(260);
    s.push_str("{\"e\":\"forceOrder\",\"E\":");
    push_i64(&mut s, now.max(l.time));
    s.push_str(",\"o\":{\"s\":");
    push_json_str(&mut s, sym);
    s.push_str(if l.sell {
        ",\"S\":\"SELL\""
    } else {
        ",\"S\":\"BUY\""
    });
    s.push_str(",\"o\":\"LIMIT\",\"f\":\"IOC\",\"q\":\"");
    push_fixed8(&mut s, l.qty);
    s.push_str("\",\"p\":\"");
    push_fixed8(&mut s, l.price);
    s.push_str("\",\"ap\":\"");
    push_fixed8(&mut s, l.avg_price);
    s.push_str("\",\"X\":\"FILLED\",\"l\":\"");
    push_fixed8(&mut s, l.qty);
    s.push_str("\",\"z\":\"");
    push_fixed8(&mut s, l.qty);
    s.push_str("\",\"T\":");
    push_i64(&mut s, l.time);
    s.push_str("}}");
    s
}

/// `{"e":"<event>","E":<now>,"s":"<SYMBOL>"` (the object is left open).
fn event_head(event: &str, now: i64, symbol: &str, capacity: usize) -> String {
    let mut s = String::with_capacity(capacity);
    s.push_str("{\"e\":\"");
    s.push_str(event);
    s.push_str("\",\"E\":");
    push_i64(&mut s, now);
    s.push_str(",\"s\":");
    push_json_str(&mut s, symbol);
    s
}

/// `,"m":…,"M":true}` (closes the object).
fn push_maker(s: &mut String, buyer_maker: bool) {
    s.push_str(if buyer_maker {
        ",\"m\":true,\"M\":true}"
    } else {
        ",\"m\":false,\"M\":true}"
    });
}

/// `[["price","qty"],…]` (Binance's depth and Bybit's orderbook write levels alike).
pub(crate) fn push_levels(s: &mut String, levels: &[(i64, i64)]) {
    s.push('[');
    for (i, &(p, q)) in levels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("[\"");
        push_fixed8(s, p);
        s.push_str("\",\"");
        push_fixed8(s, q);
        s.push_str("\"]");
    }
    s.push(']');
}

/// A kline event for the candle opened at `open`: closed (`x` = true, the values of
/// `/api/v3/klines`) or the candle so far at `ctx.now`.
fn kline_event(
    ctx: &PollCtx<'_>,
    m: &Market,
    sym: &str,
    iv: Interval,
    open: i64,
    closed: bool,
) -> String {
    let now = if closed { i64::MAX } else { ctx.now };
    let k = data::kline_units(m, ctx.data, iv, open, now);
    let (first, last) = ctx
        .data
        .raw_span(m, open, k.close_time.min(ctx.now))
        .map_or((-1, -1), |(f, l)| (f as i64, l as i64));
    let mut s = event_head("kline", ctx.now, sym, 400);
    s.push_str(",\"k\":{\"t\":");
    push_i64(&mut s, k.open_time);
    s.push_str(",\"T\":");
    push_i64(&mut s, k.close_time);
    s.push_str(",\"s\":");
    push_json_str(&mut s, sym);
    s.push_str(",\"i\":\"");
    s.push_str(iv.as_str());
    s.push_str("\",\"f\":");
    push_i64(&mut s, first);
    s.push_str(",\"L\":");
    push_i64(&mut s, last);
    s.push_str(",\"o\":\"");
    push_fixed8(&mut s, k.open);
    s.push_str("\",\"c\":\"");
    push_fixed8(&mut s, k.close);
    s.push_str("\",\"h\":\"");
    push_fixed8(&mut s, k.high);
    s.push_str("\",\"l\":\"");
    push_fixed8(&mut s, k.low);
    s.push_str("\",\"v\":\"");
    push_fixed8_wide(&mut s, k.volume);
    s.push_str("\",\"n\":");
    push_u64(&mut s, k.trades);
    s.push_str(if closed {
        ",\"x\":true"
    } else {
        ",\"x\":false"
    });
    s.push_str(",\"q\":\"");
    push_fixed8_wide(&mut s, k.quote_volume);
    s.push_str("\",\"V\":\"");
    push_fixed8_wide(&mut s, k.taker_buy_base);
    s.push_str("\",\"Q\":\"");
    push_fixed8_wide(&mut s, k.taker_buy_quote);
    s.push_str("\",\"B\":\"0\"}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn stream_names() {
        let spot = |n: &str| parse_stream(SimMarket::Spot, n);
        let s = spot("btcusdt@depth@100ms").unwrap();
        assert_eq!(
            (s.symbol.as_str(), s.kind),
            ("BTCUSDT", Kind::Depth { period_ms: 100 })
        );
        assert_eq!(
            spot("ethbtc@kline_1M").unwrap().kind,
            Kind::Kline(Interval::Mo1)
        );
        assert_eq!(spot("ethbtc@aggTrade").unwrap().kind, Kind::AggTrade);
        let usdm = |n: &str| parse_stream(SimMarket::UsdM, n);
        let coinm = |n: &str| parse_stream(SimMarket::CoinM, n);
        assert_eq!(
            usdm("btcusdt@depth").unwrap().kind,
            Kind::Depth { period_ms: 250 }
        );
        assert_eq!(
            coinm("btcusd_perp@markPrice@1s").unwrap().kind,
            Kind::MarkPrice { every_ms: 1000 }
        );
        assert_eq!(usdm("!forceOrder@arr").unwrap().kind, Kind::ForceOrderAll);
        for bad in [
            "btcusdt@trade",
            "btcusdt@kline_1s",
            "ethbtc@aggTrade",
            "btcusd_perp@aggTrade",
        ] {
            assert!(usdm(bad).is_none(), "{bad}");
        }
        assert!(coinm("btcusdt@aggTrade").is_none());
        assert!(spot("btcusdt@markPrice").is_none());
        assert!(spot("!forceOrder@arr").is_none());
        for bad in [
            "BTCUSDT@trade",
            "btcusdt@aggtrade",
            "btcusdt@kline_2m",
            "btcusdt",
            "@trade",
            "nope@trade",
            "btcusdt@depth@250ms",
            "btcusdt@ticker",
        ] {
            assert!(spot(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn events_follow_the_clock() {
        let data = Data::new(100, 0, vec![(12, 13)]);
        let now = 1_000;
        let ctx = |now| PollCtx {
            data: &data,
            now,
            kline_update_ms: 1000,
            depth_gap_every: 3,
        };
        let parse = |n: &str| parse_stream(SimMarket::Spot, n).unwrap();
        let mut agg = Stream::new(parse("bnbusdt@aggTrade"), &data, now);
        let mut out = Vec::new();
        agg.poll(&ctx(now), &mut out);
        assert!(out.is_empty(), "nothing before the subscription");
        agg.poll(&ctx(now + 1_000), &mut out);
        let ids: Vec<u64> = out
            .iter()
            .map(|s| {
                serde_json::from_str::<Value>(s).unwrap()["a"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert!(!ids.contains(&12) && ids.contains(&14), "{ids:?}");
        for s in &out {
            let v: Value = serde_json::from_str(s).unwrap();
            let t = v["T"].as_i64().unwrap();
            assert!(now < t && t <= now + 1_000);
            let a = data.trade("BNBUSDT", v["a"].as_u64().unwrap()).unwrap();
            assert_eq!((a.price.as_str(), a.time), (v["p"].as_str().unwrap(), t));
        }

        let mut depth = Stream::new(parse("bnbusdt@depth@100ms"), &data, now);
        let mut out = Vec::new();
        for t in (now..now + 1_000).step_by(100) {
            depth.poll(&ctx(t + 50), &mut out);
        }
        let ranges: Vec<(u64, u64)> = out
            .iter()
            .map(|s| {
                let v: Value = serde_json::from_str(s).unwrap();
                (v["U"].as_u64().unwrap(), v["u"].as_u64().unwrap())
            })
            .collect();
        // Slots 11..=19 are due; events 3, 6 and 9 are swallowed.
        assert_eq!(ranges.len(), 6);
        let gaps = ranges.windows(2).filter(|w| w[1].0 != w[0].1 + 1).count();
        assert_eq!(gaps, 2);
    }
}
