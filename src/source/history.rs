//! The history driver: loads one symbol's range of a [`History`] type by following its plan in
//! time order. Archive files are downloaded ahead (at most `ARCHIVE_CONCURRENCY` on disk at a
//! time for the whole job, however many symbols it loads) while earlier steps publish; each file is checked against its CHECKSUM before any of its
//! rows is published, then read as a stream on a blocking thread. One [`Cursor`] follows the
//! symbol through every step, so the seams between monthly, daily and REST spans neither repeat
//! nor lose a record, and a file that cannot be used falls back to REST with `SOURCE=auto`.
//!
//! Binance's files sometimes lack rows that REST still serves, with a CHECKSUM that matches the
//! short file (binance-public-data issues 106, 230 and 307: up to 608 minutes of one day). With
//! `SOURCE=auto`, where REST serves the file's span, a row that follows a hole (an id skipped,
//! a candle missing) waits while the hole is loaded over REST, so the topic has no hole.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::plan::{self, archive_error, Step};
use crate::archive::{ArchiveError, FileSlot, VerifiedFile};
use crate::error::{LoaderError, Result};
use crate::record::RecordBatch;
use crate::registry::Origin;
use crate::source_mode::SourceMode;
use crate::time_range::fmt_ms;
use crate::venue::history::{Cursor, Emitter, History, HistoryContext, Hole, SourceSummary};

/// Rows per batch handed to the sink from an archive file.
const ARCHIVE_BATCH: usize = 4096;

/// A download running ahead; aborted if the load ends first.
struct Prefetch(JoinHandle<Result<VerifiedFile, ArchiveError>>);

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Loads `ctx.range` of `kind` for `ctx.symbol` into `tx`.
pub async fn load(
    kind: Arc<dyn History>,
    ctx: HistoryContext,
    tx: mpsc::Sender<RecordBatch>,
) -> Result<SourceSummary> {
    let mut out = Emitter::new(tx, &ctx.symbol, ctx.status.clone());
    let settled = kind.settled_end(ctx.now_ms());
    let mut range = ctx.range;
    // After an earlier attempt: from its last record on (the cursor drops that record itself).
    if let Some(p) = ctx.resume {
        range.start_ms = range.start_ms.max(p.timestamp);
    }
    if range.end_ms > settled {
        tracing::info!(
            symbol = %ctx.symbol,
            requested_end = %fmt_ms(range.end_ms),
            loading_until = %fmt_ms(settled),
            "TIME_RANGE reaches past the present: loading what exists"
        );
        range.end_ms = settled.max(range.start_ms);
        out.summary.clamped_end = Some(range.end_ms);
    }
    if range.end_ms <= range.start_ms {
        return Ok(out.summary);
    }
    let layout = kind.archive_layout(ctx.market, &ctx.symbol);
    let mut fallbacks = Vec::new();
    // Futures trades (the last year) and open interest (30 days): older spans come from the
    // archive.
    let rest_from = kind.rest_from(&ctx);
    let steps = plan::plan(
        &ctx,
        layout.as_ref(),
        range,
        rest_from.as_ref(),
        &mut fallbacks,
    )
    .await?;
    describe(&ctx, &steps);
    // Files the archive could not even be asked about fall back like files that fail later.
    for _ in &fallbacks {
        ctx.status.note_fallback();
    }
    out.summary.fallbacks = fallbacks;

    let mut cursor = Cursor::for_sequence(kind.kind().sequence_at(ctx.venue), range);
    cursor.last = ctx.resume.map(|p| p.ordinal);
    cursor.last_time = ctx.resume.map(|p| p.timestamp);
    let mut prefetched: VecDeque<Option<Prefetch>> = VecDeque::new();
    let mut next_to_fetch = 0;
    for i in 0..steps.len() {
        // Step i's file waits for a slot if it must (this symbol holds none then: earlier
        // files were deleted once published). Files further ahead start only while a slot is
        // free at once and nobody waits, so the job keeps at most ARCHIVE_CONCURRENCY files
        // however many symbols it loads, and symbols never wait on each other's slots.
        if next_to_fetch == i {
            let slot = match (&steps[i], &ctx.archive) {
                (Step::Archive { .. }, Some(archive)) => {
                    Some(archive.file_slot().await.map_err(archive_error)?)
                }
                _ => None,
            };
            prefetched.push_back(start_download(&ctx, &steps[i], slot));
            next_to_fetch += 1;
        }
        while next_to_fetch < steps.len() {
            let slot = match (&steps[next_to_fetch], &ctx.archive) {
                (Step::Archive { .. }, Some(archive)) => match archive.try_file_slot() {
                    Some(slot) => Some(slot),
                    None => break,
                },
                _ => None,
            };
            prefetched.push_back(start_download(&ctx, &steps[next_to_fetch], slot));
            next_to_fetch += 1;
        }
        // The front of the queue is step i's (a download for archive steps, none for REST).
        let download = prefetched.pop_front().flatten();
        match &steps[i] {
            Step::Rest(span) => kind.load_rest(&ctx, *span, &mut cursor, &mut out).await?,
            Step::Archive { file, span, .. } => {
                let mut download = download.expect("archive steps are prefetched");
                // Holes in the file are filled over REST where REST serves its span.
                let fill = ctx.mode == SourceMode::Auto
                    && kind.has_rest()
                    && !rest_from.as_ref().is_some_and(|f| f.excludes(*span));
                let result = match (&mut download.0).await {
                    Ok(Ok(verified)) => {
                        let (c, o, r) =
                            publish_file(kind.clone(), &ctx, verified, fill, cursor, out).await?;
                        cursor = c;
                        out = o;
                        r
                    }
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(ArchiveError::Transfer {
                        name: file.name.clone(),
                        detail: format!("download task failed: {e}"),
                    }),
                };
                match result {
                    Ok(()) => {}
                    Err(ArchiveError::Cancelled) => return Err(LoaderError::Cancelled),
                    // REST cannot stand in for a file older than what it serves.
                    Err(e)
                        if ctx.mode == SourceMode::Auto
                            && rest_from.as_ref().is_some_and(|f| f.excludes(*span)) =>
                    {
                        let from = rest_from.as_ref().expect("checked");
                        return Err(from.error(*span, &e.to_string()));
                    }
                    Err(e) if ctx.mode == SourceMode::Auto && e.can_fall_back() => {
                        tracing::warn!(symbol = %ctx.symbol, file = %file.name, error = %e,
                            "archive file unusable: loading its span over REST instead");
                        ctx.status.note_fallback();
                        out.summary
                            .fallbacks
                            .push(format!("{}: loaded over REST because {e}", file.name));
                        kind.load_rest(&ctx, *span, &mut cursor, &mut out).await?;
                    }
                    Err(e) => return Err(archive_error(e)),
                }
            }
        }
    }
    out.summary.gaps = std::mem::take(&mut cursor.gaps);
    out.summary.duplicates_dropped = cursor.duplicates;
    for (a, b) in &out.summary.gaps {
        tracing::warn!(symbol = %ctx.symbol, first_missing = a, last_missing = b, count = b - a + 1,
            "the exchange has no records with these ids: a gap in its data");
    }
    Ok(out.summary)
}

fn start_download(ctx: &HistoryContext, step: &Step, slot: Option<FileSlot>) -> Option<Prefetch> {
    let Step::Archive { file, expected, .. } = step else {
        return None;
    };
    let (archive, slot) = (ctx.archive.clone()?, slot?);
    let (file, expected) = (file.clone(), expected.clone());
    Some(Prefetch(tokio::spawn(async move {
        archive.download(slot, &file, &expected).await
    })))
}

/// Publishes the rows of a verified file on a blocking thread and hands the cursor and emitter
/// back; with `fill`, a hole in the file is loaded over REST before the row after it. The inner
/// result is the file's: a file that turns out unreadable can still fall back to REST from
/// where the cursor stands. The outer one fails the load.
async fn publish_file(
    kind: Arc<dyn History>,
    ctx: &HistoryContext,
    file: VerifiedFile,
    fill: bool,
    cursor: Cursor,
    out: Emitter,
) -> Result<(Cursor, Emitter, Result<(), ArchiveError>)> {
    let symbol = ctx.symbol.clone();
    let (venue, market) = (ctx.venue, ctx.market);
    let stop = ctx.stop.clone();
    let ctx = ctx.clone();
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let (mut cursor, mut out) = (cursor, out);
        // Holes are looked for in every file: filled over REST where it can, said otherwise.
        cursor.hold_holes = true;
        let mut batch = RecordBatch::new(venue, market, symbol.clone(), ARCHIVE_BATCH);
        let mut header_checked = false;
        let mut failure: Option<LoaderError> = None;
        let read = file.read_rows(|row| {
            if !header_checked {
                header_checked = true;
                if crate::archive::fields::is_header(row) {
                    return Ok(true);
                }
            }
            kind.push_csv_row(row, &mut cursor, &mut batch)?;
            if let Some(hole) = cursor.take_hole() {
                // What precedes the hole goes first, then the hole, then this row again (a
                // duplicate if REST served it too; after a hole REST has no records for either,
                // the exchange's own gap).
                let before = std::mem::replace(
                    &mut batch,
                    RecordBatch::new(venue, market, symbol.clone(), ARCHIVE_BATCH),
                );
                let filled = out.blocking_send(before, Origin::Archive).and_then(|()| {
                    if fill {
                        runtime.block_on(fill_hole(
                            &*kind,
                            &ctx,
                            &file,
                            hole,
                            &mut cursor,
                            &mut out,
                        ))
                    } else {
                        report_hole(&ctx, &file, hole, &mut out);
                        Ok(())
                    }
                });
                if let Err(e) = filled {
                    failure = Some(e);
                    return Ok(false);
                }
                // An unfilled hole is the file's, not a gap the exchange is known to have.
                let gaps = (!fill).then(|| cursor.gaps.clone());
                cursor.hold_holes = false;
                let again = kind.push_csv_row(row, &mut cursor, &mut batch);
                cursor.hold_holes = true;
                if let Some(gaps) = gaps {
                    cursor.gaps = gaps;
                }
                again?;
            }
            if batch.len() >= ARCHIVE_BATCH {
                if stop.is_cancelled() {
                    return Ok(false);
                }
                let full = std::mem::replace(
                    &mut batch,
                    RecordBatch::new(venue, market, symbol.clone(), ARCHIVE_BATCH),
                );
                if let Err(e) = out.blocking_send(full, Origin::Archive) {
                    failure = Some(e);
                    return Ok(false);
                }
            }
            // A file of UTC+8 days (OKX) ends 16 hours into the next UTC day: the rows after
            // the range are not parsed.
            Ok(!cursor.past_range())
        });
        cursor.hold_holes = false;
        // Whatever was read is published, also when the file then turns out unreadable.
        let sent = out.blocking_send(batch, Origin::Archive);
        if let Some(e) = failure {
            return Err(e);
        }
        sent?;
        if stop.is_cancelled() {
            return Err(LoaderError::Cancelled);
        }
        let rows = match read {
            Ok(rows) => rows,
            Err(e) => return Ok((cursor, out, Err(e))),
        };
        out.summary.archive_files += 1;
        tracing::debug!(file = %file.file.name, rows, bytes = file.bytes, "archive file published");
        Ok((cursor, out, Ok(())))
    });
    task.await
        .map_err(|e| LoaderError::Other(format!("the archive reader thread failed: {e}")))?
}

/// Loads a hole of an archive file over REST, and says so.
async fn fill_hole(
    kind: &dyn History,
    ctx: &HistoryContext,
    file: &VerifiedFile,
    hole: Hole,
    cursor: &mut Cursor,
    out: &mut Emitter,
) -> Result<()> {
    let before = cursor.last;
    kind.load_rest(ctx, hole.span(), cursor, out).await?;
    let found = cursor.last != before;
    tracing::warn!(symbol = %ctx.symbol, file = %file.file.name, after = hole.after_ordinal,
        before = hole.next_ordinal, from = %fmt_ms(hole.after_time), to = %fmt_ms(hole.next_time),
        loaded_over_rest = found,
        "the archive file lacks records that should lie between two of its rows: asked REST for them");
    if found {
        ctx.status.note_fallback();
        out.summary.fallbacks.push(format!(
            "{}: records missing between {} and {} loaded over REST",
            file.file.name, hole.after_ordinal, hole.next_ordinal
        ));
    }
    Ok(())
}

/// A hole of an archive file that REST cannot fill (`SOURCE=archive`, or older than REST
/// serves): the file is published as it is, and the hole is said in the log, the summary, the
/// telemetry and by `verify`.
fn report_hole(ctx: &HistoryContext, file: &VerifiedFile, hole: Hole, out: &mut Emitter) {
    tracing::warn!(symbol = %ctx.symbol, file = %file.file.name, after = hole.after_ordinal,
        before = hole.next_ordinal, from = %fmt_ms(hole.after_time), to = %fmt_ms(hole.next_time),
        "the archive file lacks records that should lie between two of its rows, and REST cannot \
         be asked for them (SOURCE=archive, or older than REST serves): published as the file has them");
    ctx.status.note_archive_hole();
    out.summary.archive_holes.push(format!(
        "{}: records missing between {} and {} (not in the archive file; REST not asked)",
        file.file.name, hole.after_ordinal, hole.next_ordinal
    ));
}

/// Logs the plan in one line per kind of step.
fn describe(ctx: &HistoryContext, steps: &[Step]) {
    let (mut files, mut rest) = (0usize, Vec::new());
    for s in steps {
        match s {
            Step::Archive { .. } => files += 1,
            Step::Rest(r) => rest.push(r.to_string()),
        }
    }
    tracing::info!(symbol = %ctx.symbol, source = %ctx.mode, archive_files = files, rest_spans = ?rest, "plan");
}
