//! A local order book (`ws_orderbook`): a snapshot, then the diffs that follow it as the
//! venue's sequence rules allow (each venue's live feed applies its own), published as
//! snapshots of the top `ORDERBOOK_DEPTH` levels.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::record::{OrderBookRecord, RecordBatch};

/// A price as an integer of 1e-18 units, so levels sort exactly whatever the venue's tick (a
/// coin priced in billionths too).
fn price_key(p: &str) -> Option<i128> {
    let (int, frac) = p.split_once('.').unwrap_or((p, ""));
    if frac.len() > 18 || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let mut v: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    for i in 0..18 {
        let digit = match frac.as_bytes().get(i) {
            Some(b) => (*b as char).to_digit(10)? as i128,
            None => 0,
        };
        v = v.checked_mul(10)?.checked_add(digit)?;
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
    pub last_update_id: u64,
    /// No snapshot yet, or the sequence broke.
    pub needs_snapshot: bool,
    /// The snapshot is in place; the first applied diff must straddle it.
    pub awaiting_first: bool,
    pub last_event_ms: i64,
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

    /// Replaces the book with a snapshot at `update_id`; the first diff applied after it
    /// must straddle it.
    pub fn load_snapshot<'a>(
        &mut self,
        update_id: u64,
        bids: impl IntoIterator<Item = [&'a str; 2]>,
        asks: impl IntoIterator<Item = [&'a str; 2]>,
    ) {
        self.bids.clear();
        self.asks.clear();
        for level in bids {
            Self::apply_levels(&mut self.bids, &[level]);
        }
        for level in asks {
            Self::apply_levels(&mut self.asks, &[level]);
        }
        self.last_update_id = update_id;
        self.needs_snapshot = false;
        self.awaiting_first = true;
    }

    /// Applies a diff the venue's sequence rules admitted.
    pub fn apply_diff(
        &mut self,
        update_id: u64,
        event_ms: i64,
        bids: &[[&str; 2]],
        asks: &[[&str; 2]],
    ) {
        Self::apply_levels(&mut self.bids, bids);
        Self::apply_levels(&mut self.asks, asks);
        self.last_update_id = update_id;
        self.awaiting_first = false;
        self.last_event_ms = event_ms;
    }

    /// The sequence broke: a new snapshot is needed.
    pub fn break_sequence(&mut self) {
        self.resyncs += 1;
        self.needs_snapshot = true;
    }

    /// The best `depth` levels of each side, best first, as the venue wrote them.
    pub fn top(&self, depth: usize) -> (Vec<[&str; 2]>, Vec<[&str; 2]>) {
        fn level((p, q): &(String, String)) -> [&str; 2] {
            [p.as_str(), q.as_str()]
        }
        (
            self.bids.values().rev().take(depth).map(level).collect(),
            self.asks.values().take(depth).map(level).collect(),
        )
    }

    /// Pushes a snapshot of the top `depth` levels when the book changed since the last one.
    pub fn publish(&mut self, symbol: &str, depth: usize, batch: &mut RecordBatch) -> Result<()> {
        if self.needs_snapshot
            || self.awaiting_first
            || self.last_update_id == self.published_update_id
        {
            return Ok(());
        }
        let (bids, asks) = self.top(depth);
        let key = batch.key(crate::record::tag::ORDER_BOOK, self.last_update_id);
        let market = batch.venue.market_name(batch.market);
        let exchange = batch.venue.record_field();
        batch.push_record(
            self.last_event_ms,
            &key,
            &OrderBookRecord {
                _key: &key,
                exchange,
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
        const E18: i128 = 1_000_000_000_000_000_000;
        assert_eq!(price_key("33365.39000000"), Some(3_336_539 * E18 / 100));
        assert_eq!(price_key("0.00000001"), Some(E18 / 100_000_000));
        assert_eq!(price_key("12"), Some(12 * E18));
        assert!(
            price_key("0.000000001") > price_key("0.0000000009"),
            "past 8 decimals"
        );
        assert!(price_key("1.2x").is_none());
        assert!(is_zero("0.00000000") && !is_zero("0.00000001"));
    }
}
