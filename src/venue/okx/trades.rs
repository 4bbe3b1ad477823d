//! OKX's trades (`api_raw_trades`): from its archive (`OKX_ARCHIVE_URL`, a zip a day of UTC+8,
//! [`rules::trade_file`]) and from REST (`GET /api/v5/market/history-trades`, the last three
//! months), as `SOURCE` says. Over REST, OKX pages trades newest first only ("after": earlier
//! than a trade id or a time), so a range is loaded in windows of time, each walked from its
//! end back to its start and published oldest first: the first page of a window asks by time
//! (`type` 2), the next ones by trade id (`type` 1), which is exact however many trades share
//! a millisecond. A window's pages follow one another, so [`MOST_WINDOWS_AHEAD`] windows are
//! asked at once (one walk would spend a request per round trip, not the endpoint's limit). A
//! window's length follows the trades the last ones held, so that it holds about
//! [`TARGET_WINDOW_TRADES`] (a quiet instrument costs a request per long window, a busy one no
//! more memory than that), and a window that grows past [`MAX_WINDOW_TRADES`] is dropped and
//! asked again in eighths: memory stays bounded whatever a burst holds.
//!
//! A trade is keyed by its time and its place among that millisecond's trades in trade-id
//! order ([`time_rank`]), as every trade of a venue whose ids are not a count (OKX skips ids):
//! the archive's rows and REST's pages give the same keys. Its `trade_id` is OKX's. `verify`
//! lists a range's trades the same way: over REST within three months, from the archive's
//! files before.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{request_error, rules, OkxSession};
use crate::archive::{fields, ArchiveClient, ArchiveLayout, FileFormat, Integrity, RowOrder};
use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::record::{RankedTrade, RecordBatch, TradeId};
use crate::registry::{time_rank, RecordKind, Sequence};
use crate::time_range::{fmt_ms, TimeRange};
use crate::venue::history::{
    list_archive, Cursor, Emitter, History, HistoryContext, Horizon, Probe, RestFrom,
};

pub struct OkxTrades {
    pub market: Market,
    /// The REST session; `None` with `SOURCE=archive`.
    pub session: Option<Arc<OkxSession>>,
    /// The archive, for `verify`'s list of older ranges (a load takes it from its context).
    pub archive: Option<Arc<ArchiveClient>>,
}

/// A trade as history-trades answers it (the fields the loader reads).
#[derive(Deserialize)]
struct Row {
    #[serde(rename = "tradeId")]
    trade_id: String,
    px: String,
    sz: String,
    /// The taker's side, `buy` or `sell`.
    side: String,
    ts: String,
}

/// A trade read and checked: owning its text when it came from REST's pages, borrowing it
/// from the row when from an archive file.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Trade<S = String> {
    pub(super) id: u64,
    pub(super) time: i64,
    pub(super) price: S,
    pub(super) size: S,
    /// The taker sold: the buyer made the market.
    pub(super) buyer_maker: bool,
}

/// How far back OKX answers.
const HORIZON: Horizon = Horizon {
    venue: Venue::Okx,
    ms: rules::TRADES_HORIZON_MS,
    span: "the last three months",
    what: "trades",
};

/// The trades a window is sized to hold (50 requests).
const TARGET_WINDOW_TRADES: usize = 5_000;
/// The most a window may hold before it is asked again in shorter windows (about 10 MB).
const MAX_WINDOW_TRADES: usize = 100_000;
/// The first window, and the bounds of every later one.
const FIRST_WINDOW_MS: i64 = 10 * 60_000;
const LONGEST_WINDOW_MS: i64 = 86_400_000;
/// Windows of a span asked at once (at most `FETCH_CONCURRENCY`): a window's pages follow one
/// another, so one walk at a time spends a request per round trip, about half of the
/// endpoint's limit at OKX's usual latency; a few at once spend it whole.
const MOST_WINDOWS_AHEAD: usize = 4;

/// Where a page starts: before a time (`type` 2) or before a trade id (`type` 1).
#[derive(Clone, Copy)]
enum Before {
    Time(i64),
    Id(u64),
}

impl OkxTrades {
    fn session(&self) -> Result<&OkxSession> {
        self.session.as_deref().ok_or_else(|| {
            LoaderError::Other("OKX's trades over REST need a session (not SOURCE=archive)".into())
        })
    }

    fn layout(&self, inst_id: &str) -> ArchiveLayout {
        ArchiveLayout {
            daily: Some(rules::trade_file(inst_id)),
            monthly: None,
            format: FileFormat::ZippedCsv,
            integrity: Integrity::HeadAndCrc,
            order: RowOrder::Ascending,
            schedule: rules::ARCHIVE_SCHEDULE,
            utc_offset_ms: rules::ARCHIVE_UTC_OFFSET_MS,
        }
    }

    /// Where REST's trades begin now (with a margin), where there is a session.
    pub(super) fn rest_start(&self) -> Option<i64> {
        let session = self.session.as_ref()?;
        let now = crate::venue::Session::clock(&**session).now_ms();
        Some(HORIZON.oldest(now) + HORIZON.margin_ms())
    }

    /// The ordinals of every trade of `range` in the archive's files, oldest first.
    async fn list_archive(&self, inst_id: &str, range: TimeRange) -> Result<Vec<i64>> {
        let archive = self.archive.as_ref().ok_or_else(|| {
            LoaderError::Other(
                "OKX's trades older than three months are listed from its archive, which is \
                 not set"
                    .into(),
            )
        })?;
        list_archive(archive, &self.layout(inst_id), range, |row, cursor| {
            admit(&parse_file_row(row).map_err(LoaderError::Exchange)?, cursor)
        })
        .await
    }

    /// The ordinals of every trade of `range`: over REST from where it serves trades, from
    /// the archive before.
    async fn list_all(&self, inst_id: &str, range: TimeRange) -> Result<Vec<i64>> {
        let cut = self
            .rest_start()
            .unwrap_or(i64::MAX)
            .clamp(range.start_ms, range.end_ms);
        let mut ordinals = Vec::new();
        if range.start_ms < cut {
            let older = TimeRange {
                start_ms: range.start_ms,
                end_ms: cut,
            };
            ordinals = self.list_archive(inst_id, older).await?;
        }
        if cut < range.end_ms {
            let newer = TimeRange {
                start_ms: cut,
                end_ms: range.end_ms,
            };
            ordinals.extend(self.list(inst_id, newer).await?);
        }
        Ok(ordinals)
    }
    /// One page: the trades just before `before`, newest first, each checked to be there, and
    /// how many OKX answered (a full page means there may be more). A trade at the cursor
    /// itself is dropped, should OKX count `after` inclusively: the window after has it.
    async fn page(&self, inst_id: &str, before: Before, limit: u32) -> Result<(Vec<Trade>, usize)> {
        let (kind, after) = match before {
            Before::Time(t) => ("2", t.to_string()),
            Before::Id(id) => ("1", id.to_string()),
        };
        let params = [
            ("instId", inst_id.to_string()),
            ("type", kind.to_string()),
            ("after", after),
            ("limit", limit.to_string()),
        ];
        let rows: Vec<Row> = {
            let session = self.session()?;
            let _in_flight = session
                .pages
                .acquire()
                .await
                .map_err(|_| LoaderError::Cancelled)?;
            session
                .client
                .get(rules::TRADES, &params)
                .await
                .map_err(|e| request_error(e, self.market, Some(inst_id)))?
        };
        let mut page = rows
            .into_iter()
            .map(parse_row)
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(|e| LoaderError::Exchange(format!("OKX's {}: {e}", rules::TRADES)))?;
        check_page(&page, before, limit).map_err(|e| {
            LoaderError::Exchange(format!("OKX's {} for {inst_id}: {e}", rules::TRADES))
        })?;
        let answered = page.len();
        page.retain(|t| match before {
            Before::Time(at) => t.time < at,
            Before::Id(id) => t.id < id,
        });
        Ok((page, answered))
    }

    /// Every trade of `[from, to)`, oldest first; `None` when more than `cap` are there (the
    /// window is asked again shorter).
    async fn window(
        &self,
        inst_id: &str,
        from: i64,
        to: i64,
        cap: usize,
    ) -> Result<Option<Vec<Trade>>> {
        let mut found = Vec::new();
        let mut before = Before::Time(to);
        loop {
            let (page, answered) = self.page(inst_id, before, rules::MAX_TRADE_PAGE).await?;
            let full = answered == rules::MAX_TRADE_PAGE as usize;
            let oldest = page.last().map(|t| (t.id, t.time));
            found.extend(page.into_iter().filter(|t| t.time >= from && t.time < to));
            match oldest {
                Some((id, time)) if full && time >= from => {
                    if found.len() > cap {
                        return Ok(None);
                    }
                    before = Before::Id(id);
                }
                _ => break,
            }
        }
        found.reverse();
        Ok(Some(found))
    }

    /// The windows of `span`, oldest first (the live feed's backfill walks them too).
    pub(super) fn windows<'a>(&'a self, inst_id: &'a str, span: TimeRange) -> Windows<'a> {
        let ahead = self
            .session
            .as_ref()
            .map_or(1, |s| s.concurrency.clamp(1, MOST_WINDOWS_AHEAD));
        Windows {
            trades: self,
            inst_id,
            from: span.start_ms,
            end: span.end_ms,
            length: FIRST_WINDOW_MS,
            ahead,
            ready: std::collections::VecDeque::new(),
        }
    }

    /// Every trade of `range` with its ordinal, oldest first (for `verify`).
    async fn list(&self, inst_id: &str, range: TimeRange) -> Result<Vec<i64>> {
        let mut cursor = Cursor::for_sequence(Sequence::Ranked, range);
        let mut ordinals = Vec::new();
        let mut windows = self.windows(inst_id, range);
        while let Some(trades) = windows.next().await? {
            for t in &trades {
                ordinals.extend(admit(t, &mut cursor)?);
            }
        }
        Ok(ordinals)
    }
}

/// A span's trades, window by window: `ahead` windows of one length are asked at once and
/// handed on in order, and the next ones are sized from the busiest of them.
pub(super) struct Windows<'a> {
    trades: &'a OkxTrades,
    inst_id: &'a str,
    /// Where the windows not asked yet start.
    from: i64,
    end: i64,
    length: i64,
    ahead: usize,
    /// Windows asked and not handed on yet, oldest first.
    ready: std::collections::VecDeque<Vec<Trade>>,
}

impl Windows<'_> {
    /// The next window's trades, oldest first; `None` past the span's end.
    pub(super) async fn next(&mut self) -> Result<Option<Vec<Trade>>> {
        loop {
            if let Some(trades) = self.ready.pop_front() {
                return Ok(Some(trades));
            }
            if self.from >= self.end {
                return Ok(None);
            }
            let mut bounds = Vec::with_capacity(self.ahead);
            let mut t = self.from;
            while bounds.len() < self.ahead && t < self.end {
                let to = t.saturating_add(self.length).min(self.end);
                bounds.push((t, to));
                t = to;
            }
            let (trades, inst_id) = (self.trades, self.inst_id);
            let asked = bounds
                .iter()
                .map(|&(from, to)| trades.window(inst_id, from, to, MAX_WINDOW_TRADES));
            let answers = futures::future::join_all(asked).await;
            let mut length = LONGEST_WINDOW_MS;
            for (&(from, to), answer) in bounds.iter().zip(answers) {
                match answer? {
                    Some(found) => {
                        length = length.min(next_length(to - from, found.len()));
                        self.from = to;
                        self.ready.push_back(found);
                    }
                    None if to - from <= 1 => {
                        return Err(LoaderError::Exchange(format!(
                            "OKX has more than {MAX_WINDOW_TRADES} trades of {inst_id} at {}: \
                             more than the loader holds to put them in order",
                            fmt_ms(from)
                        )))
                    }
                    // Too many to hold: this window and the ones after it are asked again,
                    // shorter.
                    None => {
                        length = ((to - from) / 8).max(1);
                        break;
                    }
                }
            }
            self.length = length;
        }
    }
}

/// The length of the window after one of `length` ms that held `trades`: sized to hold about
/// [`TARGET_WINDOW_TRADES`], growing at most eightfold at a time.
fn next_length(length: i64, trades: usize) -> i64 {
    let scaled = match trades {
        0 => length.saturating_mul(8),
        n => (length as i128 * TARGET_WINDOW_TRADES as i128 / n as i128) as i64,
    };
    scaled
        .clamp(1, length.saturating_mul(8))
        .min(LONGEST_WINDOW_MS)
}

fn parse_row(r: Row) -> std::result::Result<Trade, String> {
    let id = r
        .trade_id
        .parse::<u64>()
        .map_err(|_| format!("a tradeId that is not a number: {:?}", r.trade_id))?;
    let time =
        r.ts.parse::<i64>()
            .map_err(|_| format!("trade {id} has a ts that is not a number: {:?}", r.ts))?;
    let buyer_maker = match r.side.as_str() {
        "sell" => true,
        "buy" => false,
        other => {
            return Err(format!(
                "trade {id} has a side that is not buy or sell: {other:?}"
            ))
        }
    };
    if r.px.is_empty() || r.sz.is_empty() {
        return Err(format!("trade {id} has no px or sz"));
    }
    Ok(Trade {
        id,
        time,
        price: r.px,
        size: r.sz,
        buyer_maker,
    })
}

/// Reads a row of a trade file (see [`rules::trade_file`] for the columns).
fn parse_file_row(row: &csv::StringRecord) -> std::result::Result<Trade<&str>, String> {
    let id = fields::uint(row, rules::TRADE_FILE_ID, "trade_id")?;
    let side = fields::text(row, rules::TRADE_FILE_SIDE, "side")?;
    let buyer_maker = if side.eq_ignore_ascii_case("sell") {
        true
    } else if side.eq_ignore_ascii_case("buy") {
        false
    } else {
        return Err(format!(
            "column {} (side) is not buy or sell: {side:?}",
            rules::TRADE_FILE_SIDE + 1
        ));
    };
    Ok(Trade {
        id,
        time: fields::int(row, rules::TRADE_FILE_TIME, "created_time")?,
        price: fields::text(row, rules::TRADE_FILE_PRICE, "price")?,
        size: fields::text(row, rules::TRADE_FILE_SIZE, "size")?,
        buyer_maker,
    })
}

/// Publishes `t` into `batch` if `cursor` admits it.
fn push<S: AsRef<str>>(t: &Trade<S>, cursor: &mut Cursor, batch: &mut RecordBatch) -> Result<()> {
    if let Some(ordinal) = admit(t, cursor)? {
        batch.push_ranked_trade(&RankedTrade {
            ordinal,
            id: TradeId::Number(t.id),
            price: t.price.as_ref(),
            quantity: t.size.as_ref(),
            time: t.time,
            is_buyer_maker: t.buyer_maker,
        })?;
    }
    Ok(())
}

/// A page must be what was asked: at most `limit` trades, newest first by id and time, none
/// after `before`. Anything else would put trades out of order or skip some.
fn check_page(page: &[Trade], before: Before, limit: u32) -> std::result::Result<(), String> {
    if page.len() > limit as usize {
        return Err(format!("{} trades answered, {limit} asked", page.len()));
    }
    for pair in page.windows(2) {
        if pair[1].id >= pair[0].id || pair[1].time > pair[0].time {
            return Err(format!(
                "trade {} follows trade {}: the page is not newest first",
                pair[1].id, pair[0].id
            ));
        }
    }
    match (before, page.first()) {
        (Before::Time(t), Some(first)) if first.time > t => Err(format!(
            "trade {} at {} answers a page before {t}",
            first.id, first.time
        )),
        (Before::Id(id), Some(first)) if first.id > id => Err(format!(
            "trade {} answers a page before trade {id}",
            first.id
        )),
        _ => Ok(()),
    }
}

/// Offers a trade to `cursor`; its ordinal when admitted.
fn admit<S>(t: &Trade<S>, cursor: &mut Cursor) -> Result<Option<i64>> {
    let rank = cursor.rank(t.time).ok_or_else(|| {
        LoaderError::Exchange(format!(
            "OKX's trade {} at {} follows a later one",
            t.id,
            fmt_ms(t.time)
        ))
    })?;
    let ordinal = time_rank::ordinal(t.time, rank).ok_or_else(|| {
        LoaderError::Exchange(format!(
            "OKX's trade {} at {} (ms) cannot be keyed: more than {} trades at one millisecond",
            t.id,
            t.time,
            time_rank::PER_MS
        ))
    })?;
    Ok(cursor.admit(t.time, ordinal).then_some(ordinal))
}

impl History for OkxTrades {
    fn kind(&self) -> RecordKind {
        RecordKind::Trades
    }

    fn has_rest(&self) -> bool {
        self.session.is_some()
    }

    fn archive_layout(&self, _market: Market, symbol: &str) -> Option<ArchiveLayout> {
        Some(self.layout(symbol))
    }

    fn push_csv_row(
        &self,
        row: &csv::StringRecord,
        cursor: &mut Cursor,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        let t = parse_file_row(row).map_err(LoaderError::Exchange)?;
        push(&t, cursor, batch)
    }

    /// REST serves the last three months: older spans come from the archive.
    fn rest_from(&self, ctx: &HistoryContext) -> Option<RestFrom> {
        Some(RestFrom::new(HORIZON, ctx))
    }

    /// What `verify` can ask about: everything where the archive is read (older ranges are
    /// listed from its files), else the last three months.
    fn horizon(&self, _market: Market, _by_time: bool) -> Option<Horizon> {
        match self.archive {
            Some(_) => None,
            None => Some(HORIZON),
        }
    }

    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut windows = self.windows(&ctx.symbol, span);
            while let Some(trades) = windows.next().await? {
                let mut batch = ctx.batch(trades.len().max(1));
                for t in &trades {
                    push(t, cursor, &mut batch)?;
                }
                if !batch.is_empty() {
                    out.send(batch, crate::registry::Origin::Rest).await?;
                }
            }
            Ok(())
        })
    }

    fn listed<'a>(
        &'a self,
        symbol: &'a str,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Option<Vec<i64>>>> {
        Box::pin(async move { self.list_all(symbol, range).await.map(Some) })
    }

    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            match probe {
                Probe::Time(r) if r.end_ms <= r.start_ms => Ok(false),
                Probe::Time(r) if self.rest_start().is_some_and(|s| r.start_ms >= s) => {
                    // Two, should OKX answer a trade at the end itself first.
                    let (page, _) = self.page(symbol, Before::Time(r.end_ms), 2).await?;
                    Ok(page.first().is_some_and(|t| t.time >= r.start_ms))
                }
                Probe::Time(r) => Ok(!self.list_all(symbol, r).await?.is_empty()),
                Probe::Ordinals(a, b) => {
                    let range = TimeRange {
                        start_ms: time_rank::time(a),
                        end_ms: time_rank::time(b) + 1,
                    };
                    let listed = self.list_all(symbol, range).await?;
                    Ok(listed.iter().any(|o| (a..=b).contains(o)))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(id: u64, time: i64) -> Trade {
        Trade {
            id,
            time,
            price: "1".into(),
            size: "1".into(),
            buyer_maker: false,
        }
    }

    #[test]
    fn a_page_must_be_newest_first_and_before_its_cursor() {
        let page = [trade(9, 20), trade(7, 20), trade(3, 11)];
        assert!(check_page(&page, Before::Id(10), 100).is_ok());
        assert!(check_page(&page, Before::Time(21), 100).is_ok());
        // A trade at the cursor is tolerated (and dropped), one past it is not.
        assert!(check_page(&page, Before::Id(9), 100).is_ok());
        let e = check_page(&page, Before::Id(8), 100).unwrap_err();
        assert!(e.contains("before trade 8"), "{e}");
        assert!(check_page(&page, Before::Time(20), 100).is_ok());
        let e = check_page(&page, Before::Time(19), 100).unwrap_err();
        assert!(e.contains("before 19"), "{e}");
        let e = check_page(&[trade(3, 11), trade(7, 20)], Before::Id(10), 100).unwrap_err();
        assert!(e.contains("not newest first"), "{e}");
        assert!(check_page(&page, Before::Id(10), 2).is_err());
    }

    #[test]
    fn rows_are_read_with_the_takers_side() {
        let row = |side: &str, ts: &str| Row {
            trade_id: "42".into(),
            px: "30000.1".into(),
            sz: "0.5".into(),
            side: side.into(),
            ts: ts.into(),
        };
        let t = parse_row(row("sell", "1700000000000")).unwrap();
        assert_eq!((t.id, t.time, t.buyer_maker), (42, 1_700_000_000_000, true));
        assert!(!parse_row(row("buy", "1")).unwrap().buyer_maker);
        assert!(parse_row(row("hold", "1"))
            .unwrap_err()
            .contains("buy or sell"));
        assert!(parse_row(row("buy", "x")).unwrap_err().contains("ts"));
    }

    #[test]
    fn windows_follow_the_trades_they_hold() {
        // Busy: ten times the target shrinks the window tenfold.
        assert_eq!(next_length(600_000, TARGET_WINDOW_TRADES * 10), 60_000);
        // Quiet: an empty window grows eightfold, up to a day.
        assert_eq!(next_length(600_000, 0), 4_800_000);
        assert_eq!(next_length(LONGEST_WINDOW_MS, 0), LONGEST_WINDOW_MS);
        // Never shorter than a millisecond.
        assert_eq!(next_length(1, usize::MAX), 1);
    }
}
