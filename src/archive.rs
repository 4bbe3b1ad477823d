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
use md5::Digest;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::bounds::{self, BodyError};
use crate::time_range::{TimeRange, DAY_MS};

/// Settings of the archive (`ARCHIVE_URL`, `ARCHIVE_DIR`, …).
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Base URL, e.g. `https://data.binance.vision`.
    pub url: String,
    /// The variable that set it (`ARCHIVE_URL`, or the venue's), for messages.
    pub url_var: &'static str,
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

/// Where and how a venue's archive keeps one data type of one symbol: the path of each daily and
/// monthly file, their format, how a download is checked, and the order of their rows. The
/// venue's history type builds it (`History::archive_layout`); this module knows no venue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLayout {
    /// A day's file under the base URL, as a `chrono` format of the day (e.g.
    /// `data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-%Y-%m-%d.zip`); `None`: no daily files.
    pub daily: Option<String>,
    /// A month's file, formatted with the month's first day; `None`: no monthly files.
    pub monthly: Option<String>,
    pub format: FileFormat,
    pub integrity: Integrity,
    pub order: RowOrder,
    /// When the venue publishes its files, for the error about one that is not there.
    pub schedule: &'static str,
    /// The archive's calendar is UTC plus this: a file named for day D holds `[D 00:00,
    /// D+1 00:00)` of that calendar (OKX dates its files in UTC+8, so 8 hours: its file of
    /// 2024-01-02 starts at 2024-01-01 16:00 UTC). 0 for archives dated in UTC.
    pub utc_offset_ms: i64,
}

/// How one archive file is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// A zip holding `<name>.csv` (data.binance.vision).
    ZippedCsv,
    /// A gzip stream of one CSV (`.csv.gz`), possibly of several gzip members.
    GzippedCsv,
}

/// How a download is checked before any of its rows is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// A sha256 in `sha256sum` format at `<file>.CHECKSUM`; a 404 for it means no file.
    ChecksumFile,
    /// No checksum is published: what a `HEAD` of the file answers (its size, and its ETag
    /// where that is an md5, as object stores give for a file uploaded whole; a 404 means no
    /// file), and the compression's own check: for gzip the CRC-32 and length of every member,
    /// for a zip the CRC-32 of its CSV; read to the end before any row is handed on where no md5
    /// was given, else as the rows are read.
    HeadAndCrc,
}

/// The order of a file's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// Oldest first, as written.
    Ascending,
    /// Oldest or newest first (a venue's older files are newest first): the rows are read
    /// oldest first, by the time in this column (0-based) of the first and the last row,
    /// whichever way the file has them. A row out of that order is the row reader's to refuse
    /// (`Cursor::rank` finds it).
    EitherByTime { column: usize },
}

/// What a download must match, as the archive said when asked about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The sha256 of its `.CHECKSUM`.
    Sha256(String),
    /// The size a `HEAD` answered, and the md5 when the ETag is one.
    Head {
        size: Option<u64>,
        md5: Option<String>,
    },
}

impl Expected {
    /// What the file is checked against, for messages.
    fn source(&self) -> &'static str {
        match self {
            Expected::Sha256(_) => "its CHECKSUM",
            Expected::Head { .. } => "the size and ETag the archive gives",
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Sha256(h) => write!(f, "sha256 {h}"),
            Expected::Head { size, md5 } => {
                match size {
                    Some(n) => write!(f, "{n} bytes")?,
                    None => f.write_str("any size")?,
                }
                match md5 {
                    Some(m) => write!(f, ", md5 {m}"),
                    None => Ok(()),
                }
            }
        }
    }
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
    /// `BTCUSDT-1m-2024-01-01.zip`: the last part of the path.
    pub name: String,
    /// Path under the base URL: `data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip`.
    pub path: String,
    pub format: FileFormat,
    pub integrity: Integrity,
    pub order: RowOrder,
}

impl ArchiveLayout {
    /// The file of `period`. Only periods the layout has files for are asked about (the
    /// planner cuts by [`has_daily`](Self::has_daily) and [`has_monthly`](Self::has_monthly)).
    pub fn file(&self, period: Period) -> ArchiveFile {
        let (template, date) = match period {
            Period::Day(d) => (&self.daily, d),
            Period::Month(d) => (&self.monthly, d),
        };
        let path = date
            .format(template.as_deref().unwrap_or_default())
            .to_string();
        ArchiveFile {
            name: path.rsplit('/').next().unwrap_or_default().to_string(),
            path,
            period,
            format: self.format,
            integrity: self.integrity,
            order: self.order,
        }
    }

    pub fn has_daily(&self) -> bool {
        self.daily.is_some()
    }

    /// The day of the archive's calendar that holds `t`.
    pub fn day_of(&self, t: i64) -> Period {
        Period::day_of(t + self.utc_offset_ms)
    }

    /// The month of the archive's calendar that holds `t`.
    pub fn month_of(&self, t: i64) -> Period {
        Period::month_of(t + self.utc_offset_ms)
    }

    /// `[start, end)` of `period` of the archive's calendar, in epoch ms.
    pub fn span(&self, period: Period) -> TimeRange {
        let s = period.span();
        TimeRange {
            start_ms: s.start_ms - self.utc_offset_ms,
            end_ms: s.end_ms - self.utc_offset_ms,
        }
    }

    pub fn has_monthly(&self) -> bool {
        self.monthly.is_some()
    }
}

impl ArchiveFile {
    /// The CSV inside a zip: the file name with `.csv` for `.zip`.
    pub fn csv_name(&self) -> String {
        format!("{}.csv", self.name.trim_end_matches(".zip"))
    }
}

/// Why the archive could not deliver a file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{name} is not in the archive (HTTP 404 at {url})")]
    NotFound { name: String, url: String },
    #[error("{name} does not match {against} after {attempts} download(s): expected {expected}, got {got}")]
    ChecksumMismatch {
        name: String,
        attempts: u32,
        against: &'static str,
        expected: String,
        got: String,
    },
    #[error("{name}.CHECKSUM is not in sha256sum format: {content:?}")]
    BadChecksumFile { name: String, content: String },
    #[error("{name}: {detail}")]
    Transfer { name: String, detail: String },
    #[error("{name}: the file cannot be read: {detail}")]
    Unreadable { name: String, detail: String },
    #[error("{name}: cannot write the download to ARCHIVE_DIR: {detail}")]
    Disk { name: String, detail: String },
    #[error("the archive at {var} {url} cannot be reached ({detail})")]
    Unreachable {
        var: &'static str,
        url: String,
        detail: String,
    },
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
    /// Whether a hash of the whole file (sha256, md5) matched, not its size alone.
    hashed: bool,
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
            .map_err(|e| format!("cannot build the HTTP client for {}: {e}", cfg.url_var))?;
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
                var: self.cfg.url_var,
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
                url_var = self.cfg.url_var,
                "the archive cannot be reached: this job asks it nothing more \
                 (SOURCE=auto loads everything over REST; SOURCE=archive fails)"
            );
        }
        self.unreachable().expect("just set")
    }

    pub fn base_url(&self) -> &str {
        &self.cfg.url
    }

    /// The variable that set the base URL.
    pub fn url_var(&self) -> &'static str {
        self.cfg.url_var
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

    /// What a download of `file` must match (its sha256 from its `.CHECKSUM`, or its size and
    /// ETag from a `HEAD`), or `None` when the archive does not have the file.
    pub async fn expected(&self, file: &ArchiveFile) -> Result<Option<Expected>, ArchiveError> {
        self.cancellable(async {
            let _probe = self
                .probes
                .acquire()
                .await
                .map_err(|_| ArchiveError::Cancelled)?;
            match file.integrity {
                Integrity::ChecksumFile => {
                    Ok(self.checksum_inner(file).await?.map(Expected::Sha256))
                }
                Integrity::HeadAndCrc => self.head(file).await,
            }
        })
        .await
    }

    /// A `HEAD` of the file: `None` for a 404 (or 403, as object stores answer where listing is
    /// not allowed), else its size and its ETag when that is an md5.
    async fn head(&self, file: &ArchiveFile) -> Result<Option<Expected>, ArchiveError> {
        let url = self.url(&file.path);
        let mut failures = 0;
        loop {
            if let Some(e) = self.unreachable() {
                return Err(e);
            }
            let err = match self.http.head(&url).send().await {
                Ok(r)
                    if r.status() == reqwest::StatusCode::NOT_FOUND
                        || r.status() == reqwest::StatusCode::FORBIDDEN =>
                {
                    self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
                Ok(r) if r.status().is_success() => {
                    let header = |name: reqwest::header::HeaderName| {
                        r.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let size = header(reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
                    let md5 = header(reqwest::header::ETAG).and_then(|e| md5_of_etag(&e));
                    return Ok(Some(Expected::Head { size, md5 }));
                }
                Ok(r) => format!("HTTP {} for HEAD {url}", r.status()),
                Err(e) if e.is_connect() => return Err(self.mark_unreachable(&e)),
                Err(e) => format!("{e} (HEAD {url})"),
            };
            failures += 1;
            if failures > self.cfg.max_retries {
                return Err(ArchiveError::Transfer {
                    name: file.name.clone(),
                    detail: err,
                });
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff(failures)).await;
        }
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

    /// Downloads `file` to `ARCHIVE_DIR` and checks it against `expected` (its CHECKSUM, or
    /// the size and md5 ETag the archive gave). A cut connection is resumed with a `Range`
    /// request; a mismatch is downloaded again, up to the configured attempts.
    pub async fn download(
        &self,
        slot: FileSlot,
        file: &ArchiveFile,
        expected: &Expected,
    ) -> Result<VerifiedFile, ArchiveError> {
        self.cancellable(self.download_inner(slot, file, expected))
            .await
    }

    async fn download_inner(
        &self,
        slot: FileSlot,
        file: &ArchiveFile,
        expected: &Expected,
    ) -> Result<VerifiedFile, ArchiveError> {
        let mut expected = expected.clone();
        // A file probed when the plan was made may have been re-published since: on a
        // mismatch, what the archive says of it now is asked once.
        let mut asked_again = false;
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
                .tempfile_in(&self.cfg.dir)
                .map_err(disk)?;
            let mut spool = Spool::new(temp.as_file().try_clone().map_err(disk)?, &expected);
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
            let hex = spool.finish().await.map_err(disk)?;
            let size_ok = |size: &Option<u64>| size.is_none_or(|n| n == written);
            let (matches, got) = match (&expected, &hex) {
                (Expected::Sha256(want), Some(hex)) => {
                    (want.eq_ignore_ascii_case(hex), format!("sha256 {hex}"))
                }
                (Expected::Head { size, md5 }, hex) => (
                    size_ok(size)
                        && md5.as_ref().is_none_or(|m| {
                            hex.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(m))
                        }),
                    match hex {
                        Some(h) => format!("{written} bytes, md5 {h}"),
                        None => format!("{written} bytes"),
                    },
                ),
                (Expected::Sha256(_), None) => (false, "no sha256".into()),
            };
            // An ETag of 32 hex digits is an md5 of the file only where the store made it one
            // (not with some server-side encryption): with the size right and the compression's
            // own CRCs intact, the file is what was stored, checked like one without an md5.
            let etag_no_md5 = !matches
                && matches!(&expected, Expected::Head { size, md5: Some(_) } if size_ok(size))
                && crc_intact(temp.path(), file.format).await;
            if etag_no_md5 {
                tracing::warn!(file = %file.name, %expected, got,
                    "the archive's ETag is not this file's md5, but its size and CRCs are right: \
                     taking the ETag for no hash");
            }
            if matches || etag_no_md5 {
                self.stats.files.fetch_add(1, Ordering::Relaxed);
                return Ok(VerifiedFile {
                    file: file.clone(),
                    temp,
                    bytes: written,
                    hashed: matches && !matches!(expected, Expected::Head { md5: None, .. }),
                    _slot: slot,
                });
            }
            if attempt >= self.cfg.attempts {
                return Err(ArchiveError::ChecksumMismatch {
                    name: file.name.clone(),
                    attempts: attempt,
                    against: expected.source(),
                    expected: expected.to_string(),
                    got,
                });
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            if let (Expected::Head { .. }, false) = (&expected, asked_again) {
                asked_again = true;
                if let Ok(Some(now)) = self.head(file).await {
                    if now != expected {
                        tracing::warn!(file = %file.name, was = %expected, now = %now,
                            "the archive re-published the file since it was probed: downloading the new one");
                        expected = now;
                        continue;
                    }
                }
            }
            tracing::warn!(file = %file.name, %expected, got, attempt, against = expected.source(),
                "archive file does not match what the archive says of it; downloading it again");
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
                                "larger than {} GiB, which no archive file is ({url})",
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
/// blocking thread a MiB at a time, so neither the disk nor the hash holds up the runtime's
/// workers, and the file is never read back just to be checked.
struct Spool {
    /// `None` only while a blocking write has it.
    file: Option<File>,
    hasher: Option<Hasher>,
    buf: Vec<u8>,
    /// Bytes received so far (written or gathered): where a `Range` request resumes.
    received: u64,
}

/// The hash a download is checked with: what the archive publishes for it.
#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    Md5(md5::Md5),
    /// Nothing to compare a hash with (a size alone).
    None,
}

impl Hasher {
    fn for_expected(expected: &Expected) -> Hasher {
        match expected {
            Expected::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Expected::Head { md5: Some(_), .. } => Hasher::Md5(md5::Md5::new()),
            Expected::Head { md5: None, .. } => Hasher::None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Md5(h) => h.update(bytes),
            Hasher::None => {}
        }
    }

    fn reset(&mut self) {
        match self {
            Hasher::Sha256(h) => *h = Sha256::new(),
            Hasher::Md5(h) => *h = md5::Md5::new(),
            Hasher::None => {}
        }
    }

    /// The hash in lowercase hex, if there is one.
    fn hex(self) -> Option<String> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self {
            Hasher::Sha256(h) => Some(hex(&h.finalize())),
            Hasher::Md5(h) => Some(hex(&h.finalize())),
            Hasher::None => None,
        }
    }
}

/// A spool whose file or hasher is gone: a blocking write of it failed before.
fn earlier_write_failed() -> std::io::Error {
    std::io::Error::other("an earlier write of this download failed")
}

impl Spool {
    fn new(file: File, expected: &Expected) -> Spool {
        Spool {
            file: Some(file),
            hasher: Some(Hasher::for_expected(expected)),
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
        self.hasher
            .as_mut()
            .ok_or_else(earlier_write_failed)?
            .reset();
        self.buf.clear();
        self.received = 0;
        Ok(())
    }

    /// Writes what is left; the hash of everything received, in hex, if one was kept.
    async fn finish(mut self) -> std::io::Result<Option<String>> {
        self.write_out().await?;
        let hasher = self.hasher.take().ok_or_else(earlier_write_failed)?;
        Ok(hasher.hex())
    }
}

/// Whether the file at `path` inflates to its end with its CRCs right (on a blocking thread):
/// every gzip member's CRC-32 and length, or every zip entry's CRC-32.
async fn crc_intact(path: &std::path::Path, format: FileFormat) -> bool {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = File::open(&path)?;
        match format {
            FileFormat::GzippedCsv => {
                let mut gz =
                    flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, f));
                std::io::copy(&mut gz, &mut std::io::sink())?;
            }
            FileFormat::ZippedCsv => {
                let mut zip = zip::ZipArchive::new(BufReader::new(f))?;
                for i in 0..zip.len() {
                    std::io::copy(&mut zip.by_index(i)?, &mut std::io::sink())?;
                }
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
    .await
    .is_ok_and(|r| r.is_ok())
}

/// The md5 an ETag gives: a quoted (or weak) 32-hex ETag is the md5 of an object stored
/// whole; one of a multipart upload (`"<hex>-<parts>"`) or any other form is no hash of the
/// file and is not used.
pub fn md5_of_etag(etag: &str) -> Option<String> {
    let e = etag.trim().trim_start_matches("W/").trim_matches('"');
    (e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit())).then(|| e.to_ascii_lowercase())
}

/// Retry delay: 200 ms doubling to 10 s, with jitter.
fn backoff(failures: u32) -> Duration {
    crate::backoff::jittered(
        Duration::from_millis(200),
        Duration::from_secs(10),
        failures,
    )
}

/// What `on_row` is handed: each CSV row of a file, oldest first; `Ok(false)` stops reading.
type OnRow<'a> = dyn FnMut(&csv::StringRecord) -> crate::error::Result<bool> + 'a;

/// Rows parsed at a time when a file is read newest row first.
const REVERSE_CHUNK_ROWS: usize = 4096;

impl VerifiedFile {
    /// Streams the CSV rows of the file to `on_row`, oldest first (blocking; run it on a
    /// blocking thread). Returns the rows read.
    ///
    /// A zip should hold `<name>.csv`; some archive files hold a second copy of it (in a
    /// folder, or under another name): one CSV is read, the one named like the file when there
    /// is one, and the others are ignored with a warning.
    ///
    /// A gzip file whose download was checked by its size alone is read to its end once before
    /// any row is handed on: that checks the CRC-32 and length of every member (then the only
    /// check of its content) and finds which way its rows run in time
    /// ([`RowOrder::EitherByTime`]); with a hash matched, its first rows say which way. A file
    /// newest first is unpacked beside the download and read backwards.
    pub fn read_rows(
        &self,
        mut on_row: impl FnMut(&csv::StringRecord) -> crate::error::Result<bool>,
    ) -> Result<u64, ArchiveError> {
        match self.file.format {
            FileFormat::ZippedCsv => self.read_zip(&mut on_row),
            FileFormat::GzippedCsv => self.read_gzip(&mut on_row),
        }
    }

    fn unreadable(&self, detail: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Unreadable {
            name: self.file.name.clone(),
            detail: detail.to_string(),
        }
    }

    fn read_zip(&self, on_row: &mut OnRow<'_>) -> Result<u64, ArchiveError> {
        let f = self.temp.reopen().map_err(|e| self.unreadable(e))?;
        let mut zip = zip::ZipArchive::new(BufReader::new(f)).map_err(|e| self.unreadable(e))?;
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
            .ok_or_else(|| self.unreadable("it holds no CSV file"))?;
        if csvs.len() > 1 {
            tracing::warn!(file = %self.file.name, csv_files = ?csvs, reading = %chosen,
                "archive zip holds more than one CSV (a duplicate copy); reading one of them");
        }
        // Checked by its size alone: the CSV's CRC-32 (then the only check of its content) is
        // read to the end before any row is handed on.
        if !self.hashed {
            let entry = zip.by_name(&chosen).map_err(|e| self.unreadable(e))?;
            std::io::copy(
                &mut bounds::LineBounded::new(entry, bounds::MAX_CSV_LINE),
                &mut std::io::sink(),
            )
            .map_err(|e| self.unreadable(format!("checking the zip's CRC-32: {e}")))?;
        }
        let entry = zip.by_name(&chosen).map_err(|e| self.unreadable(e))?;
        self.stream_csv(entry, on_row)
    }

    fn gunzip(&self) -> Result<impl std::io::Read, ArchiveError> {
        let f = self.temp.reopen().map_err(|e| self.unreadable(e))?;
        Ok(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            f,
        )))
    }

    fn read_gzip(&self, on_row: &mut OnRow<'_>) -> Result<u64, ArchiveError> {
        // With a hash of the whole file matched, its content is what the archive holds: the
        // direction is learnt from its first rows. With a size alone, the gzip stream's CRCs
        // are read to the end first.
        let newest_first = if self.hashed {
            self.runs_newest_first()?
        } else {
            self.check_gzip()?
        };
        if !newest_first {
            return self.stream_csv(self.gunzip()?, on_row);
        }
        // Unpacked beside the download (deleted with it), then read from its last line back.
        let dir = self
            .temp
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let mut plain = tempfile::tempfile_in(&dir).map_err(|e| ArchiveError::Disk {
            name: self.file.name.clone(),
            detail: format!("{} ({e})", dir.display()),
        })?;
        std::io::copy(
            &mut bounds::LineBounded::new(self.gunzip()?, bounds::MAX_CSV_LINE),
            &mut plain,
        )
        .map_err(|e| self.unreadable(e))?;
        plain
            .seek(SeekFrom::Start(0))
            .map_err(|e| self.unreadable(e))?;
        // The start of every line, one pass.
        let mut starts = vec![0u64];
        let mut reader = BufReader::with_capacity(1 << 20, &plain);
        let mut at = 0u64;
        loop {
            let buf = std::io::BufRead::fill_buf(&mut reader).map_err(|e| self.unreadable(e))?;
            if buf.is_empty() {
                break;
            }
            let n = buf.len();
            starts.extend(memchr::memchr_iter(b'\n', buf).map(|i| at + i as u64 + 1));
            at += n as u64;
            std::io::BufRead::consume(&mut reader, n);
        }
        if starts.last() != Some(&at) {
            starts.push(at);
        }
        let lines = starts.len() - 1;
        let mut rows = 0u64;
        let mut chunk = Vec::new();
        let parse = |from: usize, to: usize, out: &mut Vec<csv::StringRecord>| {
            let (a, b) = (starts[from], starts[to]);
            let mut bytes = vec![0u8; (b - a) as usize];
            std::os::unix::fs::FileExt::read_exact_at(&plain, &mut bytes, a)
                .map_err(|e| self.unreadable(e))?;
            out.clear();
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(&bytes[..]);
            for r in csv.records() {
                out.push(r.map_err(|e| self.unreadable(format!("near row {}: {e}", from + 1)))?);
            }
            // Lines end with `\n`: more records than lines means they end otherwise (a lone
            // `\r`), and reading them backwards line by line would lose rows.
            if out.len() > to - from {
                return Err(self.unreadable(
                    "its lines do not end with a line feed: it cannot be read newest row last",
                ));
            }
            Ok::<_, ArchiveError>(())
        };
        // A header, on the first line that is not blank, stays first.
        let mut first_data = 0;
        while first_data < lines {
            parse(first_data, first_data + 1, &mut chunk)?;
            first_data += 1;
            let Some(first) = chunk.first() else {
                continue;
            };
            if fields::is_header(first) {
                rows += 1;
                match on_row(first) {
                    Ok(true) => {}
                    Ok(false) => return Ok(rows),
                    Err(e) => return Err(self.unreadable(format!("row 1: {e}"))),
                }
            } else {
                first_data -= 1;
            }
            break;
        }
        let mut end = lines;
        while end > first_data {
            let from = end.saturating_sub(REVERSE_CHUNK_ROWS).max(first_data);
            parse(from, end, &mut chunk)?;
            for row in chunk.iter().rev() {
                rows += 1;
                match on_row(row) {
                    Ok(true) => {}
                    Ok(false) => return Ok(rows),
                    Err(e) => return Err(self.unreadable(format!("row {rows} from the end: {e}"))),
                }
            }
            end = from;
        }
        Ok(rows)
    }

    /// Whether the file's rows run newest first, from its first rows: the first whose time
    /// differs from the first row's says (rows of one time say nothing; a file of one time is
    /// oldest first). Reads no further than that.
    fn runs_newest_first(&self) -> Result<bool, ArchiveError> {
        let RowOrder::EitherByTime { column } = self.file.order else {
            return Ok(false);
        };
        let (mut first, mut down, mut rows) = (None::<f64>, false, 0u64);
        self.stream_csv(self.gunzip()?, &mut |row| {
            rows += 1;
            if rows == 1 && fields::is_header(row) {
                return Ok(true);
            }
            let t: f64 = fields::text(row, column, "time")
                .and_then(|t| {
                    t.trim()
                        .parse()
                        .map_err(|_| format!("column {} (time) is not a number: {t:?}", column + 1))
                })
                .map_err(crate::error::LoaderError::Exchange)?;
            match first {
                None => first = Some(t),
                Some(f) if t != f => {
                    down = t < f;
                    return Ok(false);
                }
                Some(_) => {}
            }
            Ok(true)
        })?;
        Ok(down)
    }

    /// Reads the gzip file to its end (its CRC-32s and lengths are checked on the way) and
    /// says whether its rows run newest first, from the times of its first and last rows (a
    /// row out of order within the file is the reader's to find: see [`RowOrder`]).
    fn check_gzip(&self) -> Result<bool, ArchiveError> {
        let damaged = |e: std::io::Error| self.unreadable(format!("checking the gzip stream: {e}"));
        let mut input = BufReader::with_capacity(
            1 << 20,
            bounds::LineBounded::new(self.gunzip()?, bounds::MAX_CSV_LINE),
        );
        let RowOrder::EitherByTime { column } = self.file.order else {
            std::io::copy(&mut input, &mut std::io::sink()).map_err(damaged)?;
            return Ok(false);
        };
        // The first data line and the last line, without parsing the others.
        let (mut line, mut last, mut first) = (Vec::new(), Vec::new(), None::<Vec<u8>>);
        let mut lines = 0u64;
        loop {
            line.clear();
            if std::io::BufRead::read_until(&mut input, b'\n', &mut line).map_err(damaged)? == 0 {
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            if first.is_none() && !(lines == 1 && line.first().is_some_and(|b| !b.is_ascii_digit()))
            {
                first = Some(line.clone());
            }
            std::mem::swap(&mut line, &mut last);
        }
        let time_of = |bytes: &[u8]| -> Result<f64, ArchiveError> {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(bytes);
            let row = csv
                .records()
                .next()
                .transpose()
                .map_err(|e| self.unreadable(e))?
                .unwrap_or_default();
            fields::text(&row, column, "time")
                .and_then(|t| {
                    t.trim()
                        .parse()
                        .map_err(|_| format!("column {} (time) is not a number: {t:?}", column + 1))
                })
                .map_err(|e| self.unreadable(e))
        };
        Ok(match first {
            Some(first) => time_of(&last)? < time_of(&first)?,
            None => false,
        })
    }

    /// Parses CSV rows from `input` (a line longer than the bound is an error) to `on_row`.
    fn stream_csv(
        &self,
        input: impl std::io::Read,
        on_row: &mut OnRow<'_>,
    ) -> Result<u64, ArchiveError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(bounds::LineBounded::new(input, bounds::MAX_CSV_LINE));
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
                        Err(e) => return Err(self.unreadable(format!("row {rows}: {e}"))),
                    }
                }
                Err(e) => return Err(self.unreadable(format!("row {}: {e}", rows + 1))),
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

    /// A header row (Binance's futures files have one since 2022, Bybit's and OKX's always):
    /// no field starts with a digit (a data row has a time or an id, which may have a
    /// fraction; OKX's rows start with the instrument's name, then its trade id).
    pub fn is_header(row: &csv::StringRecord) -> bool {
        !row.is_empty()
            && row
                .iter()
                .all(|f| f.bytes().next().is_none_or(|b| !b.is_ascii_digit()))
    }

    /// A time column in seconds with a fraction (`1755648000.1385`), in whole milliseconds
    /// (the fraction past the millisecond dropped), read from its digits without rounding.
    pub fn seconds_ms(row: &csv::StringRecord, i: usize, what: &str) -> Result<i64, String> {
        let t = text(row, i, what)?.trim();
        let bad = || {
            format!(
                "column {} ({what}) is not seconds since the epoch: {t:?}",
                i + 1
            )
        };
        let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
        if secs.is_empty()
            || !secs.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        // Past the year 5000 a count of seconds is a count of milliseconds or smaller units.
        if secs >= 100_000_000_000 {
            return Err(format!(
                "column {} ({what}) is not seconds since the epoch (too large: milliseconds?): {t:?}",
                i + 1
            ));
        }
        let ms = frac
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(3)
            .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
        secs.checked_mul(1000)
            .and_then(|s| s.checked_add(ms))
            .ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_daily_and_monthly_files() {
        let l = ArchiveLayout {
            daily: Some("data/spot/daily/klines/BTCUSDT/1mo/BTCUSDT-1mo-%Y-%m-%d.zip".into()),
            monthly: Some("data/spot/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-%Y-%m.zip".into()),
            format: FileFormat::ZippedCsv,
            integrity: Integrity::ChecksumFile,
            order: RowOrder::Ascending,
            schedule: "",
            utc_offset_ms: 0,
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
        // OKX: the instrument first, then numbers.
        assert!(fields::is_header(&csv::StringRecord::from(vec![
            "instrument_name",
            "trade_id",
            "created_time"
        ])));
        assert!(!fields::is_header(&csv::StringRecord::from(vec![
            "BTC-USDT",
            "4001",
            "1704326400100"
        ])));
    }

    /// A `VerifiedFile` of `bytes` named `name`, as a download would leave it.
    fn verified(name: &str, bytes: &[u8], order: RowOrder) -> VerifiedFile {
        let mut temp = tempfile::NamedTempFile::new().unwrap();
        temp.write_all(bytes).unwrap();
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap();
        VerifiedFile {
            file: ArchiveFile {
                period: Period::day_of(0),
                name: name.into(),
                path: name.into(),
                format: FileFormat::GzippedCsv,
                integrity: Integrity::HeadAndCrc,
                order,
            },
            temp,
            bytes: bytes.len() as u64,
            hashed: false,
            _slot: FileSlot { _permit: permit },
        }
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap()
    }

    fn firsts(f: &VerifiedFile) -> Result<Vec<String>, ArchiveError> {
        let mut out = Vec::new();
        f.read_rows(|row| {
            out.push(row.get(0).unwrap_or_default().to_string());
            Ok(true)
        })?;
        Ok(out)
    }

    #[test]
    fn gzip_files_are_read_oldest_first_whichever_way_they_run() {
        let by_time = RowOrder::EitherByTime { column: 0 };
        let up = "timestamp,id\n1.5,a\n1.5,b\n2.0001,c\n3,d\n";
        let f = verified("up.csv.gz", &gzip(up), by_time);
        assert_eq!(
            firsts(&f).unwrap(),
            ["timestamp", "1.5", "1.5", "2.0001", "3"]
        );
        // Newest first, with more rows than one backwards chunk: the header stays first and
        // every row comes back in time order, ties in reverse file order.
        let n = REVERSE_CHUNK_ROWS * 2 + 7;
        let mut down = String::from("timestamp,id\n");
        for i in (0..n).rev() {
            down += &format!("{i}.25,{i}\n");
        }
        for hashed in [false, true] {
            // Read to the end first (a size alone checked), or known by its first rows (a hash).
            let mut f = verified("down.csv.gz", &gzip(&down), by_time);
            f.hashed = hashed;
            let rows = firsts(&f).unwrap();
            assert_eq!(rows.len(), n + 1);
            assert_eq!(rows[0], "timestamp");
            assert!(rows[1..]
                .iter()
                .enumerate()
                .all(|(i, r)| *r == format!("{i}.25")));
        }
        // First and last row say which way a file runs.
        let f = verified("mixed.csv.gz", &gzip("timestamp\n1\n3\n2\n"), by_time);
        assert_eq!(firsts(&f).unwrap(), ["timestamp", "1", "3", "2"]);
    }

    #[test]
    fn a_damaged_gzip_is_found_before_any_row_is_handed_on() {
        let mut gz = gzip(&"1,x\n".repeat(10_000));
        let n = gz.len();
        // The CRC-32 in the trailer no longer matches the content.
        gz[n - 8] ^= 0xff;
        let f = verified("bad.csv.gz", &gz, RowOrder::EitherByTime { column: 0 });
        let mut seen = 0;
        let e = f
            .read_rows(|_| {
                seen += 1;
                Ok(true)
            })
            .unwrap_err();
        assert!(matches!(e, ArchiveError::Unreadable { .. }), "{e}");
        assert!(e.to_string().contains("checking the gzip stream"), "{e}");
        assert_eq!(seen, 0);
    }

    #[test]
    fn seconds_with_a_fraction_become_whole_milliseconds() {
        let row = csv::StringRecord::from(vec!["1755648000.1385", "1755648000", "17.5", "x.1", ""]);
        assert_eq!(fields::seconds_ms(&row, 0, "t").unwrap(), 1_755_648_000_138);
        assert_eq!(fields::seconds_ms(&row, 1, "t").unwrap(), 1_755_648_000_000);
        assert_eq!(fields::seconds_ms(&row, 2, "t").unwrap(), 17_500);
        assert!(fields::seconds_ms(&row, 3, "t")
            .unwrap_err()
            .contains("column 4"));
        assert!(fields::seconds_ms(&row, 4, "t").is_err());
        let ms = csv::StringRecord::from(vec!["1704067200026"]);
        assert!(fields::seconds_ms(&ms, 0, "t")
            .unwrap_err()
            .contains("milliseconds?"));
        assert!(fields::is_header(&csv::StringRecord::from(vec![
            "timestamp"
        ])));
        assert!(!fields::is_header(&row));
    }

    #[test]
    fn only_an_md5_etag_is_taken_for_a_hash() {
        let h = "0123456789abcdef0123456789ABCDEF";
        assert_eq!(
            md5_of_etag(&format!("\"{h}\"")),
            Some(h.to_ascii_lowercase())
        );
        assert_eq!(
            md5_of_etag(&format!("W/\"{h}\"")),
            Some(h.to_ascii_lowercase())
        );
        assert_eq!(md5_of_etag(&format!("\"{h}-12\"")), None, "multipart");
        assert_eq!(md5_of_etag("\"abc\""), None);
    }
}
