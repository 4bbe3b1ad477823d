//! `ArchiveClient`: Binance's bulk archives on data.binance.vision (`ARCHIVE_URL`). It knows the
//! layout (daily and monthly zips per type and symbol, each with a sha256 `.CHECKSUM` beside it),
//! asks whether a file exists (a 404 is the archive's "not there, yet or ever"), downloads a file
//! to disk (resuming a cut download with a `Range` request), checks it against its checksum
//! before anything from it is published, and reads its CSV rows from the zip as a stream, so
//! memory stays flat whatever the file's size.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::bounds::{self, BodyError};
use crate::time_range::{TimeRange, DAY_MS};

/// Settings of the archive (`ARCHIVE_URL`, `ARCHIVE_DIR`, …).
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Base URL, e.g. `https://data.binance.vision`.
    pub url: String,
    /// Where downloads are kept until published (each file is deleted after use).
    pub dir: PathBuf,
    /// Timeout of a request without progress.
    pub timeout: Duration,
    /// Retries of a request after a server error or a dropped connection.
    pub max_retries: u32,
    /// Downloads of one file before a checksum mismatch counts as persistent.
    pub attempts: u32,
    /// Files on disk at a time for the whole job, however many symbols it loads
    /// (`ARCHIVE_CONCURRENCY`); checksum probes in flight are twice that.
    pub concurrency: usize,
}

/// Where the archive keeps one data type of one symbol, e.g. `klines/BTCUSDT/1m` with files
/// named `BTCUSDT-1m-<date>.zip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLayout {
    /// The market's root: `data/spot`, `data/futures/um` or `data/futures/cm`.
    pub market: &'static str,
    /// Directory under `daily/` and `monthly/`: `klines/BTCUSDT/1m`, `aggTrades/BTCUSDT`.
    pub dir: String,
    /// File name stem: `BTCUSDT-1m`, `BTCUSDT-aggTrades`.
    pub stem: String,
    /// Whether daily files exist (klines only up to `1d`).
    pub daily: bool,
    /// Whether monthly files exist (not for futures `metrics`, which are daily only).
    pub monthly: bool,
}

/// The period one archive file covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    Day(NaiveDate),
    /// The first day of the month.
    Month(NaiveDate),
}

impl Period {
    /// `[start, end)` of the period in epoch ms.
    pub fn span(self) -> TimeRange {
        let ms = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
                .timestamp_millis()
        };
        match self {
            Period::Day(d) => TimeRange {
                start_ms: ms(d),
                end_ms: ms(d) + DAY_MS,
            },
            Period::Month(first) => TimeRange {
                start_ms: ms(first),
                end_ms: ms(next_month(first)),
            },
        }
    }

    /// The day containing `t` (epoch ms).
    pub fn day_of(t: i64) -> Period {
        Period::Day(date_of(t))
    }

    /// The month containing `t`.
    pub fn month_of(t: i64) -> Period {
        let d = date_of(t);
        Period::Month(d.with_day(1).expect("day 1"))
    }
}

fn date_of(t: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(t)
        .unwrap_or_default()
        .date_naive()
}

fn next_month(first: NaiveDate) -> NaiveDate {
    let (y, m) = if first.month() == 12 {
        (first.year() + 1, 1)
    } else {
        (first.year(), first.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).expect("a valid month")
}

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    pub period: Period,
    /// `BTCUSDT-1m-2024-01-01.zip`.
    pub name: String,
    /// Path under the base URL: `data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip`.
    pub path: String,
}

impl ArchiveLayout {
    pub fn file(&self, period: Period) -> ArchiveFile {
        let (freq, date) = match period {
            Period::Day(d) => ("daily", d.format("%Y-%m-%d").to_string()),
            Period::Month(d) => ("monthly", d.format("%Y-%m").to_string()),
        };
        let name = format!("{}-{date}.zip", self.stem);
        ArchiveFile {
            path: format!("{}/{freq}/{}/{name}", self.market, self.dir),
            name,
            period,
        }
    }
}

impl ArchiveFile {
    /// The CSV inside the zip: the file name with `.csv` for `.zip`.
    pub fn csv_name(&self) -> String {
        format!("{}.csv", self.name.trim_end_matches(".zip"))
    }
}

/// Why the archive could not deliver a file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{name} is not in the archive (HTTP 404 at {url})")]
    NotFound { name: String, url: String },
    #[error("{name} does not match its CHECKSUM after {attempts} download(s): expected sha256 {expected}, got {got}")]
    ChecksumMismatch {
        name: String,
        attempts: u32,
        expected: String,
        got: String,
    },
    #[error("{name}.CHECKSUM is not in sha256sum format: {content:?}")]
    BadChecksumFile { name: String, content: String },
    #[error("{name}: {detail}")]
    Transfer { name: String, detail: String },
    #[error("{name}: the zip cannot be read: {detail}")]
    Unreadable { name: String, detail: String },
    #[error("{name}: cannot write the download to ARCHIVE_DIR: {detail}")]
    Disk { name: String, detail: String },
    #[error("the archive at ARCHIVE_URL {url} cannot be reached ({detail})")]
    Unreachable { url: String, detail: String },
    #[error("the job is stopping")]
    Cancelled,
}

impl ArchiveError {
    /// Whether the file should be read from REST instead (with `SOURCE=auto`): everything but a
    /// stop or a full disk.
    pub fn can_fall_back(&self) -> bool {
        !matches!(self, ArchiveError::Cancelled | ArchiveError::Disk { .. })
    }
}

/// Counters for telemetry, metrics and the summary.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub retries: AtomicU64,
    pub not_found: AtomicU64,
}

/// A downloaded file whose checksum matched; deleted when dropped, which frees its
/// [`FileSlot`].
pub struct VerifiedFile {
    pub file: ArchiveFile,
    temp: tempfile::NamedTempFile,
    pub bytes: u64,
    _slot: FileSlot,
}

/// The right to keep one file in `ARCHIVE_DIR`, from the start of its download until it is
/// deleted: the job's disk use is bounded by `ARCHIVE_CONCURRENCY` files whatever the number of
/// symbols.
pub struct FileSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

pub struct ArchiveClient {
    http: reqwest::Client,
    cfg: ArchiveConfig,
    pub stats: Arc<ArchiveStats>,
    cancel: CancellationToken,
    /// Set by the first probe that could not connect: the archive is not asked again by this
    /// job (clusters whose egress allows only the REST host are common, and each probe would
    /// otherwise be retried as a transient error before anything is published).
    unreachable: std::sync::OnceLock<String>,
    /// [`FileSlot`]s: `ARCHIVE_CONCURRENCY` for the whole job.
    files: Arc<tokio::sync::Semaphore>,
    /// Checksum probes in flight, for the whole job.
    probes: tokio::sync::Semaphore,
}

enum Fetch {
    Done,
    /// The connection ended early; what was written so far is kept for a `Range` request.
    Cut(String),
}

/// Checksum probes in flight for `concurrency` file slots: twice as many (a probe is one small
/// request), job-wide and per symbol's plan alike.
fn probes_for(concurrency: usize) -> usize {
    concurrency.max(1) * 2
}

impl ArchiveClient {
    pub fn new(cfg: ArchiveConfig, cancel: CancellationToken) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::tls::connector()?)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .read_timeout(cfg.timeout)
            .user_agent(concat!("loader-producer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for ARCHIVE_URL: {e}"))?;
        Ok(ArchiveClient {
            http,
            stats: Arc::new(ArchiveStats::default()),
            cancel,
            unreachable: std::sync::OnceLock::new(),
            files: Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1))),
            probes: tokio::sync::Semaphore::new(probes_for(cfg.concurrency)),
            cfg,
        })
    }

    /// Waits for a free [`FileSlot`] (in the order asked). A caller must hold no other slot
    /// while it waits, or two symbols could each wait for the other's.
    pub async fn file_slot(&self) -> Result<FileSlot, ArchiveError> {
        let files = self.files.clone();
        self.cancellable(async move {
            files
                .acquire_owned()
                .await
                .map(|p| FileSlot { _permit: p })
                .map_err(|_| ArchiveError::Cancelled)
        })
        .await
    }

    /// Checksum probes one symbol's plan keeps in flight (the job as a whole never has more).
    pub fn probes_at_once(&self) -> usize {
        probes_for(self.cfg.concurrency)
    }

    /// A [`FileSlot`] if one is free now and nobody is waiting for one: for downloading ahead,
    /// which must never keep a slot from a symbol's next file.
    pub fn try_file_slot(&self) -> Option<FileSlot> {
        self.files
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| FileSlot { _permit: p })
    }

    /// Why the archive cannot be reached, once a probe found that out.
    pub fn unreachable(&self) -> Option<ArchiveError> {
        self.unreachable
            .get()
            .map(|detail| ArchiveError::Unreachable {
                url: self.cfg.url.clone(),
                detail: detail.clone(),
            })
    }

    /// Records that the archive cannot be reached; says so once.
    fn mark_unreachable(&self, e: &reqwest::Error) -> ArchiveError {
        let detail =
            std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
        if self.unreachable.set(detail).is_ok() {
            tracing::warn!(
                archive_url = %self.cfg.url,
                error = %e,
                "the archive at ARCHIVE_URL cannot be reached: this job asks it nothing more \
                 (SOURCE=auto loads everything over REST; SOURCE=archive fails)"
            );
        }
        self.unreachable().expect("just set")
    }

    pub fn base_url(&self) -> &str {
        &self.cfg.url
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.cfg.url.trim_end_matches('/'))
    }

    async fn cancellable<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ArchiveError>>,
    ) -> Result<T, ArchiveError> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(ArchiveError::Cancelled),
            r = f => r,
        }
    }

    /// The file's sha256 from its `.CHECKSUM`, or `None` when the archive does not have it.
    pub async fn checksum(&self, file: &ArchiveFile) -> Result<Option<String>, ArchiveError> {
        self.cancellable(async {
            let _probe = self
                .probes
                .acquire()
                .await
                .map_err(|_| ArchiveError::Cancelled)?;
            self.checksum_inner(file).await
        })
        .await
    }

    async fn checksum_inner(&self, file: &ArchiveFile) -> Result<Option<String>, ArchiveError> {
        let url = self.url(&format!("{}.CHECKSUM", file.path));
        let mut failures = 0;
        loop {
            if let Some(e) = self.unreachable() {
                return Err(e);
            }
            let outcome = async {
                let resp = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(BodyError::Transport)?;
                let status = resp.status();
                let body = bounds::read_capped(resp, bounds::MAX_CHECKSUM_FILE).await?;
                Ok::<_, BodyError>((status, body))
            }
            .await;
            let err = match outcome {
                Ok((s, _))
                    if s == reqwest::StatusCode::NOT_FOUND
                        || s == reqwest::StatusCode::FORBIDDEN =>
                {
                    // S3 answers 403 instead of 404 where listing is not allowed.
                    self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
                Ok((s, body)) if s.is_success() => {
                    let text = String::from_utf8_lossy(&body);
                    return parse_checksum(&text).map(Some).ok_or_else(|| {
                        ArchiveError::BadChecksumFile {
                            name: file.name.clone(),
                            content: text.chars().take(120).collect(),
                        }
                    });
                }
                Ok((s, _)) => format!("HTTP {s} for {url}"),
                Err(e @ BodyError::TooLarge { .. }) => {
                    return Err(ArchiveError::BadChecksumFile {
                        name: file.name.clone(),
                        content: e.to_string(),
                    })
                }
                // Not a connection that failed, but one that never was: asking again would
                // only repeat the wait.
                Err(BodyError::Transport(e)) if e.is_connect() => {
                    return Err(self.mark_unreachable(&e))
                }
                Err(e) => format!("{e} ({url})"),
            };
            failures += 1;
            if failures > self.cfg.max_retries {
                return Err(ArchiveError::Transfer {
                    name: format!("{}.CHECKSUM", file.name),
                    detail: err,
                });
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff(failures)).await;
        }
    }

    /// Downloads `file` to `ARCHIVE_DIR` and checks it against `expected` (its CHECKSUM). A cut
    /// connection is resumed with a `Range` request; a mismatch is downloaded again, up to the
    /// configured attempts.
    pub async fn download(
        &self,
        slot: FileSlot,
        file: &ArchiveFile,
        expected: &str,
    ) -> Result<VerifiedFile, ArchiveError> {
        self.cancellable(self.download_inner(slot, file, expected))
            .await
    }

    async fn download_inner(
        &self,
        slot: FileSlot,
        file: &ArchiveFile,
        expected: &str,
    ) -> Result<VerifiedFile, ArchiveError> {
        let disk = |e: std::io::Error| ArchiveError::Disk {
            name: file.name.clone(),
            detail: format!("{} ({e})", self.cfg.dir.display()),
        };
        let url = self.url(&file.path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let temp = tempfile::Builder::new()
                .prefix("loader-archive-")
                .suffix(".zip")
                .tempfile_in(&self.cfg.dir)
                .map_err(disk)?;
            let mut spool = Spool::new(temp.as_file().try_clone().map_err(disk)?);
            let mut failures = 0;
            loop {
                match self.fetch(&url, file, &mut spool).await? {
                    Fetch::Done => break,
                    Fetch::Cut(why) => {
                        failures += 1;
                        if failures > self.cfg.max_retries {
                            return Err(ArchiveError::Transfer {
                                name: file.name.clone(),
                                detail: format!(
                                    "download kept failing (MAX_RETRIES={}): {why}",
                                    self.cfg.max_retries
                                ),
                            });
                        }
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(file = %file.name, bytes_so_far = spool.received, error = %why, "archive download cut; resuming");
                        tokio::time::sleep(backoff(failures)).await;
                    }
                }
            }
            let written = spool.received;
            let got = spool.finish().await.map_err(disk)?;
            if got.eq_ignore_ascii_case(expected) {
                self.stats.files.fetch_add(1, Ordering::Relaxed);
                return Ok(VerifiedFile {
                    file: file.clone(),
                    temp,
                    bytes: written,
                    _slot: slot,
                });
            }
            if attempt >= self.cfg.attempts {
                return Err(ArchiveError::ChecksumMismatch {
                    name: file.name.clone(),
                    attempts: attempt,
                    expected: expected.to_string(),
                    got,
                });
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(file = %file.name, expected, got, attempt, "archive file does not match its CHECKSUM; downloading it again");
        }
    }

    /// One request for the rest of the file (from what `out` received on), appended to `out`.
    async fn fetch(
        &self,
        url: &str,
        file: &ArchiveFile,
        out: &mut Spool,
    ) -> Result<Fetch, ArchiveError> {
        let disk = |e: std::io::Error| ArchiveError::Disk {
            name: file.name.clone(),
            detail: format!("{} ({e})", self.cfg.dir.display()),
        };
        let mut req = self.http.get(url);
        if out.received > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={}-", out.received));
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Fetch::Cut(e.to_string())),
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(ArchiveError::NotFound {
                name: file.name.clone(),
                url: url.to_string(),
            });
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Ok(Fetch::Cut(format!("HTTP {status}")));
        }
        if status == reqwest::StatusCode::OK && out.received > 0 {
            // The server ignored the Range: start over.
            out.restart().map_err(disk)?;
        } else if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            // The cut came after the last byte.
            return Ok(Fetch::Done);
        } else if !(status == reqwest::StatusCode::OK
            || status == reqwest::StatusCode::PARTIAL_CONTENT)
        {
            return Err(ArchiveError::Transfer {
                name: file.name.clone(),
                detail: format!("HTTP {status} for {url}"),
            });
        }
        let expected_len = resp.content_length().map(|n| n + out.received);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if out.received + chunk.len() as u64 > bounds::MAX_ARCHIVE_FILE {
                        return Err(ArchiveError::Transfer {
                            name: file.name.clone(),
                            detail: format!(
                                "larger than {} GiB, which no Binance archive file is ({url})",
                                bounds::MAX_ARCHIVE_FILE >> 30
                            ),
                        });
                    }
                    out.push(&chunk).await.map_err(disk)?;
                    self.stats
                        .bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Ok(None) => break,
                Err(e) => {
                    return Ok(Fetch::Cut(format!(
                        "connection dropped after {} bytes: {e}",
                        out.received
                    )))
                }
            }
        }
        match expected_len {
            Some(n) if out.received < n => Ok(Fetch::Cut(format!(
                "truncated: {} of {n} bytes",
                out.received
            ))),
            _ => Ok(Fetch::Done),
        }
    }
}

/// Parses `<sha256 hex>  <name>` (sha256sum format, with or without a trailing newline).
pub fn parse_checksum(text: &str) -> Option<String> {
    let hex = text.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// Bytes a [`Spool`] gathers before it writes and hashes them.
const SPOOL_BYTES: usize = 1 << 20;

/// A download on its way to disk: gathered on the runtime, then written and hashed on a
/// blocking thread a MiB at a time, so neither the disk nor sha256 holds up the runtime's
/// workers, and the file is never read back just to be checked.
struct Spool {
    /// `None` only while a blocking write has it.
    file: Option<File>,
    hasher: Option<Sha256>,
    buf: Vec<u8>,
    /// Bytes received so far (written or gathered): where a `Range` request resumes.
    received: u64,
}

/// A spool whose file or hasher is gone: a blocking write of it failed before.
fn earlier_write_failed() -> std::io::Error {
    std::io::Error::other("an earlier write of this download failed")
}

impl Spool {
    fn new(file: File) -> Spool {
        Spool {
            file: Some(file),
            hasher: Some(Sha256::new()),
            buf: Vec::with_capacity(SPOOL_BYTES),
            received: 0,
        }
    }

    async fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(chunk);
        self.received += chunk.len() as u64;
        if self.buf.len() >= SPOOL_BYTES {
            self.write_out().await?;
        }
        Ok(())
    }

    async fn write_out(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut file = self.file.take().ok_or_else(earlier_write_failed)?;
        let mut hasher = self.hasher.take().ok_or_else(earlier_write_failed)?;
        let buf = std::mem::take(&mut self.buf);
        let (file, hasher, mut buf, written) = tokio::task::spawn_blocking(move || {
            let written = file.write_all(&buf);
            hasher.update(&buf);
            (file, hasher, buf, written)
        })
        .await
        .map_err(std::io::Error::other)?;
        written?;
        buf.clear();
        (self.file, self.hasher, self.buf) = (Some(file), Some(hasher), buf);
        Ok(())
    }

    /// Forgets everything received (the server sent the whole file again).
    fn restart(&mut self) -> std::io::Result<()> {
        let file = self.file.as_mut().ok_or_else(earlier_write_failed)?;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        self.hasher = Some(Sha256::new());
        self.buf.clear();
        self.received = 0;
        Ok(())
    }

    /// Writes what is left; the sha256 of everything received, in hex.
    async fn finish(mut self) -> std::io::Result<String> {
        self.write_out().await?;
        let hasher = self.hasher.take().ok_or_else(earlier_write_failed)?;
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}

/// Retry delay: 200 ms doubling to 10 s, with jitter.
fn backoff(failures: u32) -> Duration {
    crate::backoff::jittered(
        Duration::from_millis(200),
        Duration::from_secs(10),
        failures,
    )
}

impl VerifiedFile {
    /// Streams the CSV rows of the zip to `on_row` (blocking; run it on a blocking thread).
    ///
    /// The zip should hold `<name>.csv`; some archive files hold a second copy of it (in a
    /// folder, or under another name): one CSV is read, the one named like the file when there
    /// is one, and the others are ignored with a warning. Returns the rows read.
    pub fn read_rows(
        &self,
        mut on_row: impl FnMut(&csv::StringRecord) -> crate::error::Result<bool>,
    ) -> Result<u64, ArchiveError> {
        let unreadable = |detail: String| ArchiveError::Unreadable {
            name: self.file.name.clone(),
            detail,
        };
        let f = self.temp.reopen().map_err(|e| unreadable(e.to_string()))?;
        let mut zip =
            zip::ZipArchive::new(BufReader::new(f)).map_err(|e| unreadable(e.to_string()))?;
        let wanted = self.file.csv_name();
        let csvs: Vec<String> = zip
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .filter(|n| n.to_ascii_lowercase().ends_with(".csv"))
            .collect();
        let chosen = csvs
            .iter()
            .find(|n| n.as_str() == wanted)
            .or_else(|| {
                csvs.iter()
                    .find(|n| n.rsplit('/').next() == Some(wanted.as_str()))
            })
            .or_else(|| csvs.first())
            .cloned()
            .ok_or_else(|| unreadable("it holds no CSV file".into()))?;
        if csvs.len() > 1 {
            tracing::warn!(file = %self.file.name, csv_files = ?csvs, reading = %chosen,
                "archive zip holds more than one CSV (a duplicate copy); reading one of them");
        }
        let entry = zip
            .by_name(&chosen)
            .map_err(|e| unreadable(e.to_string()))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(bounds::LineBounded::new(entry, bounds::MAX_CSV_LINE));
        // One UTF-8 check per row (a `StringRecord`), not one per field.
        let mut row = csv::StringRecord::new();
        let mut rows = 0u64;
        loop {
            match reader.read_record(&mut row) {
                Ok(false) => break,
                Ok(true) => {
                    rows += 1;
                    match on_row(&row) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => return Err(unreadable(format!("row {rows}: {e}"))),
                    }
                }
                Err(e) => return Err(unreadable(format!("row {}: {e}", rows + 1))),
            }
        }
        Ok(rows)
    }
}

/// Field helpers for archive CSV rows.
pub mod fields {
    /// Spot archive times are in microseconds from 2025-01-01 (milliseconds before, and in
    /// futures files): a time this large cannot be milliseconds (it would be past year 5000).
    const MICROS_THRESHOLD: i64 = 100_000_000_000_000;

    pub fn text<'a>(row: &'a csv::StringRecord, i: usize, what: &str) -> Result<&'a str, String> {
        row.get(i)
            .ok_or_else(|| format!("column {} ({what}) is missing", i + 1))
    }

    pub fn int(row: &csv::StringRecord, i: usize, what: &str) -> Result<i64, String> {
        let t = text(row, i, what)?;
        t.trim()
            .parse()
            .map_err(|_| format!("column {} ({what}) is not an integer: {t:?}", i + 1))
    }

    pub fn uint(row: &csv::StringRecord, i: usize, what: &str) -> Result<u64, String> {
        let t = text(row, i, what)?;
        t.trim()
            .parse()
            .map_err(|_| format!("column {} ({what}) is not an id: {t:?}", i + 1))
    }

    /// A time column in milliseconds, whether the file has ms or µs.
    pub fn time_ms(row: &csv::StringRecord, i: usize, what: &str) -> Result<i64, String> {
        let t = int(row, i, what)?;
        Ok(if t >= MICROS_THRESHOLD {
            t.div_euclid(1000)
        } else {
            t
        })
    }

    /// `True`/`False` (Binance's files) or `true`/`false`.
    pub fn boolean(row: &csv::StringRecord, i: usize, what: &str) -> Result<bool, String> {
        let t = text(row, i, what)?;
        if t.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if t.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(format!(
                "column {} ({what}) is not True/False: {t:?}",
                i + 1
            ))
        }
    }

    /// A flag column some files lack (futures trades have no best-match column, as their REST
    /// rows have no `M`): `None` when absent, so both sources give the same record.
    pub fn optional_boolean(
        row: &csv::StringRecord,
        i: usize,
        what: &str,
    ) -> Result<Option<bool>, String> {
        match row.get(i) {
            Some(t) if !t.is_empty() => boolean(row, i, what).map(Some),
            _ => Ok(None),
        }
    }

    /// A header row (futures files have one since 2022): its first field is not a number.
    pub fn is_header(row: &csv::StringRecord) -> bool {
        row.get(0)
            .is_some_and(|f| !f.is_empty() && !f.bytes().all(|b| b.is_ascii_digit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_daily_and_monthly_files() {
        let l = ArchiveLayout {
            market: "data/spot",
            dir: "klines/BTCUSDT/1mo".into(),
            stem: "BTCUSDT-1mo".into(),
            daily: false,
            monthly: true,
        };
        let d = NaiveDate::from_ymd_opt(2024, 12, 1).unwrap();
        let f = l.file(Period::Month(d));
        assert_eq!(
            f.path,
            "data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-12.zip"
        );
        assert_eq!(f.csv_name(), "BTCUSDT-1mo-2024-12.csv");
        let span = Period::Month(d).span();
        assert_eq!(
            (span.start_ms, span.end_ms),
            (1_733_011_200_000, 1_735_689_600_000)
        );
        let day = l.file(Period::day_of(1_735_689_600_000));
        assert_eq!(
            day.path,
            "data/spot/daily/klines/BTCUSDT/1mo/BTCUSDT-1mo-2025-01-01.zip"
        );
        assert_eq!(Period::month_of(1_735_689_600_000 - 1), Period::Month(d));
    }

    #[test]
    fn checksums_parse_with_or_without_newline() {
        let h = "a".repeat(64);
        assert_eq!(parse_checksum(&format!("{h}  X.zip")), Some(h.clone()));
        assert_eq!(
            parse_checksum(&format!("{}  X.zip\n", h.to_uppercase())),
            Some(h)
        );
        assert_eq!(parse_checksum("nope  X.zip"), None);
        assert_eq!(parse_checksum(""), None);
    }

    #[test]
    fn fields_read_binance_csv() {
        let row =
            csv::StringRecord::from(vec!["1735689600000000", "True", "x", "1735689659999999"]);
        assert_eq!(fields::time_ms(&row, 0, "t").unwrap(), 1_735_689_600_000);
        assert_eq!(fields::time_ms(&row, 3, "t").unwrap(), 1_735_689_659_999);
        assert!(fields::boolean(&row, 1, "b").unwrap());
        assert!(fields::int(&row, 2, "x").unwrap_err().contains("column 3"));
        assert!(fields::is_header(&csv::StringRecord::from(vec![
            "open_time",
            "open"
        ])));
        assert!(!fields::is_header(&row));
    }
}
