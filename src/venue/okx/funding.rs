//! OKX's funding rates (`GET /api/v5/public/funding-rate-history`): REST only, the last three
//! months. A range is cut into windows that hold fewer settlements than a page
//! ([`rules::FUNDING_WINDOW_MS`]: OKX's shortest funding interval is an hour); each window is
//! one request bounded on both sides (exclusive, as for candles), fetched `FETCH_CONCURRENCY`
//! at a time and published in time order. A record's `funding_rate` is OKX's `realizedRate`,
//! the rate that was settled (its `fundingRate` is the one predicted before). `verify` lists
//! every settlement of its range the same way.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{request_error, rules, OkxSession};
use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::registry::RecordKind;
use crate::time_range::TimeRange;
use crate::venue::history::{
    list_times, load_funding, Cursor, Emitter, History, HistoryContext, Horizon, Probe,
};

pub struct OkxFunding {
    pub session: Arc<OkxSession>,
}

#[derive(Deserialize)]
struct Settlement {
    #[serde(rename = "fundingTime")]
    time: String,
    #[serde(rename = "realizedRate")]
    realized_rate: String,
}

/// How far back OKX answers.
const HORIZON: Horizon = Horizon {
    venue: Venue::Okx,
    ms: rules::FUNDING_HORIZON_MS,
    span: "the last three months",
    what: "funding rates",
};

impl OkxFunding {
    /// The settlements with time in `[from, to_inclusive]` (at most `limit`), oldest first.
    async fn fetch(
        &self,
        inst_id: &str,
        from: i64,
        to_inclusive: i64,
        limit: u32,
    ) -> Result<Vec<(i64, String)>> {
        let params = [
            ("instId", inst_id.to_string()),
            ("before", (from - 1).to_string()),
            ("after", (to_inclusive + 1).to_string()),
            ("limit", limit.to_string()),
        ];
        let rows: Vec<Settlement> = self
            .session
            .client
            .get(rules::FUNDING, &params)
            .await
            .map_err(|e| request_error(e, self.session.market, Some(inst_id)))?;
        let mut out = rows
            .into_iter()
            .map(|s| {
                let t = s.time.parse::<i64>().map_err(|_| {
                    LoaderError::Exchange(format!(
                        "OKX sent a fundingTime that is not a number: {:?}",
                        s.time
                    ))
                })?;
                if s.realized_rate.is_empty() {
                    return Err(LoaderError::Exchange(format!(
                        "OKX sent the settlement of {inst_id} at {t} without its realizedRate"
                    )));
                }
                Ok((t, s.realized_rate))
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_unstable_by_key(|r| r.0);
        Ok(out)
    }
}

impl History for OkxFunding {
    fn kind(&self) -> RecordKind {
        RecordKind::FundingRate
    }

    fn has_rest(&self) -> bool {
        true
    }

    fn horizon(&self, _market: Market, _by_time: bool) -> Option<Horizon> {
        Some(HORIZON)
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let fetch = |from, to, limit| self.fetch(&ctx.symbol, from, to, limit);
            load_funding(
                &self.session.pages,
                ctx,
                span,
                cursor,
                out,
                rules::FUNDING_WINDOW_MS,
                rules::MAX_FUNDING_PAGE,
                fetch,
            )
            .await
        })
    }

    fn listed<'a>(
        &'a self,
        symbol: &'a str,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Option<Vec<i64>>>> {
        Box::pin(async move {
            let fetch = |from, to, limit| self.fetch(symbol, from, to, limit);
            list_times(
                range,
                rules::FUNDING_WINDOW_MS,
                rules::MAX_FUNDING_PAGE,
                fetch,
            )
            .await
        })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some((from, to_inclusive)) = probe.time_bounds(None) else {
                return Ok(false);
            };
            Ok(!self.fetch(symbol, from, to_inclusive, 1).await?.is_empty())
        })
    }
}
