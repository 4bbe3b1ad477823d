//! Candles (`api_candles_<interval>`, and on futures the mark-, index- and premium-index candles
//! `api_<series>_price_candles_<interval>`): every closed candle whose open time lies in the
//! range, exactly once, from the archive's kline files and the REST klines endpoints.
//!
//! Over REST the range is cut into windows of one page (`limit` candles) each, fetched
//! concurrently with `buffered`, which yields them in window order, so records still reach Kafka
//! in time order. Each request is bounded by `endTime` and asks for exactly the candles of its
//! window, so no page overshoots the range, Binance's two orders (oldest first from startTime on
//! spot and USDⓈ-M, most recent first from endTime on COIN-M) return the same rows, and futures,
//! which charge by `limit`, are charged for what is asked. The next request in a window starts
//! one millisecond after the last open time seen, so page boundaries never repeat. [`pages`] is
//! the one implementation of that paging; live candles use it for their backfills too.

use futures::future::BoxFuture;
use futures::{stream, Stream, StreamExt};

use super::Rest;
use crate::archive::{fields, ArchiveLayout};
use crate::error::{LoaderError, Result};
use crate::market::Market;
use crate::record::{PriceKlineRecord, RawKline, RecordBatch};
use crate::registry::PriceSeries;
use crate::registry::{price_series_tag, Origin, RecordKind};
use crate::time_range::TimeRange;
use crate::venue::binance::api::{Klines, Page};
use crate::venue::binance::{Exchange, Interval, Paged};
use crate::venue::history::{candle_windows, Cursor, Emitter, History, HistoryContext, Probe};

pub struct KlineHistory {
    pub interval: Interval,
    /// `None` for trade candles; a futures price series otherwise.
    pub series: Option<PriceSeries>,
    pub rest: Rest,
}

/// The pages of candles (of `series`, or trade candles) with open time in `[from, to)`, in
/// order: windows of at most `limit` candles fetched `concurrency` at a time.
#[allow(clippy::too_many_arguments)]
pub fn pages<'a>(
    exchange: &'a Exchange,
    series: Option<PriceSeries>,
    symbol: &'a str,
    interval: Interval,
    from: i64,
    to: i64,
    limit: u32,
    concurrency: usize,
) -> impl Stream<Item = Result<Paged<Vec<Page<Klines>>>>> + Send + 'a {
    let market = exchange.market();
    let limit = limit.min(market.max_kline_page());
    stream::iter(candle_windows(
        interval,
        interval.align_up(from),
        to,
        limit as i64,
        market.max_kline_span_ms(),
    ))
    .map(move |(ws, we, n)| {
        exchange.paged(window(exchange, series, symbol, interval, ws, we, n as u32))
    })
    .buffered(concurrency.max(1))
}

/// All candles with open time in `[ws, we)` (`n` of them at most): usually one request.
async fn window(
    exchange: &Exchange,
    series: Option<PriceSeries>,
    symbol: &str,
    iv: Interval,
    ws: i64,
    we: i64,
    n: u32,
) -> Result<Vec<Page<Klines>>> {
    let mut out = Vec::with_capacity(1);
    let mut cursor = ws;
    while cursor < we {
        let page = match series {
            None => exchange.klines(symbol, iv, cursor, we - 1, n).await?,
            Some(s) => {
                exchange
                    .price_klines(s, symbol, iv, cursor, we - 1, n)
                    .await?
            }
        };
        let rows = page.rows()?;
        let last_open = rows.iter().map(|r| r.0).filter(|&t| t < we).max();
        let got = rows.len();
        drop(rows);
        out.push(page);
        // A short page, or a full one that reached the window's last candle, is the end:
        // asking again would only cost weight for an empty answer.
        match last_open {
            Some(last) if got >= n as usize && iv.next_open(last) < we && last >= cursor => {
                cursor = last + 1
            }
            _ => break,
        }
    }
    Ok(out)
}

impl KlineHistory {
    /// The `_key` tag and the `interval` field: `1m`, or `mark_1m` for a price series.
    fn push_row(&self, batch: &mut RecordBatch, k: &RawKline<'_>) -> Result<()> {
        let iv = self.interval.as_str();
        let Some(series) = self.series else {
            return batch.push_kline(iv, k);
        };
        let tag = price_series_tag(series);
        let key = batch.key_of(&[tag, iv], k.0);
        let symbol = batch.symbol.clone();
        let rec = PriceKlineRecord {
            _key: &key,
            market: batch.market.as_str(),
            symbol: &symbol,
            series: tag,
            interval: iv,
            timestamp: k.0,
            open_time: k.0,
            open: k.1,
            high: k.2,
            low: k.3,
            close: k.4,
            close_time: k.6,
        };
        let r = batch.push_record(k.0, &key, &rec);
        batch.reuse_key(key);
        r
    }
}

impl History for KlineHistory {
    fn kind(&self) -> RecordKind {
        match self.series {
            None => RecordKind::Candles(self.interval),
            Some(s) => RecordKind::PriceCandles(s, self.interval),
        }
    }

    fn has_rest(&self) -> bool {
        self.rest.is_some()
    }

    fn archive_layout(&self, market: Market, symbol: &str) -> Option<ArchiveLayout> {
        let iv = self.interval.archive_str();
        let (dir, name) = match self.series {
            None => ("klines", symbol),
            // COIN-M keeps index candles under the pair.
            Some(PriceSeries::Index) => ("indexPriceKlines", market.pair_of(symbol)),
            Some(s) => (s.endpoint_name(), symbol),
        };
        Some(super::archive_layout(
            market,
            &format!("{dir}/{name}/{iv}"),
            &format!("{name}-{iv}"),
            // Daily kline files exist up to 1d; 3d, 1w and 1mo only monthly.
            self.interval.fixed_ms().is_some_and(|ms| ms <= 86_400_000),
            true,
        ))
    }

    fn push_csv_row(
        &self,
        row: &csv::StringRecord,
        cursor: &mut Cursor,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        let bad = LoaderError::Exchange;
        let open = fields::time_ms(row, 0, "open time").map_err(bad)?;
        if !cursor.admit(open, open) {
            return Ok(());
        }
        let t = |i, what| fields::text(row, i, what).map_err(LoaderError::Exchange);
        let k = RawKline(
            open,
            t(1, "open")?,
            t(2, "high")?,
            t(3, "low")?,
            t(4, "close")?,
            t(5, "volume")?,
            fields::time_ms(row, 6, "close time").map_err(bad)?,
            t(7, "quote volume")?,
            fields::uint(row, 8, "trades").map_err(bad)?,
            t(9, "taker buy base volume")?,
            t(10, "taker buy quote volume")?,
            serde::de::IgnoredAny,
        );
        self.push_row(batch, &k)
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let exchange = self.rest.get(&ctx.symbol)?;
            let iv = self.interval;
            let from = match cursor.last {
                Some(last) => iv.next_open(last).max(span.start_ms),
                None => span.start_ms,
            };
            let mut pages = std::pin::pin!(pages(
                exchange,
                self.series,
                &ctx.symbol,
                iv,
                from,
                span.end_ms,
                ctx.kline_page_limit,
                ctx.concurrency
            ));
            while let Some(window) = pages.next().await {
                let window = window?;
                let mut batch = ctx.batch(ctx.kline_page_limit as usize);
                for page in window.iter() {
                    for row in page.rows()? {
                        // Guard the range and page boundaries even if the server overshoots.
                        if row.0 < span.end_ms && cursor.admit(row.0, row.0) {
                            self.push_row(&mut batch, &row)?;
                        }
                    }
                }
                out.send(batch, Origin::Rest).await?;
            }
            Ok(())
        })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let exchange = self.rest.get(symbol)?;
            let Some((from, to_inclusive)) = probe.time_bounds(Some(self.interval)) else {
                return Ok(false);
            };
            // Whichever end Binance answers from, one candle in the window says it is not
            // empty; COIN-M windows are cut at its 200-day limit.
            let span = exchange.market().max_kline_span_ms().unwrap_or(i64::MAX);
            let mut start = from;
            while start <= to_inclusive {
                let end = to_inclusive.min(start.saturating_add(span));
                let page = match self.series {
                    None => {
                        exchange
                            .klines(symbol, self.interval, start, end, 1)
                            .await?
                    }
                    Some(s) => {
                        exchange
                            .price_klines(s, symbol, self.interval, start, end, 1)
                            .await?
                    }
                };
                if !page.rows()?.is_empty() {
                    return Ok(true);
                }
                start = end.saturating_add(1);
            }
            Ok(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::venue::history::SETTLE_MS;

    #[test]
    fn windows_tile_the_range() {
        let iv: Interval = "1m".parse().unwrap();
        let w = candle_windows(iv, 0, 2_500 * 60_000, 1000, None);
        assert_eq!(
            w,
            vec![
                (0, 60_000_000, 1000),
                (60_000_000, 120_000_000, 1000),
                (120_000_000, 150_000_000, 500)
            ]
        );
        let month: Interval = "1M".parse().unwrap();
        let start = 1_704_067_200_000; // 2024-01-01
        let w = candle_windows(month, start, start + 400 * 86_400_000, 1000, None);
        assert_eq!(w.len(), 1);
        // COIN-M: at most 200 days from startTime to endTime.
        let day: Interval = "1d".parse().unwrap();
        let w = candle_windows(
            day,
            start,
            start + 450 * 86_400_000,
            1500,
            Market::CoinM.max_kline_span_ms(),
        );
        assert_eq!(
            w.iter().map(|w| w.2).collect::<Vec<_>>(),
            vec![200, 200, 50]
        );
        assert!(w.iter().all(|(a, b, _)| b - 1 - a <= 200 * 86_400_000));
    }

    #[test]
    fn the_newest_candle_waits_the_same_settling_margin_as_trades() {
        let kh = KlineHistory {
            interval: Interval::M1,
            series: None,
            rest: Rest::default(),
        };
        let ten = 1_704_103_200_000; // 2024-01-01T10:00:00Z
                                     // At 10:00:00.500 the 09:59 candle closed half a second ago: not settled yet.
        assert_eq!(kh.settled_end(ten + 500), ten - 60_000);
        assert_eq!(kh.settled_end(ten + SETTLE_MS), ten);
        let trades =
            super::super::trade_ids::TradeHistory::<crate::venue::binance::api::AggTrades>::new(
                Rest::default(),
            );
        assert_eq!(trades.settled_end(ten + 500), ten + 500 - SETTLE_MS);
    }

    #[test]
    fn csv_rows_become_the_same_records_as_rest_rows() {
        let kh = KlineHistory {
            interval: Interval::M1,
            series: None,
            rest: Rest::default(),
        };
        let range = TimeRange {
            start_ms: 0,
            end_ms: i64::MAX,
        };
        let rest = br#"[[1735689600000,"1.00000000","2.00000000","0.50000000","1.50000000","10.00000000",1735689659999,"15.00000000",7,"5.00000000","7.50000000","0"]]"#;
        let rows: Vec<RawKline> = serde_json::from_slice(rest).unwrap();
        let mut from_rest = RecordBatch::new(
            crate::market::Venue::Binance,
            Market::Spot,
            "BTCUSDT".into(),
            1,
        );
        from_rest.push_kline("1m", &rows[0]).unwrap();
        // The same candle in a 2025 archive file: microsecond times.
        let csv_row = csv::StringRecord::from(vec![
            "1735689600000000",
            "1.00000000",
            "2.00000000",
            "0.50000000",
            "1.50000000",
            "10.00000000",
            "1735689659999999",
            "15.00000000",
            "7",
            "5.00000000",
            "7.50000000",
            "0",
        ]);
        let mut from_csv = RecordBatch::new(
            crate::market::Venue::Binance,
            Market::Spot,
            "BTCUSDT".into(),
            1,
        );
        kh.push_csv_row(&csv_row, &mut Cursor::new(kh.kind(), range), &mut from_csv)
            .unwrap();
        assert_eq!(from_rest.iter().next(), from_csv.iter().next());
    }
}
