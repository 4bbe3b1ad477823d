//! The history seam: what a venue's history type does (the [`History`] trait) and what the
//! generic history driver (`source::history`), `verify` and the job hand it, none of which names a
//! venue. A venue implements [`History`] once per data type in its own tree
//! (`venue::binance::history`); the types here keep one symbol's records in order and unique
//! across archive files and REST pages ([`Cursor`]), hand them to the sink ([`Emitter`]) and say
//! what was found ([`SourceSummary`]).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use kline_interval::Interval;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::archive::{ArchiveClient, ArchiveLayout};
use crate::error::{LoaderError, Result};
use crate::market::{Market, Venue};
use crate::record::RecordBatch;
use crate::registry::{Origin, RecordKind};
use crate::source_mode::SourceMode;
use crate::time_range::TimeRange;

/// What a history source needs for one symbol. The venue's connection is not here: a
/// venue's [`History`] holds its own (and has none with `SOURCE=archive`).
#[derive(Clone)]
pub struct HistoryContext {
    /// The venue's present.
    pub clock: VenueClock,
    /// The archive; absent with `SOURCE=rest`.
    pub archive: Option<Arc<ArchiveClient>>,
    pub mode: SourceMode,
    pub venue: Venue,
    pub market: Market,
    pub symbol: Arc<str>,
    pub range: TimeRange,
    /// Rows per page of trades and other id- or time-paged endpoints.
    pub page_limit: u32,
    /// Candles per klines request.
    pub kline_page_limit: u32,
    /// REST requests in flight for this symbol.
    pub concurrency: usize,
    pub status: Arc<dyn Progress>,
    /// The job's stop: work in progress is abandoned when it fires.
    pub stop: CancellationToken,
    /// The last record an earlier attempt of this job published for the symbol.
    pub resume: Option<ResumePoint>,
}

impl HistoryContext {
    /// An empty batch of this symbol's records.
    pub fn batch(&self, capacity: usize) -> RecordBatch {
        RecordBatch::new(self.venue, self.market, self.symbol.clone(), capacity)
    }

    /// The current time by the venue's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// How long after its time a record counts as settled, for every type of every venue: a candle
/// this long after its close, a trade or a settlement this long after it happened (so a range
/// ending now is cut the same way everywhere).
pub const SETTLE_MS: i64 = 1_000;

/// A venue's present: the local clock shifted by the offset to the venue's time measured when
/// connecting (none without a connection, e.g. `SOURCE=archive`). Ranges are cut, settled and
/// checked against horizons by it, so a job and its `verify` agree with the venue on "now".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VenueClock {
    pub offset_ms: i64,
}

impl VenueClock {
    pub fn now_ms(self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.offset_ms
    }
}

/// What a source says about its progress as it goes (the job's status, which telemetry and
/// metrics read).
pub trait Progress: Send + Sync {
    /// `records` were handed to the sink from `origin`.
    fn note_origin(&self, origin: Origin, records: u64);
    /// An archive file (or a hole in one) was loaded over REST instead.
    fn note_fallback(&self);
    /// An archive file's hole was published as it is: REST could not fill it.
    fn note_archive_hole(&self);
    /// A live event of the venue's time `ms` arrived.
    fn note_event_time(&self, _ms: i64) {}
}

/// The last record an earlier attempt of the job published for one symbol: where a resumed
/// load continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// Open time (candles), trade id (trades) or update id (depth, tickers).
    pub ordinal: i64,
    pub timestamp: i64,
}

/// A gap `verify` asks a source about: ordinals (open times or ids) or a time span.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// Inclusive ordinals.
    Ordinals(i64, i64),
    /// Half-open time span.
    Time(TimeRange),
}

impl Probe {
    /// For time-ordered types: the inclusive times to ask about (a span starts at its first
    /// `grid` boundary, when the type has one), or `None` when nothing fits.
    pub fn time_bounds(self, grid: Option<Interval>) -> Option<(i64, i64)> {
        let (from, to_inclusive) = match self {
            Probe::Ordinals(a, b) => (a, b),
            Probe::Time(r) => (
                grid.map_or(r.start_ms, |iv| iv.align_up(r.start_ms)),
                r.end_ms - 1,
            ),
        };
        (from <= to_inclusive).then_some((from, to_inclusive))
    }
}

/// What `verify` learns at the exchange about one edge of an id-ordered topic: the ids of the
/// range before its first record, or after its last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    /// The exchange has no record there that the topic lacks.
    Complete,
    /// The exchange has these ids (inclusive) and the topic does not.
    Missing(i64, i64),
    /// The exchange cannot be asked (its REST horizon): why.
    Unchecked(String),
}

/// Where an id-ordered topic's records start and end: (id, time) of the first and the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdEnds {
    pub first: (i64, i64),
    pub last: (i64, i64),
}

/// How far back a venue's REST endpoint serves a type's history, where the venue limits it:
/// older records exist only in its archive, and the endpoint cannot be asked about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// Whose REST it is.
    pub venue: Venue,
    /// How old a record may be, in ms before the exchange's present.
    pub ms: i64,
    /// The span in words ("the last year").
    pub span: &'static str,
    /// What is limited ("aggregate trades").
    pub what: &'static str,
}

impl Horizon {
    /// The oldest time the endpoint answers for at `now_ms` (the exchange's clock).
    pub fn oldest(self, now_ms: i64) -> i64 {
        now_ms - self.ms
    }

    /// How much younger than [`oldest`](Self::oldest) a span must start to be planned over
    /// REST, so that it is still served when its request goes out: a day, or a 24th of a
    /// short horizon (5 hours of OKX's 5 days of 5-minute open interest).
    pub fn margin_ms(self) -> i64 {
        crate::time_range::DAY_MS.min(self.ms / 24)
    }

    /// Why a time before [`oldest`](Self::oldest) cannot be asked about in `market`.
    pub fn reason(self, market: Market) -> String {
        format!(
            "{}'s REST serves {} {} of {} only",
            self.venue.title(),
            self.venue.market_title(market),
            self.what,
            self.span
        )
    }
}

/// The oldest time the REST API serves a type's history from, where it has a horizon (futures
/// trades: the last year), with a margin ([`Horizon::margin_ms`]) so that a span planned near the edge is still
/// served when its request goes out.
#[derive(Debug, Clone)]
pub struct RestFrom {
    pub ms: i64,
    /// Why older spans cannot come from REST, e.g. "Binance's REST serves USDⓈ-M aggregate
    /// trades of the last year only".
    pub why: String,
}

impl RestFrom {
    pub fn new(horizon: Horizon, ctx: &HistoryContext) -> RestFrom {
        RestFrom {
            ms: horizon.oldest(ctx.now_ms()) + horizon.margin_ms(),
            why: horizon.reason(ctx.market),
        }
    }

    /// REST serves none of the type's history (`why` says so): every span must come from the
    /// archive.
    pub fn none(why: String) -> RestFrom {
        RestFrom { ms: i64::MAX, why }
    }

    /// ` (since <time>)`, or nothing where REST serves no history.
    pub fn since(&self) -> String {
        match self.ms {
            i64::MAX => String::new(),
            ms => format!(" (since {})", crate::time_range::fmt_ms(ms)),
        }
    }

    /// Whether `span` starts before what REST serves.
    pub fn excludes(&self, span: TimeRange) -> bool {
        span.start_ms < self.ms
    }

    /// The error for a span that only the archive could serve and did not.
    pub fn error(&self, span: TimeRange, archive_said: &str) -> LoaderError {
        LoaderError::Archive(format!(
            "{} to {} cannot be loaded: {archive_said}, and {}{}; the archive is the only \
             source of older data",
            crate::time_range::fmt_ms(span.start_ms),
            crate::time_range::fmt_ms(span.end_ms),
            self.why,
            self.since(),
        ))
    }
}

/// `[start, end)` windows of at most `per_window` candles each (a venue's page) and at most
/// `max_span` ms from first to last open time, covering `[first, end)`, with their candle
/// counts: each window is one request that answers all of its candles, whichever end the
/// venue answers from.
pub fn candle_windows(
    iv: Interval,
    first: i64,
    end: i64,
    per_window: i64,
    max_span: Option<i64>,
) -> Vec<(i64, i64, i64)> {
    let mut out = Vec::new();
    let mut w = first;
    while w < end {
        let (mut we, mut n) = (w, 0);
        while n < per_window && we < end {
            let next = iv.next_open(we);
            if n > 0 && max_span.is_some_and(|span| next - 1 - w > span) {
                break;
            }
            we = next;
            n += 1;
        }
        let we = we.min(end);
        out.push((w, we, n));
        w = we;
    }
    out
}

/// The windows of a grid type (candles, open interest) after `cursor`'s last row within
/// `span`: `[start, end_inclusive]` and the rows each holds, a page at most.
pub fn grid_windows(
    iv: Interval,
    cursor: &Cursor,
    span: TimeRange,
    page: u32,
) -> impl Iterator<Item = (i64, i64, u32)> + Send {
    let from = match cursor.last {
        Some(last) => iv.next_open(last).max(span.start_ms),
        None => span.start_ms,
    };
    candle_windows(iv, iv.align_up(from), span.end_ms, page as i64, None)
        .into_iter()
        .map(|(ws, we, n)| (ws, we - 1, n as u32))
}

/// `span` cut into `[start, end)` windows of `window_ms` (the last one short), for types
/// without a grid (funding: an instrument's interval can change) whose window holds fewer rows
/// than a page.
pub fn time_windows(span: TimeRange, window_ms: i64) -> impl Iterator<Item = (i64, i64)> {
    let end = span.end_ms;
    (0..)
        .map(move |i| span.start_ms.saturating_add(i * window_ms))
        .take_while(move |w| *w < end)
        .map(move |w| (w, w.saturating_add(window_ms).min(end)))
}

/// Funding settlements `(time, rate)` of `span` after `cursor`'s last, from a venue that
/// answers windows of time (`fetch(first, last_inclusive, page)`, oldest first): windows of
/// `window_ms`, each holding fewer settlements than `page`, published through
/// [`load_windows`].
#[allow(clippy::too_many_arguments)]
pub async fn load_funding<F, Fut>(
    pages: &tokio::sync::Semaphore,
    ctx: &HistoryContext,
    span: TimeRange,
    cursor: &mut Cursor,
    out: &mut Emitter,
    window_ms: i64,
    page: u32,
    fetch: F,
) -> Result<()>
where
    F: Fn(i64, i64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(i64, String)>>>,
{
    let from = match cursor.last {
        Some(last) => (last + 1).max(span.start_ms),
        None => span.start_ms,
    };
    let span = TimeRange {
        start_ms: from,
        end_ms: span.end_ms,
    };
    let windows = time_windows(span, window_ms).map(move |(ws, we)| (ws, we - 1, page));
    load_windows(pages, ctx, windows, fetch, out, |batch, (time, rate)| {
        if *time < span.end_ms && cursor.admit(*time, *time) {
            batch.push_funding(*time, rate, None)?;
        }
        Ok(())
    })
    .await
}

/// The times of every row of `range` a venue answers in windows of `window_ms`
/// (`fetch(first, last_inclusive, page)`), for `verify`'s list (funding settlements).
pub async fn list_times<R, F, Fut>(
    range: TimeRange,
    window_ms: i64,
    page: u32,
    fetch: F,
) -> Result<Option<Vec<i64>>>
where
    F: Fn(i64, i64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(i64, R)>>>,
{
    let mut times = Vec::new();
    for (ws, we) in time_windows(range, window_ms) {
        let rows = fetch(ws, we - 1, page).await?;
        times.extend(rows.into_iter().map(|r| r.0).filter(|t| range.contains(*t)));
    }
    Ok(Some(times))
}

/// Loads `windows` (`[start, end_inclusive]` and the rows each holds at most) with `fetch`,
/// `FETCH_CONCURRENCY` at a time, each holding one of `pages` (the session's slots, as many for
/// the whole job) until it is published, and publishes every window's rows in order through
/// `push` (which admits them through the cursor).
pub async fn load_windows<R, F, Fut>(
    pages: &tokio::sync::Semaphore,
    ctx: &HistoryContext,
    windows: impl Iterator<Item = (i64, i64, u32)> + Send,
    fetch: F,
    out: &mut Emitter,
    mut push: impl FnMut(&mut RecordBatch, &R) -> Result<(), LoaderError>,
) -> Result<(), LoaderError>
where
    F: Fn(i64, i64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<R>, LoaderError>>,
{
    let mut loaded = std::pin::pin!(futures::stream::iter(windows)
        .map(|(from, to_inclusive, limit)| {
            let rows = fetch(from, to_inclusive, limit);
            async move {
                let slot = pages.acquire().await.map_err(|_| LoaderError::Cancelled)?;
                Ok::<_, LoaderError>((slot, rows.await?))
            }
        })
        .buffered(ctx.concurrency.max(1)));
    while let Some(page) = loaded.next().await {
        let (_slot, rows) = page?;
        let mut batch = ctx.batch(rows.len());
        for row in &rows {
            push(&mut batch, row)?;
        }
        out.send(batch, Origin::Rest).await?;
    }
    Ok(())
}

/// The ordinals of every record of `range` in the archive's files of `layout`, oldest first
/// (for `verify`'s list of a venue whose ids count nothing): each file the range touches is
/// asked about, downloaded, checked and read, its header skipped as a load skips it, and each
/// row offered to one cursor across the files, so ranks and time order run on as in a load.
/// `ordinal_of` reads a row and offers it to the cursor: its ordinal when admitted.
pub async fn list_archive<F>(
    archive: &ArchiveClient,
    layout: &ArchiveLayout,
    range: TimeRange,
    ordinal_of: F,
) -> Result<Vec<i64>>
where
    F: Fn(&csv::StringRecord, &mut Cursor) -> Result<Option<i64>> + Clone + Send + 'static,
{
    let mut ordinals = Vec::new();
    let mut cursor = Cursor::for_sequence(crate::registry::Sequence::Ranked, range);
    let mut day = layout.day_of(range.start_ms);
    while layout.span(day).start_ms < range.end_ms {
        let file = layout.file(day);
        let unusable = |e: &dyn std::fmt::Display| {
            LoaderError::Archive(format!(
                "{}: the archive at {} {} cannot list its records: {e}",
                file.name,
                archive.url_var(),
                archive.base_url()
            ))
        };
        let expected = archive
            .expected(&file)
            .await
            .map_err(|e| unusable(&e))?
            .ok_or_else(|| unusable(&"the file is not there (HTTP 404)"))?;
        let slot = archive.file_slot().await.map_err(|e| unusable(&e))?;
        let verified = archive
            .download(slot, &file, &expected)
            .await
            .map_err(|e| unusable(&e))?;
        let (mut found, mut running, ordinal_of) =
            (std::mem::take(&mut ordinals), cursor, ordinal_of.clone());
        let read = tokio::task::spawn_blocking(move || {
            let mut first = true;
            let rows = verified.read_rows(|row| {
                // The header, as a load skips it: the file's first row only.
                if std::mem::take(&mut first) && crate::archive::fields::is_header(row) {
                    return Ok(true);
                }
                found.extend(ordinal_of(row, &mut running)?);
                Ok(!running.past_range())
            });
            (found, running, rows)
        })
        .await
        .map_err(|e| LoaderError::Other(format!("the archive reader thread failed: {e}")))?;
        (ordinals, cursor) = (read.0, read.1);
        read.2.map_err(|e| unusable(&e))?;
        day = layout.day_of(layout.span(day).end_ms);
    }
    Ok(ordinals)
}

/// A history data type as one venue serves it: how its records come from the venue's REST API
/// and from its archive. A venue implements it per type in its own tree, holding its REST
/// connection when it has one (`SOURCE=archive` has none); the registry describes the types.
pub trait History: Send + Sync + 'static {
    fn kind(&self) -> RecordKind;

    /// Whether this history can ask the venue's REST API (not with `SOURCE=archive`): the
    /// driver fills holes of archive files over it only then.
    fn has_rest(&self) -> bool;

    /// The end of what is settled at `now`: records at least [`SETTLE_MS`] old, and on a grid
    /// (candles, statistics periods) only rows whose period closed that long ago, so a range
    /// ending now is cut the same way for every type of every venue.
    fn settled_end(&self, now: i64) -> i64 {
        match self.kind().sequence() {
            crate::registry::Sequence::TimeGrid(iv) => iv.align_down(now - SETTLE_MS),
            _ => now - SETTLE_MS,
        }
    }

    /// Where the archive keeps this type for `symbol`, if it does; by default nowhere (a type
    /// loaded over REST only).
    fn archive_layout(&self, market: Market, symbol: &str) -> Option<ArchiveLayout> {
        let _ = (market, symbol);
        None
    }

    /// Parses one archive CSV row and pushes it into `batch` when `cursor` admits it. Only
    /// types with an [`archive_layout`](Self::archive_layout) are ever given one.
    fn push_csv_row(
        &self,
        row: &csv::StringRecord,
        cursor: &mut Cursor,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        let _ = (row, cursor, batch);
        Err(LoaderError::Other(format!(
            "{} is loaded over REST only: no archive row is one of its records",
            self.kind().name()
        )))
    }

    /// Loads `[span.start, span.end)` over REST, continuing after what `cursor` saw.
    fn load_rest<'a>(
        &'a self,
        ctx: &'a HistoryContext,
        span: TimeRange,
        cursor: &'a mut Cursor,
        out: &'a mut Emitter,
    ) -> BoxFuture<'a, Result<()>>;

    /// The ordinals of every record the exchange lists in `range`, for types without a grid
    /// ([`Sequence::Listed`](crate::registry::Sequence::Listed)); `None` for the others.
    fn listed<'a>(
        &'a self,
        symbol: &'a str,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Option<Vec<i64>>>> {
        let _ = (symbol, range);
        Box::pin(async { Ok(None) })
    }

    /// Whether the exchange has any record in `probe` (for `verify`: a gap the exchange also
    /// has is not a lost record).
    fn exists<'a>(&'a self, symbol: &'a str, probe: Probe) -> BoxFuture<'a, Result<bool>>;

    /// The oldest time REST serves this type's history from (with a margin), where it has a
    /// limit: no older span is planned over REST (`source::plan`). By default the limit of
    /// [`horizon`](Self::horizon) by time.
    fn rest_from(&self, ctx: &HistoryContext) -> Option<RestFrom> {
        self.horizon(ctx.market, true)
            .map(|h| RestFrom::new(h, ctx))
    }

    /// How far back [`exists`](Self::exists) can ask the exchange about a probe in `market`
    /// (`by_time`: a [`Probe::Time`], else [`Probe::Ordinals`]); `None` where unlimited.
    fn horizon(&self, market: Market, by_time: bool) -> Option<Horizon> {
        let _ = (market, by_time);
        None
    }

    /// For id-ordered types ([`Sequence::Ids`](crate::registry::Sequence::Ids)): what the
    /// exchange has of `range` before the first record present and after the last (head, tail);
    /// `None` for the others.
    fn id_edges<'a>(
        &'a self,
        symbol: &'a str,
        range: TimeRange,
        ends: IdEnds,
    ) -> BoxFuture<'a, Option<(Result<Edge>, Result<Edge>)>> {
        let _ = (symbol, range, ends);
        Box::pin(async { None })
    }
}

/// Keeps one symbol's records in order and unique across spans (monthly, daily, REST): a
/// record is admitted only inside the range and after the last one admitted, and for id-ordered
/// types a skipped id is noted as a gap in the exchange's data.
///
/// While [`hold_holes`](Self::hold_holes) is set (an archive file that REST can stand in for),
/// a record that leaves a hole after the last one (an id skipped, an open time of the grid
/// missing) is not admitted: the hole is kept in [`hole`](Self::hole) for the reader to fill
/// over REST before the record is offered again.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub range: TimeRange,
    ids: bool,
    /// The open-time grid of candle-like kinds.
    grid: Option<Interval>,
    /// The last ordinal admitted (open time or id), and its record's time.
    pub last: Option<i64>,
    pub last_time: Option<i64>,
    /// Refuse a record after a hole, and keep the hole.
    pub hold_holes: bool,
    hole: Option<Hole>,
    /// Inclusive id ranges the exchange does not have.
    pub gaps: Vec<(u64, u64)>,
    /// Rows dropped because they were already admitted (duplicates in a file, seams).
    pub duplicates: u64,
    /// The time of the last row offered to [`rank`](Self::rank), and how many had it.
    ranked: Option<(i64, u32)>,
}

/// Records missing between two that were offered one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// The last record admitted: its ordinal and time.
    pub after_ordinal: i64,
    pub after_time: i64,
    /// The record that was refused: its ordinal and time.
    pub next_ordinal: i64,
    pub next_time: i64,
}

impl Hole {
    /// The span that holds the missing records and the refused one, for a REST request that
    /// continues after the cursor.
    pub fn span(&self) -> TimeRange {
        TimeRange {
            start_ms: self.after_time,
            end_ms: self.next_time + 1,
        }
    }
}

impl Cursor {
    pub fn new(kind: RecordKind, range: TimeRange) -> Self {
        Self::for_sequence(kind.sequence(), range)
    }

    /// A cursor for records ordered as `sequence` says (a kind's at one venue:
    /// [`RecordKind::sequence_at`]).
    pub fn for_sequence(sequence: crate::registry::Sequence, range: TimeRange) -> Self {
        Cursor {
            range,
            ids: matches!(sequence, crate::registry::Sequence::Ids),
            grid: match sequence {
                crate::registry::Sequence::TimeGrid(iv) => Some(iv),
                _ => None,
            },
            ranked: None,
            last: None,
            last_time: None,
            hold_holes: false,
            hole: None,
            gaps: Vec::new(),
            duplicates: 0,
        }
    }

    /// Whether a record at `time` with `ordinal` is published.
    #[inline]
    pub fn admit(&mut self, time: i64, ordinal: i64) -> bool {
        if !self.range.contains(time) {
            return false;
        }
        if let Some(last) = self.last {
            if ordinal <= last {
                self.duplicates += 1;
                return false;
            }
            // Only id sequences count gaps, and only a held hole needs the grid's next
            // open: candles from REST or a stream skip `next_open` on every record.
            let expected = || match self.grid {
                Some(iv) => iv.next_open(last),
                None => last + 1,
            };
            if (self.ids || (self.hold_holes && self.grid.is_some())) && ordinal > expected() {
                if self.hold_holes {
                    self.hole = Some(Hole {
                        after_ordinal: last,
                        after_time: self.last_time.unwrap_or(self.range.start_ms),
                        next_ordinal: ordinal,
                        next_time: time,
                    });
                    return false;
                }
                if self.ids {
                    self.note_gap(last as u64 + 1, ordinal as u64 - 1);
                }
            }
        }
        self.last = Some(ordinal);
        self.last_time = Some(time);
        true
    }

    /// The rank of a row at `time` among the rows offered with the same time before it, for
    /// [`time_rank`](crate::registry::time_rank) ordinals: every row of a file is offered once,
    /// in the venue's order, whether or not it is then admitted. `None` for a row earlier than
    /// the one offered before it: the rows are out of time order, and no rank would be stable.
    pub fn rank(&mut self, time: i64) -> Option<u32> {
        let rank = match self.ranked {
            Some((t, _)) if time < t => return None,
            Some((t, n)) if t == time => n,
            _ => 0,
        };
        self.ranked = Some((time, rank + 1));
        Some(rank)
    }

    /// Whether every row still to come lies past the range: a row at or after its end was
    /// offered to [`rank`](Self::rank), and ranked rows come in time order (`rank` refuses one
    /// that does not), so the rest of a file need not be read. Always `false` for other
    /// sequences, whose rows the cursor does not hold to time order. An archive file's
    /// integrity does not depend on reading it to the end: its hash was matched on download, or
    /// its CRCs were read through before its first row ([`crate::archive`]).
    pub fn past_range(&self) -> bool {
        self.ranked.is_some_and(|(t, _)| t >= self.range.end_ms)
    }

    /// Takes the hole found, if any.
    pub fn take_hole(&mut self) -> Option<Hole> {
        self.hole.take()
    }

    pub fn note_gap(&mut self, first: u64, last: u64) {
        match self.gaps.last_mut() {
            Some(g) if g.1 + 1 >= first => g.1 = g.1.max(last),
            _ => self.gaps.push((first, last)),
        }
    }

    /// The next id expected (id-ordered types).
    pub fn next_id(&self) -> Option<u64> {
        self.last.map(|l| l as u64 + 1)
    }
}

/// Sends a symbol's batches to the sink and keeps its summary.
pub struct Emitter {
    tx: mpsc::Sender<RecordBatch>,
    pub summary: SourceSummary,
    status: Arc<dyn Progress>,
}

impl Emitter {
    pub fn new(tx: mpsc::Sender<RecordBatch>, symbol: &str, status: Arc<dyn Progress>) -> Self {
        Emitter {
            tx,
            summary: SourceSummary {
                symbol: symbol.to_string(),
                ..Default::default()
            },
            status,
        }
    }

    fn note(&mut self, batch: &RecordBatch, origin: Origin) {
        self.summary.note(batch, origin);
        self.status.note_origin(origin, batch.len() as u64);
    }

    /// Hands a batch to the sink (waiting while its channel is full).
    pub async fn send(&mut self, batch: RecordBatch, origin: Origin) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.note(&batch, origin);
        self.tx
            .send(batch)
            .await
            .map_err(|_| LoaderError::SinkClosed)
    }

    /// The same from a blocking thread (archive files are parsed on one).
    pub fn blocking_send(&mut self, batch: RecordBatch, origin: Origin) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.note(&batch, origin);
        self.tx
            .blocking_send(batch)
            .map_err(|_| LoaderError::SinkClosed)
    }
}

/// What a source found, for the summary and for telemetry.
#[derive(Debug, Default, Clone)]
pub struct SourceSummary {
    pub symbol: String,
    pub records: u64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    /// Inclusive id ranges missing from the exchange's data (trades).
    pub gaps: Vec<(u64, u64)>,
    /// The range end was past the present: loading stopped at this time.
    pub clamped_end: Option<i64>,
    /// Records by origin.
    pub from_archive: u64,
    pub from_rest: u64,
    pub from_stream: u64,
    /// Archive files published.
    pub archive_files: u64,
    /// Archive files that could not be used and were loaded over REST instead, with why.
    pub fallbacks: Vec<String>,
    /// Holes in archive files that REST could not fill (`SOURCE=archive`, or older than REST
    /// serves): published as the file has them, and said so.
    pub archive_holes: Vec<String>,
    /// Rows dropped as duplicates (repeated rows in archive files, overlaps at seams).
    pub duplicates_dropped: u64,
    /// Live types: records fetched over REST to fill gaps after reconnects and rotations.
    pub backfilled: u64,
    /// Live types: connections lost and replaced.
    pub reconnects: u64,
    /// Live order books: rebuilt from a new snapshot after the diff sequence broke.
    pub resyncs: u64,
    /// Live diff depth: events whose first update id did not follow the previous one.
    pub sequence_breaks: u64,
    /// The source ended because the job was stopped, not because its range was done.
    pub stopped: bool,
}

impl SourceSummary {
    pub fn missing_ids(&self) -> u64 {
        self.gaps.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub(crate) fn note(&mut self, batch: &RecordBatch, origin: Origin) {
        let n = batch.len() as u64;
        self.records += n;
        match origin {
            Origin::Archive => self.from_archive += n,
            Origin::Rest => self.from_rest += n,
            Origin::WebSocket => self.from_stream += n,
        }
        self.first_timestamp.get_or_insert(batch.first_timestamp);
        self.last_timestamp = Some(batch.last_timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_admits_in_range_once_and_notes_id_gaps() {
        let range = TimeRange {
            start_ms: 100,
            end_ms: 200,
        };
        let mut c = Cursor::new(RecordKind::AggTrades, range);
        assert!(!c.admit(99, 1), "before the range");
        assert!(c.admit(100, 2));
        assert!(!c.admit(100, 2), "a repeated row");
        assert!(c.admit(150, 5));
        assert!(!c.admit(200, 6), "the end is exclusive");
        assert_eq!(
            (c.gaps.clone(), c.duplicates, c.next_id()),
            (vec![(3, 4)], 1, Some(6))
        );
        let mut k = Cursor::new(RecordKind::Candles(Interval::M1), range);
        assert!(k.admit(120, 120) && k.admit(180, 180));
        assert!(k.gaps.is_empty(), "candles have no id gaps");
    }

    #[test]
    fn a_cursor_holding_holes_refuses_the_record_after_one_and_keeps_it() {
        let range = TimeRange {
            start_ms: 0,
            end_ms: 1_000_000,
        };
        let mut c = Cursor::new(RecordKind::AggTrades, range);
        c.hold_holes = true;
        assert!(c.admit(10, 1) && c.admit(20, 2));
        assert!(!c.admit(50, 5), "ids 3 and 4 are missing");
        let hole = c.take_hole().expect("the hole");
        assert_eq!((hole.after_ordinal, hole.next_ordinal), (2, 5));
        assert_eq!(
            hole.span(),
            TimeRange {
                start_ms: 20,
                end_ms: 51
            }
        );
        assert_eq!(c.take_hole(), None);
        // Offered again without holding: admitted, and the gap noted as the exchange's.
        c.hold_holes = false;
        assert!(c.admit(50, 5));
        assert_eq!(c.gaps, vec![(3, 4)]);
        // Candles: an open time of the grid missing.
        let iv = Interval::M1;
        let mut k = Cursor::new(RecordKind::Candles(iv), range);
        k.hold_holes = true;
        assert!(k.admit(0, 0) && k.admit(60_000, 60_000));
        assert!(!k.admit(240_000, 240_000));
        assert_eq!(k.take_hole().map(|h| h.span().start_ms), Some(60_000));
        assert!(k.gaps.is_empty());
    }

    #[test]
    fn ranks_count_the_rows_offered_at_one_time_whether_or_not_admitted() {
        let range = TimeRange {
            start_ms: 10,
            end_ms: 100,
        };
        let mut c = Cursor::for_sequence(crate::registry::Sequence::Ranked, range);
        c.last = Some(crate::registry::time_rank::ordinal(20, 1).unwrap());
        let mut offered = Vec::new();
        for t in [5, 20, 20, 20, 30, 30] {
            let rank = c.rank(t).unwrap();
            let ordinal = crate::registry::time_rank::ordinal(t, rank).unwrap();
            offered.push((rank, c.admit(t, ordinal)));
        }
        // Before the range; two already published (resumed after rank 1 at 20); then new.
        assert_eq!(
            offered,
            [
                (0, false),
                (0, false),
                (1, false),
                (2, true),
                (0, true),
                (1, true)
            ]
        );
        assert!(c.gaps.is_empty(), "ranked kinds have no id gaps");
        assert_eq!(c.rank(29), None, "a row out of time order");
    }

    #[test]
    fn only_a_ranked_row_at_or_after_the_end_makes_the_rest_of_a_file_unneeded() {
        let range = TimeRange {
            start_ms: 10,
            end_ms: 100,
        };
        let mut c = Cursor::for_sequence(crate::registry::Sequence::Ranked, range);
        assert!(!c.past_range(), "nothing offered yet");
        for t in [5, 50, 99] {
            c.rank(t).unwrap();
            assert!(!c.past_range(), "{t} is before the end");
        }
        c.rank(100).unwrap();
        assert!(
            c.past_range(),
            "the end is exclusive: a row at it is past the range"
        );
        // Ids and grids are not held to time order by the cursor: their files are read through.
        for sequence in [
            crate::registry::Sequence::Ids,
            crate::registry::Sequence::TimeGrid(Interval::M1),
        ] {
            let mut c = Cursor::for_sequence(sequence, range);
            assert!(!c.admit(500, 500));
            assert!(!c.past_range());
        }
    }
}
