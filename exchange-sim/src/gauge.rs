//! `Gauge`: how many of something are under way now, and the most there ever were at once
//! (REST requests being answered, archive zips being sent), so a test can check a client's
//! concurrency limit from the server's side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Default)]
pub(crate) struct Gauge {
    now: AtomicU64,
    max: AtomicU64,
}

/// One of the gauge's count; it ends when dropped.
pub(crate) struct Under(Arc<Gauge>);

impl Gauge {
    pub(crate) fn enter(self: &Arc<Self>) -> Under {
        let now = self.now.fetch_add(1, Ordering::AcqRel) + 1;
        self.max.fetch_max(now, Ordering::AcqRel);
        Under(self.clone())
    }

    /// The most at once since the server started.
    pub(crate) fn max(&self) -> u64 {
        self.max.load(Ordering::Acquire)
    }
}

impl Drop for Under {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_at_once_is_kept_after_they_end() {
        let g = Arc::new(Gauge::default());
        let a = g.enter();
        let b = g.enter();
        drop(a);
        let c = g.enter();
        assert_eq!(g.max(), 2);
        drop((b, c));
        let _d = g.enter();
        assert_eq!(g.max(), 2);
    }
}
