//! Which source loads which part of a range (`SOURCE`).
//!
//! - `auto`: every whole month that has a monthly file comes from it, every remaining whole day
//!   from its daily file, and the rest (partial days at the edges, today, days the archive does
//!   not have, yet or at all) from REST. Whether the archive has a file is the archive's answer:
//!   a 404 for its `.CHECKSUM` (or for the file, where the venue publishes no checksums) means
//!   not there, whatever the date.
//! - `archive`: the same files, and the partial days at the edges from their (filtered) daily
//!   files; never REST: a missing file is an error.
//! - `rest`: the REST API only.

use futures::{stream, StreamExt};

use crate::archive::{ArchiveClient, ArchiveError, ArchiveFile, ArchiveLayout, Expected, Period};
use crate::error::{LoaderError, Result};
use crate::source_mode::SourceMode;
use crate::time_range::TimeRange;
use crate::venue::history::{HistoryContext, RestFrom};

/// One part of the plan, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Load `[start, end)` over REST.
    Rest(TimeRange),
    /// Publish the rows of `file` that fall in `span` (the whole file, or part of it at the
    /// range's edges with `SOURCE=archive`).
    Archive {
        file: ArchiveFile,
        /// What the download must match.
        expected: Expected,
        span: TimeRange,
    },
}

/// A piece of the range before the archive is asked.
#[derive(Debug, Clone, Copy)]
enum Piece {
    WholeMonth(Period),
    WholeDay(Period),
    /// Part of a period: loaded over REST, or from the period's file with `SOURCE=archive`.
    Partial(Period, TimeRange),
}

/// Cuts `range` into whole months, whole days (when the type has daily files) and partial
/// pieces at the edges, of the archive's calendar.
fn pieces(range: TimeRange, layout: &ArchiveLayout) -> Vec<Piece> {
    let daily = layout.has_daily();
    let mut out = Vec::new();
    let mut t = range.start_ms;
    while t < range.end_ms {
        let month = layout.month_of(t);
        let m = layout.span(month);
        let day = layout.day_of(t);
        let d = layout.span(day);
        let piece = if m.start_ms == t && m.end_ms <= range.end_ms {
            Piece::WholeMonth(month)
        } else if daily && d.start_ms == t && d.end_ms <= range.end_ms {
            Piece::WholeDay(day)
        } else if daily {
            Piece::Partial(
                day,
                TimeRange {
                    start_ms: t,
                    end_ms: d.end_ms.min(range.end_ms),
                },
            )
        } else {
            Piece::Partial(
                month,
                TimeRange {
                    start_ms: t,
                    end_ms: m.end_ms.min(range.end_ms),
                },
            )
        };
        t = match piece {
            Piece::WholeMonth(p) | Piece::WholeDay(p) => layout.span(p).end_ms,
            Piece::Partial(_, r) => r.end_ms,
        };
        out.push(piece);
    }
    out
}

/// The days of a month, as whole-day pieces.
fn days_of(month: Period, layout: &ArchiveLayout) -> impl Iterator<Item = Piece> + '_ {
    let span = layout.span(month);
    (0..)
        .map(move |i| span.start_ms + i * crate::time_range::DAY_MS)
        .take_while(move |&t| t < span.end_ms)
        .map(|t| Piece::WholeDay(layout.day_of(t)))
}

/// What the archive says about one file.
enum Probed {
    Found(Expected),
    Missing,
    /// The archive could not be asked (auto falls back to REST, saying why).
    Failed(ArchiveError),
}

async fn probe(archive: &ArchiveClient, file: &ArchiveFile) -> Probed {
    match archive.expected(file).await {
        Ok(Some(sum)) => Probed::Found(sum),
        Ok(None) => Probed::Missing,
        Err(e) => Probed::Failed(e),
    }
}

/// Asks the archive for every file `wanted` names, `concurrency` at a time, in order.
async fn probe_all(
    archive: &ArchiveClient,
    wanted: Vec<ArchiveFile>,
    concurrency: usize,
) -> Vec<(ArchiveFile, Probed)> {
    stream::iter(wanted)
        .map(|f| async move {
            let p = probe(archive, &f).await;
            (f, p)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// Plans `range` (already cut at the present) for one symbol. Fallbacks decided here (the
/// archive could not be asked) are appended to `fallbacks`. No span older than `rest_from`
/// is planned over REST: with `SOURCE=rest` that is a configuration error, with `auto` those
/// pieces come from the archive's files (filtered at the edges) or the plan fails.
pub async fn plan(
    ctx: &HistoryContext,
    layout: Option<&ArchiveLayout>,
    range: TimeRange,
    rest_from: Option<&RestFrom>,
    fallbacks: &mut Vec<String>,
) -> Result<Vec<Step>> {
    let too_old = |mode: &str| -> Option<LoaderError> {
        let from = rest_from.filter(|f| f.excludes(range))?;
        // Where the archive has no files for the type, only a later start helps.
        let instead = match layout {
            Some(_) => {
                "use SOURCE=auto or archive (the archive's daily and monthly files hold older \
                 data), or a later start"
            }
            None => "use a later start",
        };
        Some(LoaderError::config(format!(
            "TIME_RANGE starts at {} but {}{}, and {mode}; {instead}",
            crate::time_range::fmt_ms(range.start_ms),
            from.why,
            from.since(),
        )))
    };
    let (archive, layout) =
        match (ctx.mode, &ctx.archive, layout) {
            (SourceMode::Rest, _, _) | (_, None, _) => {
                let why = match ctx.mode {
                    SourceMode::Rest => "SOURCE=rest never reads the archive",
                    // No archive client: the loader reads no archive of this venue.
                    _ => "the loader reads no archive of this venue",
                };
                return match too_old(why) {
                    Some(e) => Err(e),
                    None => Ok(vec![Step::Rest(range)]),
                };
            }
            (SourceMode::Archive, _, None) => return Err(LoaderError::config(
                "SOURCE=archive: the archive has no files for this TYPE; use SOURCE=auto or rest",
            )),
            (SourceMode::Auto, _, None) => {
                return match too_old("the archive has no files for this TYPE") {
                    Some(e) => Err(e),
                    None => Ok(vec![Step::Rest(range)]),
                }
            }
            (_, Some(a), Some(l)) => (a.as_ref(), l),
        };
    let archive_only = ctx.mode == SourceMode::Archive;
    // A piece that must come from the archive: every piece with SOURCE=archive, and those REST
    // cannot serve with auto.
    let strict_for = |span: TimeRange| archive_only || rest_from.is_some_and(|f| f.excludes(span));
    // Why a piece that had to come from the archive cannot.
    let not_there = |span: TimeRange, file: &ArchiveFile| match rest_from {
        Some(f) if !archive_only => f.error(
            span,
            &format!(
                "{} is not in the archive at {} {}",
                file.name,
                archive.url_var(),
                archive.base_url()
            ),
        ),
        _ => missing(file, archive, layout),
    };
    let failed = |span: TimeRange, e: ArchiveError| match rest_from {
        Some(f) if !archive_only && !matches!(e, ArchiveError::Cancelled) => {
            f.error(span, &e.to_string())
        }
        _ => archive_error(e),
    };
    if let Some(e) = archive.unreachable() {
        // Found out by an earlier symbol's plan: nothing to ask.
        if strict_for(range) {
            return Err(failed(range, e));
        }
        note_unreachable(fallbacks, &e);
        return Ok(vec![Step::Rest(range)]);
    }
    let concurrency = archive.probes_at_once();
    let mut pieces = pieces(range, layout);
    if !layout.has_monthly() {
        // Daily files only (futures metrics): every whole month is its days.
        pieces = pieces
            .into_iter()
            .flat_map(|p| match p {
                Piece::WholeMonth(m) => days_of(m, layout).collect::<Vec<_>>(),
                other => vec![other],
            })
            .collect();
    }

    // Months first: a month without a monthly file becomes its days (or REST).
    let months: Vec<ArchiveFile> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::WholeMonth(m) => Some(layout.file(*m)),
            _ => None,
        })
        .collect();
    let mut month_files = probe_all(archive, months, concurrency).await.into_iter();
    let mut expanded = Vec::with_capacity(pieces.len());
    let mut resolved: Vec<(Piece, Option<(ArchiveFile, Expected)>)> = Vec::new();
    for piece in pieces.drain(..) {
        match piece {
            Piece::WholeMonth(m) => {
                let (file, probed) = month_files.next().expect("one probe per month");
                let span = layout.span(m);
                let strict = strict_for(span);
                match probed {
                    Probed::Found(sum) => expanded.push((piece, Some((file, sum)))),
                    Probed::Missing if layout.has_daily() => {
                        expanded.extend(days_of(m, layout).map(|d| (d, None)))
                    }
                    Probed::Missing if strict => return Err(not_there(span, &file)),
                    Probed::Missing => expanded.push((Piece::Partial(m, span), None)),
                    Probed::Failed(e) if strict => return Err(failed(span, e)),
                    Probed::Failed(e) => {
                        note_fallback(fallbacks, &ctx.symbol, &file, &e);
                        expanded.push((Piece::Partial(m, span), None));
                    }
                }
            }
            other => expanded.push((other, None)),
        }
    }
    // Then days, and with SOURCE=archive the files of the partial pieces.
    let wanted: Vec<ArchiveFile> = expanded
        .iter()
        .filter_map(|(p, found)| match (p, found) {
            (_, Some(_)) => None,
            (Piece::WholeDay(d), None) => Some(layout.file(*d)),
            (Piece::Partial(period, span), None) if strict_for(*span) => Some(layout.file(*period)),
            _ => None,
        })
        .collect();
    let mut day_files = probe_all(archive, wanted, concurrency).await.into_iter();
    for (piece, found) in expanded {
        if found.is_some() {
            resolved.push((piece, found));
            continue;
        }
        let span = match piece {
            Piece::WholeMonth(p) | Piece::WholeDay(p) => layout.span(p),
            Piece::Partial(_, r) => r,
        };
        let strict = strict_for(span);
        let asked =
            matches!(piece, Piece::WholeDay(_)) || (strict && matches!(piece, Piece::Partial(..)));
        if !asked {
            resolved.push((piece, None));
            continue;
        }
        let (file, probed) = day_files.next().expect("one probe per file asked");
        match probed {
            Probed::Found(sum) => resolved.push((piece, Some((file, sum)))),
            Probed::Missing if strict => return Err(not_there(span, &file)),
            Probed::Missing => {
                tracing::info!(symbol = %ctx.symbol, file = %file.name, "not in the archive (yet): loading it over REST");
                resolved.push((piece, None));
            }
            Probed::Failed(e) if strict => return Err(failed(span, e)),
            Probed::Failed(e) => {
                note_fallback(fallbacks, &ctx.symbol, &file, &e);
                resolved.push((piece, None));
            }
        }
    }

    let mut steps: Vec<Step> = Vec::new();
    for (piece, found) in resolved {
        let span = match piece {
            Piece::WholeMonth(p) | Piece::WholeDay(p) => layout.span(p),
            Piece::Partial(_, r) => r,
        };
        match found {
            Some((file, expected)) => steps.push(Step::Archive {
                file,
                expected,
                span,
            }),
            None => match steps.last_mut() {
                Some(Step::Rest(prev)) if prev.end_ms == span.start_ms => prev.end_ms = span.end_ms,
                _ => steps.push(Step::Rest(span)),
            },
        }
    }
    Ok(steps)
}

fn note_fallback(fallbacks: &mut Vec<String>, symbol: &str, file: &ArchiveFile, e: &ArchiveError) {
    if matches!(e, ArchiveError::Unreachable { .. }) {
        return note_unreachable(fallbacks, e);
    }
    let why = format!(
        "{}: loaded over REST because the archive failed: {e}",
        file.name
    );
    tracing::warn!(symbol, file = %file.name, error = %e, "archive unavailable for this file: falling back to REST");
    fallbacks.push(why);
}

/// One entry per symbol for an archive that cannot be reached (the client said so once).
fn note_unreachable(fallbacks: &mut Vec<String>, e: &ArchiveError) {
    let why = format!("every archive file: loaded over REST because {e}");
    if !fallbacks.contains(&why) {
        fallbacks.push(why);
    }
}

fn missing(file: &ArchiveFile, archive: &ArchiveClient, layout: &ArchiveLayout) -> LoaderError {
    LoaderError::Archive(format!(
        "SOURCE=archive: {} is not in the archive at {} {} (HTTP 404; {}); use SOURCE=auto to load what the archive lacks over REST",
        file.name,
        archive.url_var(),
        archive.base_url(),
        layout.schedule,
    ))
}

/// An archive failure as the job's error (`SOURCE=archive`).
pub fn archive_error(e: ArchiveError) -> LoaderError {
    match e {
        ArchiveError::Cancelled => LoaderError::Cancelled,
        e => LoaderError::Archive(format!("SOURCE=archive: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = crate::time_range::DAY_MS;
    const JAN1_2024: i64 = 1_704_067_200_000;
    const FEB1_2024: i64 = JAN1_2024 + 31 * DAY;

    #[test]
    fn a_range_is_cut_into_months_days_and_edges() {
        let range = TimeRange {
            start_ms: JAN1_2024 - DAY - 3_600_000,
            end_ms: FEB1_2024 + DAY + 60_000,
        };
        let layout = |daily: bool, utc_offset_ms: i64| ArchiveLayout {
            daily: daily.then(|| "d-%Y-%m-%d".to_string()),
            monthly: Some("m-%Y-%m".into()),
            format: crate::archive::FileFormat::ZippedCsv,
            integrity: crate::archive::Integrity::ChecksumFile,
            order: crate::archive::RowOrder::Ascending,
            schedule: "",
            utc_offset_ms,
        };
        let daily = layout(true, 0);
        let p = pieces(range, &daily);
        let kinds: Vec<&str> = p
            .iter()
            .map(|p| match p {
                Piece::WholeMonth(_) => "month",
                Piece::WholeDay(_) => "day",
                Piece::Partial(..) => "partial",
            })
            .collect();
        assert_eq!(kinds, ["partial", "day", "month", "day", "partial"]);
        match p[0] {
            Piece::Partial(_, r) => {
                assert_eq!((r.start_ms, r.end_ms), (range.start_ms, JAN1_2024 - DAY))
            }
            _ => unreachable!(),
        }
        // Without daily files (3d, 1w, 1M candles) the edges are parts of months.
        let p = pieces(range, &layout(false, 0));
        assert_eq!(p.len(), 3);
        assert!(matches!(p[2], Piece::Partial(Period::Month(_), _)));
        assert_eq!(days_of(Period::month_of(JAN1_2024), &daily).count(), 31);
    }

    /// An archive dated in UTC+8: its day of 2024-01-02 is [01-01 16:00, 01-02 16:00) UTC, so
    /// two UTC days are the end of one file, a whole file and the start of a third.
    #[test]
    fn an_archive_dated_in_another_zone_is_cut_at_its_own_midnights() {
        const H: i64 = 3_600_000;
        let l = ArchiveLayout {
            daily: Some("d-%Y-%m-%d".into()),
            monthly: None,
            format: crate::archive::FileFormat::ZippedCsv,
            integrity: crate::archive::Integrity::HeadAndCrc,
            order: crate::archive::RowOrder::Ascending,
            schedule: "",
            utc_offset_ms: 8 * H,
        };
        let range = TimeRange {
            start_ms: JAN1_2024,
            end_ms: JAN1_2024 + 2 * DAY,
        };
        let p = pieces(range, &l);
        let got: Vec<(String, i64, i64)> = p
            .iter()
            .map(|p| match *p {
                Piece::WholeDay(d) => (l.file(d).name, l.span(d).start_ms, l.span(d).end_ms),
                Piece::Partial(d, r) => (l.file(d).name, r.start_ms, r.end_ms),
                Piece::WholeMonth(_) => unreachable!("no whole month in two days"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("d-2024-01-01".to_string(), JAN1_2024, JAN1_2024 + 16 * H),
                (
                    "d-2024-01-02".to_string(),
                    JAN1_2024 + 16 * H,
                    JAN1_2024 + DAY + 16 * H
                ),
                (
                    "d-2024-01-03".to_string(),
                    JAN1_2024 + DAY + 16 * H,
                    JAN1_2024 + 2 * DAY
                ),
            ]
        );
    }
}
