//! `Handover`: a connection switch without loss. When a replacement connection delivers its
//! first event, the connection it replaces may still hold events the replacement never had
//! (it was opened later; the old link may lag). Until the old connection has caught up, per
//! stream, with the first event the new one delivered, that stream's events are taken from the
//! old connection and the new one's are held; then the held events follow, and the stream
//! listens to the new connection only. Events within one stream of one connection come in
//! order, so an old event past the new one's first means the old connection has nothing left
//! that the new one lacks. Past, not at: an ordinal may be shared by several events (a venue
//! whose trades are ordered by time alone, updates of one candle), so only a strictly later
//! one proves it.
//!
//! The held events are bounded ([`MAX_HELD_BYTES`]): an old connection that falls that far
//! behind is kept and the replacement is given up (and tried again later), because switching
//! would publish later events after earlier ones that were still on their way.

use std::collections::VecDeque;

use crate::venue::live::wire::FramePart;

/// Bytes of the replacement's events held back during one hand-over.
pub const MAX_HELD_BYTES: usize = 64 << 20;

/// One stream's part of a hand-over.
#[derive(Default)]
struct Lane {
    /// The stream listens to the new connection only.
    switched: bool,
    /// The highest ordinal the old connection delivered.
    old_last: Option<i64>,
    /// The new connection's events not taken yet, in order, with the first one's ordinal.
    first_held: Option<i64>,
    held: VecDeque<FramePart>,
}

/// A connection switch in progress.
pub struct Handover {
    /// The connection being replaced.
    pub old: u64,
    lanes: Vec<Lane>,
    /// Lanes not switched yet.
    waiting: usize,
    held_bytes: usize,
}

/// What to do with an event of the old connection.
pub enum FromOld {
    /// The stream has switched: the new connection delivered this already.
    Ignore,
    /// Publish it, then the new connection's held events, in order.
    Take(Vec<FramePart>),
}

/// What to do with an event of the new connection.
pub enum FromNew {
    /// Keep it until the old connection catches up.
    Hold,
    /// Publish these, in order (the held events, then this one).
    Take(Vec<FramePart>),
}

impl Handover {
    pub fn new(old: u64, streams: usize) -> Handover {
        Handover {
            old,
            lanes: (0..streams).map(|_| Lane::default()).collect(),
            waiting: streams,
            held_bytes: 0,
        }
    }

    /// An event of stream `idx` from the old connection, with its ordinal (`None`: unreadable,
    /// taken as it is so that the event's own parser reports it).
    pub fn on_old_event(&mut self, idx: usize, ordinal: Option<i64>) -> FromOld {
        let lane = &mut self.lanes[idx];
        if lane.switched {
            return FromOld::Ignore;
        }
        let Some(ord) = ordinal else {
            return FromOld::Take(Vec::new());
        };
        lane.old_last = Some(lane.old_last.map_or(ord, |l| l.max(ord)));
        if lane.first_held.is_some_and(|f| ord > f) {
            FromOld::Take(self.switch(idx))
        } else {
            FromOld::Take(Vec::new())
        }
    }

    /// An event of stream `idx` from the new connection.
    pub fn on_new_event(&mut self, idx: usize, ordinal: Option<i64>, data: FramePart) -> FromNew {
        let lane = &mut self.lanes[idx];
        if lane.switched {
            return FromNew::Take(vec![data]);
        }
        match ordinal {
            // The old connection already delivered this one: nothing of it is left behind.
            Some(ord) if lane.old_last.is_some_and(|l| l > ord) => {
                let mut events = self.switch(idx);
                events.push(data);
                FromNew::Take(events)
            }
            Some(ord) => {
                lane.first_held.get_or_insert(ord);
                self.held_bytes += data.get().len();
                lane.held.push_back(data);
                FromNew::Hold
            }
            None => FromNew::Take(vec![data]),
        }
    }

    fn switch(&mut self, idx: usize) -> Vec<FramePart> {
        let lane = &mut self.lanes[idx];
        lane.switched = true;
        self.waiting -= 1;
        let held: Vec<FramePart> = std::mem::take(&mut lane.held).into();
        self.held_bytes -= held.iter().map(|d| d.get().len()).sum::<usize>();
        held
    }

    /// Every stream listens to the new connection: the old one can go.
    pub fn complete(&self) -> bool {
        self.waiting == 0
    }

    /// The old connection fell too far behind to wait for.
    pub fn over_limit(&self) -> bool {
        self.held_bytes > MAX_HELD_BYTES
    }

    /// The old connection is gone: every stream's held events, per stream in order.
    pub fn release_all(self) -> Vec<(usize, FramePart)> {
        self.lanes
            .into_iter()
            .enumerate()
            .flat_map(|(i, lane)| lane.held.into_iter().map(move |d| (i, d)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> FramePart {
        FramePart::from(s.to_string())
    }

    fn texts(v: &[FramePart]) -> Vec<&str> {
        v.iter().map(|d| d.get()).collect()
    }

    #[test]
    fn the_new_connection_waits_until_the_old_one_caught_up() {
        let mut h = Handover::new(1, 2);
        // New is ahead: its 5 and 6 wait while the old one still delivers 3 and 4.
        assert!(matches!(h.on_new_event(0, Some(5), ev("5")), FromNew::Hold));
        assert!(matches!(h.on_new_event(0, Some(6), ev("6")), FromNew::Hold));
        assert!(matches!(h.on_old_event(0, Some(3)), FromOld::Take(v) if v.is_empty()));
        assert!(matches!(h.on_old_event(0, Some(4)), FromOld::Take(v) if v.is_empty()));
        // The old one reaches 5: another event may share that ordinal, so it is not past yet.
        assert!(matches!(h.on_old_event(0, Some(5)), FromOld::Take(v) if v.is_empty()));
        // Past 5: the held events follow, and the old one is ignored after.
        match h.on_old_event(0, Some(6)) {
            FromOld::Take(v) => assert_eq!(texts(&v), ["5", "6"]),
            FromOld::Ignore => panic!("6 is taken"),
        }
        assert!(matches!(h.on_old_event(0, Some(7)), FromOld::Ignore));
        assert!(
            matches!(h.on_new_event(0, Some(7), ev("7")), FromNew::Take(v) if texts(&v) == ["7"])
        );
        assert!(!h.complete(), "stream 1 has not switched");
        // Stream 1: the old connection is ahead, so the new one's first event switches it.
        assert!(matches!(h.on_old_event(1, Some(10)), FromOld::Take(_)));
        assert!(
            matches!(h.on_new_event(1, Some(9), ev("9")), FromNew::Take(v) if texts(&v) == ["9"])
        );
        assert!(h.complete());
    }

    /// Ordinals shared by several events (trades of one millisecond): an old event level with
    /// the new one's first does not prove the old connection has passed it.
    #[test]
    fn a_shared_ordinal_waits_for_a_later_one() {
        let mut h = Handover::new(1, 1);
        assert!(matches!(h.on_old_event(0, Some(10)), FromOld::Take(v) if v.is_empty()));
        // The new one starts at 10 too: perhaps in the middle of that millisecond.
        assert!(matches!(
            h.on_new_event(0, Some(10), ev("10b")),
            FromNew::Hold
        ));
        assert!(matches!(h.on_old_event(0, Some(10)), FromOld::Take(v) if v.is_empty()));
        match h.on_old_event(0, Some(11)) {
            FromOld::Take(v) => assert_eq!(texts(&v), ["10b"]),
            FromOld::Ignore => panic!("11 is taken"),
        }
        assert!(h.complete());
    }

    #[test]
    fn held_events_are_counted_and_released_when_the_old_connection_goes() {
        let mut h = Handover::new(1, 2);
        let big = format!("\"{}\"", "x".repeat(1 << 20));
        for i in 0..64 {
            assert!(!h.over_limit());
            assert!(matches!(
                h.on_new_event(i % 2, Some(i as i64), ev(&big)),
                FromNew::Hold
            ));
        }
        assert!(h.over_limit(), "64 MiB and more held");
        let _ = h.on_new_event(0, Some(100), ev("1"));
        let all = h.release_all();
        assert_eq!(all.len(), 65);
        assert!(
            all[..33].iter().all(|(i, _)| *i == 0),
            "per stream, in order"
        );
        assert_eq!(all[32].1.get(), "1");
    }
}
