//! The bulk archive: Binance's `data.binance.vision` file layout served on the simulator's port
//! under `/data/spot/…`, `/data/futures/um/…` and `/data/futures/cm/…`, from the same
//! deterministic data as each market's REST endpoints. This module
//! owns answering archive requests (GET and HEAD, S3-style 404s, ranges, the archive faults),
//! the on-disk cache of generated zips (a temporary directory removed when the server stops;
//! each file generated at most once, even under concurrent requests), the archive's counters
//! and the JSON form of [`ArchiveFaults`] used by `/sim/archive`.
//!
//! Submodules: [`layout`] (paths, names, spans, publication), [`generate`] (CSV rows into a
//! zip, SHA-256) and [`body`] (ranges and the streamed, fault-injected body).

mod body;
mod generate;
mod layout;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::Bytes;
use hyper::header::{
    HeaderValue, ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
};
use hyper::{Method, Response, StatusCode};
use tokio::sync::OnceCell;

use body::{parse_range, RangeReq, Transfer};
pub(crate) use body::{CutStream, FileBody};
use generate::{generate, sha256_hex, Generated, Variant};
use layout::{http_date, parse_day, parse_month, parse_path, FileKey, Kind};

use crate::data::Data;
use crate::gauge::Gauge;
use crate::server::Body;
use crate::{ArchiveFaults, SimStats};

/// Where generated zips live: created at the first archive request, removed by
/// [`Archive::close`].
enum Dir {
    NotYet,
    Open(tempfile::TempDir),
    Closed,
}

/// A cached file: the zip of one key, one content variant and one set of missing trade ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    zip_key: String,
    variant: Variant,
    missing: Vec<(u64, u64)>,
}

type Slot = Arc<OnceCell<Arc<Generated>>>;

struct State {
    faults: ArchiveFaults,
    requests: u64,
    not_found: u64,
    downloads: BTreeMap<String, u64>,
}

/// The archive of one server.
pub(crate) struct Archive {
    listed_at: i64,
    state: Mutex<State>,
    cache: Mutex<HashMap<CacheKey, Slot>>,
    dir: Mutex<Dir>,
    closed: Arc<AtomicBool>,
    files: AtomicU64,
    generated: AtomicU64,
    bytes_sent: Arc<AtomicU64>,
    /// Zip bodies being sent.
    downloads_at_once: Arc<Gauge>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves consistent data; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Archive {
    pub(crate) fn new(listed_at: i64, faults: ArchiveFaults) -> Archive {
        Archive {
            listed_at,
            state: Mutex::new(State {
                faults,
                requests: 0,
                not_found: 0,
                downloads: BTreeMap::new(),
            }),
            cache: Mutex::new(HashMap::new()),
            dir: Mutex::new(Dir::NotYet),
            closed: Arc::new(AtomicBool::new(false)),
            files: AtomicU64::new(0),
            generated: AtomicU64::new(0),
            bytes_sent: Arc::new(AtomicU64::new(0)),
            downloads_at_once: Arc::default(),
        }
    }

    pub(crate) fn faults(&self) -> ArchiveFaults {
        lock(&self.state).faults.clone()
    }

    pub(crate) fn set_faults(&self, f: ArchiveFaults) {
        lock(&self.state).faults = f;
    }

    /// Applies a `/sim/archive` POST body to the faults in force; returns the result.
    pub(crate) fn update_faults(&self, j: ArchiveFaultsJson) -> Result<ArchiveFaults, String> {
        j.validate()?;
        let mut st = lock(&self.state);
        let f = j.apply(st.faults.clone());
        st.faults = f.clone();
        Ok(f)
    }

    pub(crate) fn fill_stats(&self, stats: &mut SimStats) {
        let st = lock(&self.state);
        stats.archive_requests = st.requests;
        stats.archive_not_found = st.not_found;
        stats.archive_downloads = st.downloads.clone();
        stats.archive_bytes_sent = self.bytes_sent.load(Ordering::Relaxed);
        stats.archive_files_generated = self.generated.load(Ordering::Relaxed);
        stats.archive_max_downloads_at_once = self.downloads_at_once.max();
    }

    /// The directory of generated files, once there is one and until the server stops.
    pub(crate) fn cache_dir(&self) -> Option<PathBuf> {
        match &*lock(&self.dir) {
            Dir::Open(t) => Some(t.path().to_path_buf()),
            Dir::NotYet | Dir::Closed => None,
        }
    }

    /// Stops generating, forgets the cache and removes the directory of generated files.
    /// Downloads under way keep reading their (unlinked) files.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        lock(&self.cache).clear();
        let dir = std::mem::replace(&mut *lock(&self.dir), Dir::Closed);
        drop(dir);
    }

    fn dir(&self) -> io::Result<PathBuf> {
        let mut dir = lock(&self.dir);
        match &*dir {
            Dir::Closed => Err(io::Error::other("the simulator is shutting down")),
            Dir::Open(t) => Ok(t.path().to_path_buf()),
            Dir::NotYet => {
                let t = tempfile::Builder::new()
                    .prefix("exchange-sim-archive-")
                    .tempdir()?;
                let path = t.path().to_path_buf();
                *dir = Dir::Open(t);
                Ok(path)
            }
        }
    }

    /// The zip of `key` in `variant`, generated on a blocking thread at the first request;
    /// concurrent requests for the same file wait for that one generation.
    async fn generated(
        &self,
        key: &FileKey,
        variant: Variant,
        data: Arc<Data>,
    ) -> io::Result<Arc<Generated>> {
        let missing = match key.kind {
            Kind::Klines(_) | Kind::PriceKlines(..) | Kind::Metrics => Vec::new(),
            Kind::AggTrades | Kind::Trades => data.missing.clone(),
        };
        let cache_key = CacheKey {
            zip_key: key.zip_key(),
            variant,
            missing,
        };
        let slot = lock(&self.cache).entry(cache_key).or_default().clone();
        let made = slot
            .get_or_try_init(|| async {
                let path = self.dir()?.join(format!(
                    "{}-{}",
                    self.files.fetch_add(1, Ordering::Relaxed),
                    key.zip_name()
                ));
                let key = key.clone();
                let cancel = self.closed.clone();
                let started = std::time::Instant::now();
                let made = tokio::task::spawn_blocking(move || {
                    generate(&key, &data, variant, &path, &cancel)
                })
                .await
                .map_err(io::Error::other)??;
                self.generated.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    file = %made.path.display(),
                    bytes = made.len,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "archive file generated"
                );
                Ok::<_, io::Error>(Arc::new(made))
            })
            .await?;
        Ok(made.clone())
    }

    /// Answers a request for `path` (which starts with `/data/`) that came on the connection
    /// whose [`CutStream`] has the flag `cut`.
    pub(crate) async fn serve(
        &self,
        method: &Method,
        path: &str,
        range: Option<&str>,
        data: Arc<Data>,
        now: i64,
        cut: Arc<AtomicBool>,
    ) -> Response<Body> {
        let faults = {
            let mut st = lock(&self.state);
            st.requests += 1;
            st.faults.clone()
        };
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        let head = *method == Method::HEAD;
        if *method != Method::GET && !head {
            return s3_error(
                405,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
                path,
                head,
            );
        }
        let found = parse_path(path).filter(|(key, _)| key.available(self.listed_at, now, &faults));
        let Some((key, checksum)) = found else {
            lock(&self.state).not_found += 1;
            return s3_error(
                404,
                "NoSuchKey",
                "The specified key does not exist.",
                path,
                head,
            );
        };
        let named = |list: &[String]| list.iter().any(|n| key.is_named(n));
        let variant = Variant {
            header: faults.header,
            duplicate_rows: named(&faults.duplicate_rows),
            missing_rows: named(&faults.missing_rows),
            nested_copy: named(&faults.nested_copy),
        };
        let made = match self.generated(&key, variant, data).await {
            Ok(made) => made,
            Err(e) => {
                tracing::warn!(error = %e, path, "archive file generation failed");
                return s3_error(
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    path,
                    head,
                );
            }
        };
        let last_modified = http_date(key.published_at(&faults));
        if checksum {
            let hash = if named(&faults.bad_checksum) {
                // A well-formed hash, just not the zip's.
                sha256_hex(made.sha256.as_bytes())
            } else {
                made.sha256.clone()
            };
            let mut text = format!("{hash}  {}", key.zip_name());
            if key.checksum_newline() {
                text.push('\n');
            }
            let etag = format!("\"{}\"", sha256_hex(text.as_bytes()));
            let len = text.len() as u64;
            let mut resp = if head {
                empty()
            } else {
                self.bytes_sent.fetch_add(len, Ordering::Relaxed);
                Response::new(Either::Left(Full::new(Bytes::from(text))))
            };
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            h.insert(CONTENT_LENGTH, HeaderValue::from(len));
            set_str(h, ETAG, &etag);
            set_str(h, LAST_MODIFIED, &last_modified);
            return resp;
        }
        let len = made.len;
        let (status, first, last) = match parse_range(range, len) {
            RangeReq::Unsatisfiable => {
                let mut resp = s3_error(
                    416,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                    path,
                    head,
                );
                set_str(resp.headers_mut(), CONTENT_RANGE, &format!("bytes */{len}"));
                return resp;
            }
            RangeReq::Full => (200, 0, len.saturating_sub(1)),
            RangeReq::Part(a, b) => (206, a, b),
        };
        let body_len = if len == 0 { 0 } else { last + 1 - first };
        let mut resp = if head || body_len == 0 {
            empty()
        } else {
            let (corrupt, truncate) = {
                let mut st = lock(&self.state);
                *st.downloads.entry(key.download_name()).or_default() += 1;
                let corrupt = take_one(&mut st.faults.corrupt, &key);
                let truncate = take_one(&mut st.faults.truncate, &key);
                (corrupt, truncate)
            };
            let file = match tokio::fs::File::open(&made.path).await {
                Ok(file) => file,
                Err(e) => {
                    tracing::warn!(error = %e, path, "archive file vanished");
                    return s3_error(
                        500,
                        "InternalError",
                        "We encountered an internal error. Please try again.",
                        path,
                        head,
                    );
                }
            };
            let transfer = Transfer {
                first,
                last,
                file_len: len,
                corrupt,
                truncate,
                bandwidth: faults.bandwidth,
            };
            Response::new(Either::Right(FileBody::spawn(
                file,
                transfer,
                self.bytes_sent.clone(),
                cut,
                self.downloads_at_once.enter(),
            )))
        };
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/zip"));
        h.insert(CONTENT_LENGTH, HeaderValue::from(body_len));
        h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        set_str(h, ETAG, &format!("\"{}\"", made.sha256));
        set_str(h, LAST_MODIFIED, &last_modified);
        if status == 206 {
            set_str(h, CONTENT_RANGE, &format!("bytes {first}-{last}/{len}"));
        }
        resp
    }
}

/// Whether a download of `key` is hit by a counted fault, counting it down (`u32::MAX` never
/// counts down).
fn take_one(list: &mut [(String, u32)], key: &FileKey) -> bool {
    for (name, left) in list.iter_mut() {
        if *left > 0 && key.is_named(name) {
            if *left != u32::MAX {
                *left -= 1;
            }
            return true;
        }
    }
    false
}

fn empty() -> Response<Body> {
    Response::new(Either::Left(Full::new(Bytes::new())))
}

fn set_str(h: &mut hyper::HeaderMap, name: hyper::header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// An S3-style XML error (`<Error><Code>NoSuchKey</Code>…<Key>…</Key></Error>`); HEAD
/// responses carry the headers only, like S3's.
fn s3_error(status: u16, code: &str, message: &str, path: &str, head: bool) -> Response<Body> {
    let mut body = String::with_capacity(200 + path.len());
    body.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>");
    body.push_str(code);
    body.push_str("</Code><Message>");
    body.push_str(message);
    body.push_str("</Message><Key>");
    xml_escape(&mut body, path.strip_prefix('/').unwrap_or(path));
    body.push_str("</Key></Error>");
    let len = body.len() as u64;
    let mut resp = if head {
        empty()
    } else {
        Response::new(Either::Left(Full::new(Bytes::from(body))))
    };
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

fn xml_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// The JSON form of [`ArchiveFaults`] used by `/sim/archive`: durations in ms, file lists as
/// arrays of names, counted faults as `[name, count]` pairs; fields left out of a POST keep
/// their current value.
#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ArchiveFaultsJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    daily_delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    monthly_delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_days: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_months: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    corrupt: Option<Vec<(String, u32)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bad_checksum: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<Vec<(String, u32)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_rows: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_rows: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nested_copy: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bandwidth: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `/sim/archive`'s JSON of `f`.
pub(crate) fn faults_json(f: &ArchiveFaults) -> String {
    let j = ArchiveFaultsJson {
        daily_delay_ms: Some(ms(f.daily_delay)),
        monthly_delay_ms: Some(ms(f.monthly_delay)),
        missing_days: Some(f.missing_days.clone()),
        missing_months: Some(f.missing_months.clone()),
        corrupt: Some(f.corrupt.clone()),
        bad_checksum: Some(f.bad_checksum.clone()),
        truncate: Some(f.truncate.clone()),
        duplicate_rows: Some(f.duplicate_rows.clone()),
        missing_rows: Some(f.missing_rows.clone()),
        nested_copy: Some(f.nested_copy.clone()),
        header: Some(f.header),
        latency_ms: Some(ms(f.latency)),
        bandwidth: Some(f.bandwidth),
    };
    serde_json::to_string(&j).unwrap_or_else(|_| "{}".into())
}

impl ArchiveFaultsJson {
    fn validate(&self) -> Result<(), String> {
        for day in self.missing_days.iter().flatten() {
            if parse_day(day.trim()).is_none() {
                return Err(format!("missing_days: '{day}' is not a YYYY-MM-DD date"));
            }
        }
        for month in self.missing_months.iter().flatten() {
            if parse_month(month.trim()).is_none() {
                return Err(format!("missing_months: '{month}' is not a YYYY-MM month"));
            }
        }
        Ok(())
    }

    fn apply(self, mut f: ArchiveFaults) -> ArchiveFaults {
        let d = Duration::from_millis;
        if let Some(v) = self.daily_delay_ms {
            f.daily_delay = d(v);
        }
        if let Some(v) = self.monthly_delay_ms {
            f.monthly_delay = d(v);
        }
        if let Some(v) = self.missing_days {
            f.missing_days = v;
        }
        if let Some(v) = self.missing_months {
            f.missing_months = v;
        }
        if let Some(v) = self.corrupt {
            f.corrupt = v;
        }
        if let Some(v) = self.bad_checksum {
            f.bad_checksum = v;
        }
        if let Some(v) = self.truncate {
            f.truncate = v;
        }
        if let Some(v) = self.duplicate_rows {
            f.duplicate_rows = v;
        }
        if let Some(v) = self.missing_rows {
            f.missing_rows = v;
        }
        if let Some(v) = self.nested_copy {
            f.nested_copy = v;
        }
        if let Some(v) = self.header {
            f.header = v;
        }
        if let Some(v) = self.latency_ms {
            f.latency = d(v);
        }
        if let Some(v) = self.bandwidth {
            f.bandwidth = v;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_partial_update() {
        let archive = Archive::new(0, ArchiveFaults::default());
        let j: ArchiveFaultsJson = serde_json::from_str(
            r#"{"daily_delay_ms":7200000,"corrupt":[["BTCUSDT-1m-2024-01-02.zip",1]],
                "missing_days":["2024-01-03"],"header":true}"#,
        )
        .unwrap();
        let f = archive.update_faults(j).unwrap();
        assert_eq!(f.daily_delay, Duration::from_secs(7200));
        assert_eq!(
            f.corrupt,
            vec![("BTCUSDT-1m-2024-01-02.zip".to_string(), 1)]
        );
        assert!(f.header);
        let j: ArchiveFaultsJson = serde_json::from_str(r#"{"bandwidth":1000}"#).unwrap();
        let f = archive.update_faults(j).unwrap();
        assert_eq!((f.bandwidth, f.header), (1000, true));
        let v: serde_json::Value = serde_json::from_str(&faults_json(&f)).unwrap();
        assert_eq!(v["daily_delay_ms"], 7_200_000);
        assert_eq!(v["corrupt"][0][1], 1);
        assert_eq!(v["missing_months"], serde_json::json!([]));
        let bad: ArchiveFaultsJson =
            serde_json::from_str(r#"{"missing_days":["2024-1-3"]}"#).unwrap();
        assert!(archive.update_faults(bad).is_err());
        assert!(serde_json::from_str::<ArchiveFaultsJson>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn counted_faults_count_down() {
        let (key, _) =
            parse_path("/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-01-02.zip").unwrap();
        let mut list = vec![
            ("ETHUSDT-1m-2024-01-02.zip".to_string(), 5),
            ("BTCUSDT-1m-2024-01-02.zip".to_string(), 2),
        ];
        assert!(take_one(&mut list, &key));
        assert!(take_one(&mut list, &key));
        assert!(!take_one(&mut list, &key));
        assert_eq!(list[1].1, 0);
        assert_eq!(list[0].1, 5);
        let mut always = vec![("BTCUSDT-1m-2024-01-02".to_string(), u32::MAX)];
        for _ in 0..3 {
            assert!(take_one(&mut always, &key));
        }
        assert_eq!(always[0].1, u32::MAX);
    }
}
