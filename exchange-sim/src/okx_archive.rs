//! OKX's archive of trades, served under `/okx-archive` ([`SimServer::okx_archive_url`], OKX's
//! `https://static.okx.com`), from the same trades as the OKX venue's history-trades
//! ([`crate::okx::trades`]). The layout and columns are those independent downloaders read
//! (OKX documents neither): `cdn/okex/traderecords/trades/daily/YYYYMMDD/INST-trades-YYYY-MM-DD.zip`,
//! a zip of one CSV `INST-trades-YYYY-MM-DD.csv` with header
//! `instrument_name,trade_id,side,price,size,created_time` (files from 2024 on add `source`),
//! rows in trade-id order, ms times, the taker's side.
//!
//! OKX dates its files in UTC+8: the file of day D holds `[D-1 16:00, D 16:00)` UTC. A file
//! appears when its day has ended by the simulator's clock, never before the instrument's
//! listing, and never for the archive's `missing_days`. Files are served as an object store
//! serves them ([`crate::object_store`]): size and md5 ETag, no checksum file.
//!
//! [`SimServer::okx_archive_url`]: crate::SimServer::okx_archive_url

use std::io::Write;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::data::Data;
use crate::object_store::{day_start, ArchiveAnswer, ArchiveStats, ObjectStore};

const DAY_MS: i64 = 86_400_000;
/// OKX's calendar: UTC+8.
pub const UTC_OFFSET_MS: i64 = 8 * 3_600_000;
/// Files of days from 2024-01-01 (UTC+8) have a `source` column.
const SOURCE_COLUMN_FROM_MS: i64 = 1_704_067_200_000;

/// `[start, end)` in UTC of the file of `date` (`YYYY-MM-DD`, a day of UTC+8).
pub fn file_span(date: &str) -> Option<(i64, i64)> {
    let start = day_start(date)? - UTC_OFFSET_MS;
    Some((start, start + DAY_MS))
}

/// OKX's archive: its files in an [`ObjectStore`].
#[derive(Default)]
pub(crate) struct OkxArchive {
    store: ObjectStore,
}

impl OkxArchive {
    pub fn stats(&self) -> ArchiveStats {
        self.store.stats()
    }

    /// See [`ObjectStore::corrupt`].
    pub fn corrupt(&self, name: &str, downloads: u32) {
        self.store.corrupt(name, downloads);
    }

    /// Answers `path` (after `/okx-archive/`); `head` for a `HEAD`.
    pub fn handle(
        &self,
        path: &str,
        head: bool,
        data: &Data,
        now: i64,
        missing_days: &[String],
    ) -> ArchiveAnswer {
        let Some((inst_id, date)) = parse(path) else {
            return self.store.not_found();
        };
        let Some((start, end)) = file_span(date) else {
            return self.store.not_found();
        };
        let published =
            end <= now && end > data.listed_at && !missing_days.iter().any(|d| d.trim() == date);
        if !published {
            return self.store.not_found();
        }
        self.store.serve(path, head, |replaced| {
            let trades = crate::okx::trades(data, inst_id, start, end)?;
            let mut csv = String::with_capacity(trades.len() * 64 + 64);
            let source = start + UTC_OFFSET_MS >= SOURCE_COLUMN_FROM_MS;
            csv.push_str("instrument_name,trade_id,side,price,size,created_time");
            csv.push_str(if source { ",source\n" } else { "\n" });
            for t in &trades {
                csv.push_str(&format!(
                    "{inst_id},{},{},{},{},{}{}\n",
                    t.trade_id,
                    t.side,
                    t.px,
                    t.sz,
                    t.time,
                    if source { ",0" } else { "" }
                ));
            }
            // A replaced file holds the same rows packed otherwise.
            let method = if replaced {
                CompressionMethod::Stored
            } else {
                CompressionMethod::Deflated
            };
            let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let name = format!("{inst_id}-trades-{date}.csv");
            zip.start_file(
                name,
                SimpleFileOptions::default().compression_method(method),
            )
            .ok()?;
            zip.write_all(csv.as_bytes()).ok()?;
            Some(zip.finish().ok()?.into_inner())
        })
    }
}

/// `(instId, YYYY-MM-DD)` of a trade file's path, whose folder must name the same day.
fn parse(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("cdn/okex/traderecords/trades/daily/")?;
    let (folder, file) = rest.split_once('/')?;
    let stem = file.strip_suffix(".zip")?;
    let (inst_id, date) = stem.rsplit_once("-trades-")?;
    (folder.len() == 8 && folder == date.replace('-', "")).then_some((inst_id, date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_days_are_of_utc_plus_8() {
        assert_eq!(
            parse(
                "cdn/okex/traderecords/trades/daily/20240102/BTC-USDT-SWAP-trades-2024-01-02.zip"
            ),
            Some(("BTC-USDT-SWAP", "2024-01-02"))
        );
        assert_eq!(
            parse("cdn/okex/traderecords/trades/daily/20240103/BTC-USDT-trades-2024-01-02.zip"),
            None
        );
        // 2024-01-02 in UTC+8 starts at 2024-01-01 16:00 UTC.
        assert_eq!(
            file_span("2024-01-02"),
            Some((1_704_124_800_000, 1_704_211_200_000))
        );
    }
}
