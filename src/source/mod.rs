//! Sources: each yields one symbol's records, in time order, as serialised batches on a bounded
//! channel. Adding a data type means adding a source here and a name in `config::DataType`.

pub mod agg_trades;
pub mod klines;
pub mod live;

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::binance::Exchange;
use crate::config::DataType;
use crate::error::Result;
use crate::record::RecordBatch;
use crate::time_range::TimeRange;

/// What every source needs.
#[derive(Clone)]
pub struct SourceContext {
    pub exchange: Arc<Exchange>,
    pub symbol: Arc<str>,
    /// Always present for REST types (the configuration requires it).
    pub range: Option<TimeRange>,
    pub page_limit: u32,
    pub concurrency: usize,
}

impl SourceContext {
    /// The range a REST source loads.
    pub fn required_range(&self) -> Result<TimeRange> {
        self.range.ok_or_else(|| {
            crate::error::LoaderError::config("TIME_RANGE is required for REST (api_*) types")
        })
    }
}

/// What a source found, for the summary and for telemetry.
#[derive(Debug, Default, Clone)]
pub struct SourceSummary {
    pub symbol: String,
    pub records: u64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    /// Inclusive id ranges missing from the exchange's data (aggregate trades).
    pub gaps: Vec<(u64, u64)>,
    /// The range end was past the present: loading stopped at this time.
    pub clamped_end: Option<i64>,
    /// Live types: records fetched over REST to fill gaps after reconnects and rotations.
    pub backfilled: u64,
    /// Live types: connections lost and replaced.
    pub reconnects: u64,
    /// Live order books: rebuilt from a new snapshot after the diff sequence broke.
    pub resyncs: u64,
    /// Live diff depth: events whose first update id did not follow the previous one.
    pub sequence_breaks: u64,
}

impl SourceSummary {
    pub fn missing_ids(&self) -> u64 {
        self.gaps.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub(crate) fn note(&mut self, batch: &RecordBatch) {
        self.records += batch.len() as u64;
        self.first_timestamp.get_or_insert(batch.first_timestamp);
        self.last_timestamp = Some(batch.last_timestamp);
    }
}

/// Starts the source for `data_type`; the future completes when the symbol's range is loaded.
pub fn load(
    data_type: DataType,
    ctx: SourceContext,
    tx: mpsc::Sender<RecordBatch>,
) -> BoxFuture<'static, Result<SourceSummary>> {
    match data_type {
        DataType::Candles(interval) => Box::pin(klines::KlineSource { ctx, interval }.run(tx)),
        DataType::AggTrades => Box::pin(agg_trades::AggTradeSource { ctx }.run(tx)),
        DataType::Live(_) => Box::pin(async {
            Err(crate::error::LoaderError::Other(
                "live types run through source::live::LiveSource".into(),
            ))
        }),
    }
}
