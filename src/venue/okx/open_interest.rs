//! OKX's open interest (`GET /api/v5/rubik/stat/contracts/open-interest-history`): REST only,
//! one row per period, the latest 1,440 periods of each. A range is cut into windows of at most
//! a page of periods; each window is one request bounded on both sides (exclusive), which
//! answers all of its rows newest first, fetched `FETCH_CONCURRENCY` at a time and published in
//! time order. A record's `sum_open_interest` is OKX's `oiCcy` (the coin) and
//! `sum_open_interest_value` its `oiUsd`.

use std::sync::Arc;

use futures::future::BoxFuture;
use kline_interval::Interval;

use super::{request_error, rules, OkxSession};
use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::registry::{FuturesSeries, RecordKind};
use crate::time_range::TimeRange;
use crate::venue::history::{
    grid_windows, load_windows, Cursor, Emitter, History, HistoryContext, Horizon, Probe,
};

pub struct OkxOpenInterest {
    pub period: Interval,
    pub session: Arc<OkxSession>,
}

/// A row: `[ts, oi, oiCcy, oiUsd]`, strings.
type Row = [String; 4];

impl OkxOpenInterest {
    /// The rows with time in `[from, to_inclusive]` (at most `limit`), oldest first, with their
    /// times.
    async fn fetch(
        &self,
        inst_id: &str,
        from: i64,
        to_inclusive: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Row)>> {
        let period = rules::open_interest_period(self.period)
            .expect("only periods OKX has get an OkxOpenInterest");
        let params = [
            ("instId", inst_id.to_string()),
            ("period", period.to_string()),
            ("begin", (from - 1).to_string()),
            ("end", (to_inclusive + 1).to_string()),
            ("limit", limit.to_string()),
        ];
        let rows: Vec<Row> = self
            .session
            .client
            .get(rules::OPEN_INTEREST, &params)
            .await
            .map_err(|e| request_error(e, self.session.market, Some(inst_id)))?;
        let mut out = rows
            .into_iter()
            .map(|r| {
                let t = r[0].parse::<i64>().map_err(|_| {
                    LoaderError::Exchange(format!(
                        "OKX sent an open-interest ts that is not a number: {:?}",
                        r[0]
                    ))
                })?;
                if !self.period.is_open_time(t) {
                    return Err(LoaderError::Exchange(format!(
                        "OKX sent {} open interest at {t}, off the UTC grid of its period",
                        self.period.as_str()
                    )));
                }
                Ok((t, r))
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_unstable_by_key(|r| r.0);
        Ok(out)
    }
}

impl History for OkxOpenInterest {
    fn kind(&self) -> RecordKind {
        RecordKind::FuturesData(FuturesSeries::OpenInterest, self.period)
    }

    fn has_rest(&self) -> bool {
        true
    }

    fn horizon(&self, _market: Market, _by_time: bool) -> Option<Horizon> {
        let period_ms = self.period.fixed_ms()?;
        Some(Horizon {
            venue: Venue::Okx,
            ms: rules::OPEN_INTEREST_KEPT * period_ms,
            span: "the latest 1,440 periods",
            what: "open interest",
        })
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let p = self.period;
            let windows = grid_windows(p, cursor, span, rules::MAX_OPEN_INTEREST_PAGE);
            let period = p.as_str();
            let fetch = |from, to, limit| self.fetch(&ctx.symbol, from, to, limit);
            load_windows(
                &self.session.pages,
                ctx,
                windows,
                fetch,
                out,
                |batch, (t, row)| {
                    if *t < span.end_ms && cursor.admit(*t, *t) {
                        batch.push_open_interest(period, *t, &row[2], Some(&row[3]))?;
                    }
                    Ok(())
                },
            )
            .await
        })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some((from, to_inclusive)) = probe.time_bounds(Some(self.period)) else {
                return Ok(false);
            };
            Ok(!self.fetch(symbol, from, to_inclusive, 1).await?.is_empty())
        })
    }
}
