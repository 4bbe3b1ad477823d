//! Binance's history types: how each `api_*` type comes from Binance's REST API and from
//! data.binance.vision, one module per way of paging ([`klines`] by time windows, [`trade_ids`]
//! by id for both kinds of trade, [`funding`], [`futures_data`]). [`history`] hands the generic
//! layers the [`History`] of a type, holding the connection it asks.

pub mod agg_trades;
pub mod funding;
pub mod futures_data;
pub mod klines;
pub mod raw_trades;
pub mod trade_ids;

use std::sync::Arc;

use super::api::{AggTrades, Trades};
use super::Exchange;
use crate::error::{LoaderError, Result};
use crate::registry::HistoryType;
use crate::venue::history::History;

/// The history of `history` at Binance, asking `rest` (none with `SOURCE=archive`: then only
/// the archive is read, and anything that needs REST says so).
pub fn history(history: HistoryType, rest: Option<Arc<Exchange>>) -> Arc<dyn History> {
    let rest = Rest(rest);
    match history {
        HistoryType::Candles(interval) => Arc::new(klines::KlineHistory {
            interval,
            series: None,
            rest,
        }),
        HistoryType::PriceCandles(series, interval) => Arc::new(klines::KlineHistory {
            interval,
            series: Some(series),
            rest,
        }),
        HistoryType::AggTrades => Arc::new(trade_ids::TradeHistory::<AggTrades>::new(rest)),
        HistoryType::Trades => Arc::new(trade_ids::TradeHistory::<Trades>::new(rest)),
        HistoryType::FundingRate => Arc::new(funding::FundingHistory { rest }),
        HistoryType::FuturesData(series, period) => Arc::new(futures_data::FuturesDataHistory {
            series,
            period,
            rest,
        }),
    }
}

/// The REST connection a history asks, when it has one.
#[derive(Clone, Default)]
pub struct Rest(pub Option<Arc<Exchange>>);

impl Rest {
    /// The connection, which every span loaded over REST (and every `verify` look-up) needs.
    pub fn get(&self, symbol: &str) -> Result<&Exchange> {
        self.0.as_deref().ok_or_else(|| {
            LoaderError::Other(format!(
                "{symbol}: this span needs the REST API, which SOURCE=archive does not use"
            ))
        })
    }

    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

/// When data.binance.vision publishes its files, for the error about one that is not there.
const SCHEDULE: &str = "Binance publishes daily files some hours after the day ends, monthly \
                        files early in the next month";

/// Where data.binance.vision keeps a type of `market`: `<root>/{daily,monthly}/<dir>/<stem>-<date>.zip`,
/// each with a sha256 `.CHECKSUM` beside it, rows oldest first.
pub(super) fn archive_layout(
    market: crate::market::Market,
    dir: &str,
    stem: &str,
    daily: bool,
    monthly: bool,
) -> crate::archive::ArchiveLayout {
    use crate::archive::{ArchiveLayout, FileFormat, Integrity, RowOrder};
    let root = market.archive_root();
    let path = |freq: &str, date: &str| format!("{root}/{freq}/{dir}/{stem}-{date}.zip");
    ArchiveLayout {
        daily: daily.then(|| path("daily", "%Y-%m-%d")),
        monthly: monthly.then(|| path("monthly", "%Y-%m")),
        format: FileFormat::ZippedCsv,
        integrity: Integrity::ChecksumFile,
        order: RowOrder::Ascending,
        schedule: SCHEDULE,
        utc_offset_ms: 0,
    }
}
