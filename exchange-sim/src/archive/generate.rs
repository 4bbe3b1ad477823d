//! Writing one archive file: the CSV rows of a day or month (the same records and decimal
//! strings as the REST endpoints, times in ms or µs; futures files with their own columns,
//! header rows and lower-case booleans), streamed into a deflate zip on disk, and the SHA-256
//! of the finished zip. Runs on a blocking thread; memory use stays small whatever the file's
//! size.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::layout::{date_of, FileKey, Kind};
use crate::data::{self, split_raw, Data};
use crate::fmt::{push_fixed8, push_fixed8_wide, push_i64, push_u64};
use crate::futures::{self, METRICS_PERIOD_MS};
use crate::market::SimMarket;

/// Header rows, named like Binance's futures files (spot files get them from the `header`
/// fault, with a best-match column).
const KLINES_HEADER: &str = "open_time,open,high,low,close,volume,close_time,quote_volume,count,\
                             taker_buy_volume,taker_buy_quote_volume,ignore\n";
const AGG_TRADES_HEADER: &str = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,\
                                 transact_time,is_buyer_maker,is_best_match\n";
const TRADES_HEADER: &str = "id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\n";
/// COIN-M klines: volumes in contracts, then the base-asset volumes.
const CM_KLINES_HEADER: &str = "open_time,open,high,low,close,volume,close_time,base_volume,count,\
                                taker_buy_volume,taker_buy_base_volume,ignore\n";
const FUTURES_AGG_TRADES_HEADER: &str = "agg_trade_id,price,quantity,first_trade_id,\
                                         last_trade_id,transact_time,is_buyer_maker\n";
const UM_TRADES_HEADER: &str = "id,price,qty,quote_qty,time,is_buyer_maker\n";
const CM_TRADES_HEADER: &str = "id,price,qty,base_qty,time,is_buyer_maker\n";
const METRICS_HEADER: &str = "create_time,symbol,sum_open_interest,sum_open_interest_value,\
                              count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,\
                              count_long_short_ratio,sum_taker_long_short_vol_ratio\n";

/// With the `duplicate_rows` fault, every this many rows one is written twice.
const DUPLICATE_EVERY: u64 = 1000;
/// Deflate level: the fastest, since generation speed matters more than size.
const LEVEL: i64 = 1;
/// CSV text is handed to the zip writer in pieces of about this size.
const FLUSH_AT: usize = 1 << 16;

/// The content-changing faults of one file: each combination is a separately cached file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Variant {
    pub header: bool,
    pub duplicate_rows: bool,
    pub missing_rows: bool,
    pub nested_copy: bool,
}

/// A zip written to disk.
#[derive(Debug)]
pub(crate) struct Generated {
    pub path: PathBuf,
    pub len: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// Writes the zip of `key` to `path` and hashes it. `data` supplies the trade settings;
/// klines depend on the symbol and the listing time only. Setting `cancel` makes it give up
/// soon (the server is stopping); a failed or cancelled file is removed.
pub(crate) fn generate(
    key: &FileKey,
    data: &Data,
    variant: Variant,
    path: &Path,
    cancel: &AtomicBool,
) -> io::Result<Generated> {
    let result = write_zip(key, data, variant, path, cancel).and_then(|()| hash_file(path));
    match result {
        Ok((len, sha256)) => Ok(Generated {
            path: path.to_path_buf(),
            len,
            sha256,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

fn write_zip(
    key: &FileKey,
    data: &Data,
    variant: Variant,
    path: &Path,
    cancel: &AtomicBool,
) -> io::Result<()> {
    let file = File::create(path)?;
    let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 16, file));
    // Entries carry the publication date (the span's end), so the bytes, and so the hash, do
    // not depend on when the file was generated.
    let (_, end) = key.span();
    let (y, m, d) = date_of(end);
    let modified = u16::try_from(y)
        .ok()
        .and_then(|y| zip::DateTime::from_date_and_time(y, m as u8, d as u8, 0, 0, 0).ok())
        .unwrap_or_default();
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(LEVEL))
        .last_modified_time(modified)
        .unix_permissions(0o644)
        // Zip64 only when the CSV could pass 4 GiB, so ordinary files look like Binance's.
        .large_file(estimated_csv_bytes(key, data) > u64::from(u32::MAX) / 2);
    let stem = key.stem();
    let mut names = vec![format!("{stem}.csv")];
    if variant.nested_copy {
        names.push(format!("{stem}/{stem}.csv"));
    }
    for name in names {
        zip.start_file(name, options).map_err(io::Error::other)?;
        write_csv(&mut zip, key, data, variant, cancel)?;
    }
    // No sync: the cache is temporary and readers go through the page cache.
    zip.finish().map_err(io::Error::other)?.flush()
}

/// A generous guess of the CSV's size, to decide whether the zip needs Zip64.
fn estimated_csv_bytes(key: &FileKey, data: &Data) -> u64 {
    let (start, end) = key.span();
    let span = (end - start).max(0) as u64;
    let spacing = data.spacing.max(1) as u64;
    match key.kind {
        Kind::Klines(iv) | Kind::PriceKlines(_, iv) => {
            (span / iv.nominal_ms().max(1) as u64 + 1) * 300
        }
        Kind::AggTrades => (span / spacing + 1) * 150,
        Kind::Trades => (span / spacing + 1) * 4 * 150,
        Kind::Metrics => (span / METRICS_PERIOD_MS as u64 + 1) * 200,
    }
}

/// Collects CSV rows and hands them to the writer in large pieces; repeats rows for the
/// `duplicate_rows` fault.
struct Rows<'w, W: Write> {
    out: &'w mut W,
    buf: String,
    row: String,
    count: u64,
    duplicate: bool,
    last_doubled: bool,
    micros: bool,
    /// Futures files write booleans in lower case.
    lower_bools: bool,
    cancel: &'w AtomicBool,
}

impl<W: Write> Rows<'_, W> {
    /// Appends the row built in `self.row` (without its newline).
    fn emit(&mut self) -> io::Result<()> {
        self.row.push('\n');
        self.buf.push_str(&self.row);
        self.count += 1;
        self.last_doubled = self.duplicate && self.count % DUPLICATE_EVERY == 0;
        if self.last_doubled {
            self.buf.push_str(&self.row);
        }
        if self.buf.len() >= FLUSH_AT {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(io::Error::other("archive generation cancelled"));
            }
            self.out.write_all(self.buf.as_bytes())?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        if self.duplicate && self.count > 0 && !self.last_doubled {
            self.buf.push_str(&self.row);
        }
        self.out.write_all(self.buf.as_bytes())
    }

    /// A time column: ms as is, or µs.
    fn time(&mut self, t_ms: i64) {
        push_i64(
            &mut self.row,
            if self.micros {
                t_ms.saturating_mul(1000)
            } else {
                t_ms
            },
        );
    }

    /// A kline close time: the next open time minus one unit (1 ms or 1 µs).
    fn close_time(&mut self, close_ms: i64) {
        push_i64(
            &mut self.row,
            if self.micros {
                close_ms.saturating_add(1).saturating_mul(1000) - 1
            } else {
                close_ms
            },
        );
    }

    fn boolean(&mut self, v: bool) {
        self.row.push_str(match (v, self.lower_bools) {
            (true, false) => "True",
            (false, false) => "False",
            (true, true) => "true",
            (false, true) => "false",
        });
    }
}

fn write_csv<W: Write>(
    out: &mut W,
    key: &FileKey,
    data: &Data,
    variant: Variant,
    cancel: &AtomicBool,
) -> io::Result<()> {
    let mut rows = Rows {
        out,
        buf: String::with_capacity(FLUSH_AT + 1024),
        row: String::with_capacity(256),
        count: 0,
        duplicate: variant.duplicate_rows,
        last_doubled: false,
        micros: key.micros(),
        lower_bools: key.market.is_futures(),
        cancel,
    };
    let futures = key.market.is_futures();
    let coinm = key.market == SimMarket::CoinM;
    if variant.header || key.native_header() {
        rows.buf.push_str(match key.kind {
            Kind::Klines(_) | Kind::PriceKlines(..) if coinm => CM_KLINES_HEADER,
            Kind::Klines(_) | Kind::PriceKlines(..) => KLINES_HEADER,
            Kind::AggTrades if futures => FUTURES_AGG_TRADES_HEADER,
            Kind::AggTrades => AGG_TRADES_HEADER,
            Kind::Trades if coinm => CM_TRADES_HEADER,
            Kind::Trades if futures => UM_TRADES_HEADER,
            Kind::Trades => TRADES_HEADER,
            Kind::Metrics => METRICS_HEADER,
        });
    }
    let (start, end) = key.span();
    // The `missing_rows` fault: rows at these times are left out.
    let hole = if variant.missing_rows {
        let from = start + (end - start) / 2;
        from..from + (end - start) / 10
    } else {
        0..0
    };
    // COIN-M index files are keyed by pair: their data is the perpetual's.
    let m = futures::market_of(key.market, &key.symbol);
    // Futures rows have no best-match column.
    let best_match = if futures { "" } else { ",True" };
    match key.kind {
        Kind::PriceKlines(series, iv) => {
            let mut t = iv.align_up(start.max(data.listed_at));
            while t < end {
                if hole.contains(&t) {
                    t = iv.next_open(t);
                    continue;
                }
                let k = futures::price_kline(&m, series, iv, t, i64::MAX);
                let r = &mut rows;
                r.row.clear();
                push_i64(&mut r.row, k.open_time);
                for v in [k.open, k.high, k.low, k.close] {
                    r.row.push(',');
                    push_fixed8(&mut r.row, v);
                }
                r.row.push_str(",0,");
                push_i64(&mut r.row, k.close_time);
                r.row.push_str(",0,0,0,0,0");
                r.emit()?;
                t = iv.next_open(t);
            }
        }
        Kind::Metrics => {
            let first = data.listed_at.max(start);
            let mut t = first
                + (METRICS_PERIOD_MS - first.rem_euclid(METRICS_PERIOD_MS)) % METRICS_PERIOD_MS;
            while t < end {
                if hole.contains(&t) {
                    t += METRICS_PERIOD_MS;
                    continue;
                }
                let (oi, value) = futures::open_interest_units(&m, t);
                let ratios = futures::long_short_ratios(key.market, &key.symbol, t);
                let r = &mut rows;
                r.row.clear();
                push_datetime(&mut r.row, t);
                r.row.push(',');
                r.row.push_str(&key.symbol);
                r.row.push(',');
                push_fixed8(&mut r.row, oi);
                r.row.push(',');
                push_fixed8(&mut r.row, value);
                for v in [
                    &ratios.top_account.long_short_ratio,
                    &ratios.top_position.long_short_ratio,
                    &ratios.global_account.long_short_ratio,
                    &ratios.taker_buy_sell,
                ] {
                    r.row.push(',');
                    r.row.push_str(v);
                }
                r.emit()?;
                t += METRICS_PERIOD_MS;
            }
        }
        Kind::Klines(iv) => {
            let mut t = iv.align_up(start.max(data.listed_at));
            while t < end {
                if hole.contains(&t) {
                    t = iv.next_open(t);
                    continue;
                }
                // Archived candles are final: the file is published after the span.
                let k = data::kline_units(&m, data, iv, t, i64::MAX);
                let r = &mut rows;
                r.row.clear();
                r.time(k.open_time);
                r.row.push(',');
                push_fixed8(&mut r.row, k.open);
                r.row.push(',');
                push_fixed8(&mut r.row, k.high);
                r.row.push(',');
                push_fixed8(&mut r.row, k.low);
                r.row.push(',');
                push_fixed8(&mut r.row, k.close);
                r.row.push(',');
                push_fixed8_wide(&mut r.row, k.volume);
                r.row.push(',');
                r.close_time(k.close_time);
                r.row.push(',');
                push_fixed8_wide(&mut r.row, k.quote_volume);
                r.row.push(',');
                push_u64(&mut r.row, k.trades);
                r.row.push(',');
                push_fixed8_wide(&mut r.row, k.taker_buy_base);
                r.row.push(',');
                push_fixed8_wide(&mut r.row, k.taker_buy_quote);
                r.row.push_str(",0");
                r.emit()?;
                t = iv.next_open(t);
            }
        }
        Kind::AggTrades | Kind::Trades => {
            if let Some((first, last)) = data.agg_id_span(&m, start, end) {
                let mut id = first;
                while let Some(next) = data.next_existing(id).filter(|&n| n <= last) {
                    let a = data.agg_units(&m, next);
                    if hole.contains(&a.time) {
                        id = next + 1;
                        continue;
                    }
                    let r = &mut rows;
                    if key.kind == Kind::AggTrades {
                        r.row.clear();
                        push_u64(&mut r.row, a.id);
                        r.row.push(',');
                        push_fixed8(&mut r.row, a.price);
                        r.row.push(',');
                        push_fixed8(&mut r.row, a.qty);
                        r.row.push(',');
                        push_u64(&mut r.row, a.first);
                        r.row.push(',');
                        push_u64(&mut r.row, a.last);
                        r.row.push(',');
                        r.time(a.time);
                        r.row.push(',');
                        r.boolean(a.buyer_maker);
                        r.row.push_str(best_match);
                        r.emit()?;
                    } else {
                        for raw in a.first..=a.last {
                            let t = split_raw(&m, &a, raw);
                            r.row.clear();
                            push_u64(&mut r.row, t.id);
                            r.row.push(',');
                            push_fixed8(&mut r.row, t.price);
                            r.row.push(',');
                            push_fixed8(&mut r.row, t.qty);
                            r.row.push(',');
                            push_fixed8(&mut r.row, t.quote_qty);
                            r.row.push(',');
                            r.time(t.time);
                            r.row.push(',');
                            r.boolean(t.buyer_maker);
                            r.row.push_str(best_match);
                            r.emit()?;
                        }
                    }
                    id = next + 1;
                }
            }
        }
    }
    rows.finish()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a time in ms, the `create_time` of `metrics` rows.
fn push_datetime(s: &mut String, t_ms: i64) {
    use std::fmt::Write;
    let (y, m, d) = date_of(t_ms);
    let secs = t_ms.rem_euclid(86_400_000) / 1000;
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// The length and lowercase-hex SHA-256 of a file.
fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hex(&hasher.finalize())))
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The SHA-256 of some bytes in lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::layout::parse_path;

    fn csv_of(path: &str, data: &Data, variant: Variant) -> String {
        let (key, _) = parse_path(path).unwrap();
        let mut out = Vec::new();
        write_csv(&mut out, &key, data, variant, &AtomicBool::new(false)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn duplicate_rows_repeat_every_thousandth_and_the_last() {
        let data = Data::new(60_000, data::DEFAULT_LISTED_AT_MS, vec![]);
        let path = "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip";
        let clean = csv_of(path, &data, Variant::default());
        let dup = csv_of(
            path,
            &data,
            Variant {
                duplicate_rows: true,
                ..Variant::default()
            },
        );
        let clean: Vec<&str> = clean.lines().collect();
        let dup: Vec<&str> = dup.lines().collect();
        assert_eq!(clean.len(), 1440);
        assert_eq!(dup.len(), 1442);
        assert_eq!(dup[999], dup[1000]);
        assert_eq!(dup[1000], clean[999]);
        assert_eq!(dup[1440], dup[1441]);
        let mut dedup = dup.clone();
        dedup.dedup();
        assert_eq!(dedup, clean);
    }

    #[test]
    fn missing_rows_leave_out_a_tenth_of_the_span_from_its_middle() {
        let data = Data::new(60_000, data::DEFAULT_LISTED_AT_MS, vec![]);
        let short = Variant {
            missing_rows: true,
            ..Variant::default()
        };
        let path = "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip";
        let clean = csv_of(path, &data, Variant::default());
        let holed = csv_of(path, &data, short);
        let clean: Vec<&str> = clean.lines().collect();
        let holed: Vec<&str> = holed.lines().collect();
        // 144 of 1440 minutes, from 12:00 on.
        assert_eq!(holed.len(), 1440 - 144);
        assert_eq!(holed[..720], clean[..720]);
        assert_eq!(holed[720..], clean[864..]);
        // Trades: the aggregate trades of the stretch are missing, so their ids are.
        let path = "/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.zip";
        let ids = |csv: &str| -> Vec<u64> {
            csv.lines()
                .map(|l| l.split(',').next().unwrap().parse().unwrap())
                .collect()
        };
        let clean = ids(&csv_of(path, &data, Variant::default()));
        let holed = ids(&csv_of(path, &data, short));
        assert_eq!(holed.len(), clean.len() - 144);
        assert_eq!(holed.windows(2).filter(|w| w[1] != w[0] + 1).count(), 1);
    }

    #[test]
    fn header_rows_and_trade_columns() {
        let data = Data::new(60_000, data::DEFAULT_LISTED_AT_MS, vec![]);
        let variant = Variant {
            header: true,
            ..Variant::default()
        };
        let csv = csv_of(
            "/data/spot/daily/trades/ETHUSDT/ETHUSDT-trades-2024-03-05.zip",
            &data,
            variant,
        );
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(TRADES_HEADER.trim_end()));
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(row.len(), 7);
        assert!(row[5] == "True" || row[5] == "False");
        assert_eq!(row[6], "True");
        assert_eq!(hex(&[0, 0xab, 0x7f]), "00ab7f");
    }
}
