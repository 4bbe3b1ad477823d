//! Binance's procedure for a local order book (`ws_orderbook`): a REST snapshot, then the
//! diff-depth events that follow it without a hole; a broken sequence means a new snapshot
//! (spot web-socket-streams.md, "How to manage a local order book correctly"; futures the
//! same with `pu`).

use serde::Deserialize;

use crate::market::Market;
use crate::venue::live::book::{Applied, Book};

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

/// Applies a diff per Binance's rules: drop what the snapshot holds; the first applied diff
/// straddles it; each next one starts right after the previous (spot: `U` = previous `u` + 1;
/// futures: `pu` = previous `u`, and the first has `U <= lastUpdateId <= u`).
pub fn apply(book: &mut Book, d: &WsDepth<'_>) -> Applied {
    if book.needs_snapshot {
        return Applied::NeedsSnapshot;
    }
    let last = book.last_update_id;
    let fits = match d.pu {
        None => {
            if d.u <= last {
                return Applied::Ok; // already in the snapshot, or a duplicate
            }
            if book.awaiting_first {
                d.U <= last + 1
            } else {
                d.U == last + 1
            }
        }
        Some(pu) => {
            if d.u < last || (!book.awaiting_first && d.u == last) {
                return Applied::Ok;
            }
            if book.awaiting_first {
                d.U <= last
            } else {
                pu == last
            }
        }
    };
    if !fits {
        book.break_sequence();
        return Applied::NeedsSnapshot;
    }
    book.apply_diff(d.u, d.E, &d.b, &d.a);
    Applied::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(apply(&mut book, &d(1, 2)), Applied::NeedsSnapshot);
        book.load_snapshot(10, [], []);
        assert_eq!(
            apply(&mut book, &d(5, 9)),
            Applied::Ok,
            "inside the snapshot: dropped"
        );
        assert_eq!(
            apply(&mut book, &d(9, 12)),
            Applied::Ok,
            "straddles the snapshot"
        );
        assert_eq!(
            apply(&mut book, &d(14, 15)),
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
        book.load_snapshot(100, [], []);
        assert_eq!(
            apply(&mut book, &d(80, 90, 70)),
            Applied::Ok,
            "before the snapshot"
        );
        assert_eq!(
            apply(&mut book, &d(95, 130, 90)),
            Applied::Ok,
            "U <= lastUpdateId <= u: the first applied"
        );
        assert_eq!(book.last_update_id, 130);
        assert_eq!(
            apply(&mut book, &d(150, 170, 130)),
            Applied::Ok,
            "pu = previous u"
        );
        assert_eq!(
            apply(&mut book, &d(190, 200, 180)),
            Applied::NeedsSnapshot,
            "the event ending at 180 was lost"
        );
        assert_eq!(book.resyncs, 1);
        // After a snapshot past every event so far, an event starting after it cannot be first.
        book.load_snapshot(300, [], []);
        assert_eq!(apply(&mut book, &d(310, 320, 300)), Applied::NeedsSnapshot);
    }
}
