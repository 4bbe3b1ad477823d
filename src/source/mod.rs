//! Sources: each yields one symbol's records, in time order, as serialised batches on a bounded
//! channel. Adding a data type means adding a source here and a name in `config::DataType`.

pub mod agg_trades;
pub mod klines;

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
    pub range: TimeRange,
    pub page_limit: u32,
    pub concurrency: usize,
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
}

impl SourceSummary {
    pub fn missing_ids(&self) -> u64 {
        self.gaps.iter().map(|(a, b)| b - a + 1).sum()
    }

    fn note(&mut self, batch: &RecordBatch) {
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
    }
}
