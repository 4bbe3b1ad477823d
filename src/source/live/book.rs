//! A local order book (`ws_orderbook`) kept per Binance's procedure: a REST snapshot, then the
//! diff-depth events that follow it without a hole; a broken sequence means a new snapshot.
//! Published as snapshots of the top `ORDERBOOK_DEPTH` levels.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::Result;
use crate::market::Market;
use crate::record::{OrderBookRecord, RecordBatch};
use crate::venue::binance::api::DepthSnapshot;

/// A diff-depth event (`@depth@100ms`). Futures events add `pu`, the previous event's `u`: their
/// update ids are not contiguous between events, so `pu` is what chains them.
#[derive(Deserialize)]
#[allow(non_snake_case)]
pub struct WsDepth<'a> {
    pub E: i64,
    pub U: u64,
    pub u: u64,
    #[serde(default)]
    pub pu: Option<u64>,
    #[serde(borrow)]
    pub b: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    pub a: Vec<[&'a str; 2]>,
}

/// The snapshot size to ask for `depth` published levels: at least 100 (so levels just below
/// the published ones are known when prices move), else the smallest of the market's weight
/// steps that holds them (spot 100, 500, 1,000, 5,000 for weight 5, 25, 50, 250; futures 100,
/// 500, 1,000 for 5, 10, 20).
pub fn snapshot_limit(market: Market, depth: usize) -> u32 {
    let levels = u32::try_from(depth).unwrap_or(u32::MAX).max(100);
    match market {
        Market::Spot => match levels {
            0..=100 => 100,
            101..=500 => 500,
            501..=1000 => 1000,
            _ => 5000,
        },
        _ => market.depth_limit_for(levels),
    }
}

/// A price as an integer of 1e-8 units, so levels sort exactly.
fn price_key(p: &str) -> Option<i128> {
    let (int, frac) = p.split_once('.').unwrap_or((p, ""));
    if frac.len() > 18 {
        return None;
    }
    let mut v: i128 = int.parse().ok()?;
    let mut digits = 0;
    for ch in frac.bytes().take(8) {
        v = v * 10 + (ch as char).to_digit(10)? as i128;
        digits += 1;
    }
    for _ in digits..8 {
        v *= 10;
    }
    Some(v)
}

fn is_zero(q: &str) -> bool {
    q.bytes().all(|b| b == b'0' || b == b'.')
}

type Side = BTreeMap<i128, (String, String)>;

#[derive(Default)]
pub struct Book {
    bids: Side,
    asks: Side,
    last_update_id: u64,
    /// No snapshot yet, or the sequence broke.
    pub needs_snapshot: bool,
    /// The snapshot is in place; the first applied diff must straddle it.
    awaiting_first: bool,
    last_event_ms: i64,
    published_update_id: u64,
    /// Times the book was rebuilt after its sequence broke.
    pub resyncs: u64,
}

/// What a diff did to the book.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied, or already contained in the snapshot.
    Ok,
    /// The sequence broke: a new snapshot is needed before this diff can apply.
    NeedsSnapshot,
}

impl Book {
    pub fn new() -> Self {
        Book {
            needs_snapshot: true,
            ..Default::default()
        }
    }

    fn apply_levels(side: &mut Side, levels: &[[&str; 2]]) {
        for [p, q] in levels {
            let Some(k) = price_key(p) else { continue };
            if is_zero(q) {
                side.remove(&k);
            } else {
                side.insert(k, (p.to_string(), q.to_string()));
            }
        }
    }

    pub fn load_snapshot(&mut self, snap: DepthSnapshot) {
        self.bids.clear();
        self.asks.clear();
        for [p, q] in &snap.bids {
            Self::apply_levels(&mut self.bids, &[[p.as_str(), q.as_str()]]);
        }
        for [p, q] in &snap.asks {
            Self::apply_levels(&mut self.asks, &[[p.as_str(), q.as_str()]]);
        }
        self.last_update_id = snap.last_update_id;
        self.needs_snapshot = false;
        self.awaiting_first = true;
    }

    /// Applies a diff per Binance's rules: drop what the snapshot holds; the first applied diff
    /// straddles it; each next one starts right after the previous (spot: `U` = previous `u` +
    /// 1; futures: `pu` = previous `u`, and the first has `U <= lastUpdateId <= u`).
    pub fn apply(&mut self, d: &WsDepth<'_>) -> Applied {
        if self.needs_snapshot {
            return Applied::NeedsSnapshot;
        }
        let last = self.last_update_id;
        let fits = match d.pu {
            None => {
                if d.u <= last {
                    return Applied::Ok; // already in the snapshot, or a duplicate
                }
                if self.awaiting_first {
                    d.U <= last + 1
                } else {
                    d.U == last + 1
                }
            }
            Some(pu) => {
                if d.u < last || (!self.awaiting_first && d.u == last) {
                    return Applied::Ok;
                }
                if self.awaiting_first {
                    d.U <= last
                } else {
                    pu == last
                }
            }
        };
        if !fits {
            self.resyncs += 1;
            self.needs_snapshot = true;
            return Applied::NeedsSnapshot;
        }
        Self::apply_levels(&mut self.bids, &d.b);
        Self::apply_levels(&mut self.asks, &d.a);
        self.last_update_id = d.u;
        self.awaiting_first = false;
        self.last_event_ms = d.E;
        Applied::Ok
    }

    /// Pushes a snapshot of the top `depth` levels when the book changed since the last one.
    pub fn publish(&mut self, symbol: &str, depth: usize, batch: &mut RecordBatch) -> Result<()> {
        if self.needs_snapshot
            || self.awaiting_first
            || self.last_update_id == self.published_update_id
        {
            return Ok(());
        }
        let bids: Vec<[&str; 2]> = self
            .bids
            .values()
            .rev()
            .take(depth)
            .map(|(p, q)| [p.as_str(), q.as_str()])
            .collect();
        let asks: Vec<[&str; 2]> = self
            .asks
            .values()
            .take(depth)
            .map(|(p, q)| [p.as_str(), q.as_str()])
            .collect();
        let key = batch.key(crate::record::tag::ORDER_BOOK, self.last_update_id);
        let market = batch.market.as_str();
        batch.push_record(
            self.last_event_ms,
            &key,
            &OrderBookRecord {
                _key: &key,
                market,
                symbol,
                timestamp: self.last_event_ms,
                last_update_id: self.last_update_id,
                bids,
                asks,
                resyncs: self.resyncs,
            },
        )?;
        self.published_update_id = self.last_update_id;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_sort_exactly() {
        assert_eq!(price_key("33365.39000000"), Some(3_336_539_000_000));
        assert_eq!(price_key("0.00000001"), Some(1));
        assert_eq!(price_key("12"), Some(1_200_000_000));
        assert!(price_key("1.2x").is_none());
        assert!(is_zero("0.00000000") && !is_zero("0.00000001"));
    }

    #[test]
    fn the_snapshot_holds_every_published_level() {
        let spot = |d| snapshot_limit(Market::Spot, d);
        assert_eq!(spot(20), 100);
        assert_eq!(spot(100), 100);
        assert_eq!(spot(101), 500);
        assert_eq!(spot(1000), 1000);
        assert_eq!(spot(5000), 5000);
        let futures = |d| snapshot_limit(Market::UsdM, d);
        assert_eq!((futures(20), futures(101), futures(1000)), (100, 500, 1000));
    }

    #[test]
    fn a_broken_sequence_asks_for_a_snapshot() {
        let mut book = Book::new();
        let d = |u0: u64, u1: u64| WsDepth {
            E: 1,
            U: u0,
            u: u1,
            pu: None,
            b: vec![["1.0", "2.0"]],
            a: vec![],
        };
        assert_eq!(book.apply(&d(1, 2)), Applied::NeedsSnapshot);
        book.load_snapshot(DepthSnapshot {
            last_update_id: 10,
            bids: vec![],
            asks: vec![],
        });
        assert_eq!(
            book.apply(&d(5, 9)),
            Applied::Ok,
            "inside the snapshot: dropped"
        );
        assert_eq!(book.apply(&d(9, 12)), Applied::Ok, "straddles the snapshot");
        assert_eq!(
            book.apply(&d(14, 15)),
            Applied::NeedsSnapshot,
            "13 is missing"
        );
        assert_eq!(book.resyncs, 1);
    }

    #[test]
    fn futures_events_chain_by_their_previous_update_id() {
        // Futures ids jump between events; `pu` names the previous event's `u`.
        let mut book = Book::new();
        let d = |u0: u64, u1: u64, pu: u64| WsDepth {
            E: 1,
            U: u0,
            u: u1,
            pu: Some(pu),
            b: vec![["1.0", "2.0"]],
            a: vec![],
        };
        book.load_snapshot(DepthSnapshot {
            last_update_id: 100,
            bids: vec![],
            asks: vec![],
        });
        assert_eq!(
            book.apply(&d(80, 90, 70)),
            Applied::Ok,
            "before the snapshot"
        );
        assert_eq!(
            book.apply(&d(95, 130, 90)),
            Applied::Ok,
            "U <= lastUpdateId <= u: the first applied"
        );
        assert_eq!(book.last_update_id, 130);
        assert_eq!(
            book.apply(&d(150, 170, 130)),
            Applied::Ok,
            "pu = previous u"
        );
        assert_eq!(
            book.apply(&d(190, 200, 180)),
            Applied::NeedsSnapshot,
            "the event ending at 180 was lost"
        );
        assert_eq!(book.resyncs, 1);
        // After a snapshot past every event so far, an event starting after it cannot be first.
        book.load_snapshot(DepthSnapshot {
            last_update_id: 300,
            bids: vec![],
            asks: vec![],
        });
        assert_eq!(book.apply(&d(310, 320, 300)), Applied::NeedsSnapshot);
    }
}
