//! The object store behind a venue's archive of files where the venue publishes no checksum
//! (Bybit's `public.bybit.com`, OKX's `static.okx.com`): a file is generated on its first
//! request and kept for the next few (a `HEAD` is followed by a `GET`); `GET` sends it, `HEAD`
//! its size; both send `ETag: "<md5>"`, as such stores do for a file stored whole.
//! [`ObjectStore::corrupt`] damages the next downloads of a file (the ETag stays the true
//! file's); [`ObjectStore::opaque_etags`] makes every ETag 32 hex digits that are not the
//! file's md5; [`ObjectStore::replace_after_head`] re-publishes a file (the same rows packed
//! otherwise) right after a client probed it. What is in a file and when it is published is
//! the venue's archive module's.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use md5::Digest;

/// Generated files kept for the next request.
const CACHED_FILES: usize = 8;

/// A generated file: its bytes and md5.
struct File {
    bytes: Arc<Vec<u8>>,
    md5: String,
}

/// The store's state: generated files, damaged downloads to come, counters.
#[derive(Default)]
pub(crate) struct ObjectStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    cache: VecDeque<(String, Arc<File>)>,
    corrupt: HashMap<String, u32>,
    /// ETags of 32 hex digits that are not the file's md5 (as a store gives with some
    /// server-side encryption).
    opaque_etags: bool,
    /// Files replaced once their next `HEAD` is answered, and files replaced: the same rows
    /// packed again (other bytes, another md5), as an archive re-publishes a day.
    replace_after_head: HashSet<String>,
    replaced: HashSet<String>,
    stats: ArchiveStats,
}

/// What an archive was asked and sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveStats {
    /// `GET`s answered with a file.
    pub downloads: u64,
    /// `HEAD`s answered with a file's size.
    pub heads: u64,
    pub not_found: u64,
    /// Downloads per file name.
    pub per_file: BTreeMap<String, u64>,
}

/// An answer: status, body, and the ETag of a file.
pub(crate) struct ArchiveAnswer {
    pub status: u16,
    pub body: Arc<Vec<u8>>,
    pub etag: Option<String>,
    /// The size a `HEAD` announces.
    pub length: usize,
}

fn md5_hex(bytes: &[u8]) -> String {
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ObjectStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> ArchiveStats {
        self.lock().stats.clone()
    }

    /// The next `downloads` downloads of the file named `name` are damaged (bytes in the middle
    /// flipped; the ETag and size stay the true file's).
    pub fn corrupt(&self, name: &str, downloads: u32) {
        self.lock().corrupt.insert(name.to_string(), downloads);
    }

    /// The file named `name` is replaced right after its next `HEAD` is answered: what a
    /// client probed is no longer what it downloads.
    pub fn replace_after_head(&self, name: &str) {
        self.lock().replace_after_head.insert(name.to_string());
    }

    /// ETags of 32 hex digits that are no md5 of the file, from now on (or md5s again).
    pub fn opaque_etags(&self, on: bool) {
        self.lock().opaque_etags = on;
    }

    /// A 404, counted.
    pub fn not_found(&self) -> ArchiveAnswer {
        self.lock().stats.not_found += 1;
        ArchiveAnswer {
            status: 404,
            body: Arc::new(b"<Error><Code>NoSuchKey</Code></Error>".to_vec()),
            etag: None,
            length: 0,
        }
    }

    /// Answers the file at `path` (a `HEAD` with `head`): `make` packs it (`true`: packed
    /// otherwise, for a replaced file), or says it is not there.
    pub fn serve(
        &self,
        path: &str,
        head: bool,
        make: impl FnOnce(bool) -> Option<Vec<u8>>,
    ) -> ArchiveAnswer {
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        let (cached, replaced) = {
            let st = self.lock();
            let cached = st
                .cache
                .iter()
                .find(|(n, _)| *n == path)
                .map(|(_, f)| f.clone());
            (cached, st.replaced.contains(&name))
        };
        let file = match cached {
            Some(f) => f,
            None => {
                let Some(bytes) = make(replaced) else {
                    return self.not_found();
                };
                let f = Arc::new(File {
                    md5: md5_hex(&bytes),
                    bytes: Arc::new(bytes),
                });
                let mut st = self.lock();
                st.cache.push_back((path.to_string(), f.clone()));
                if st.cache.len() > CACHED_FILES {
                    st.cache.pop_front();
                }
                f
            }
        };
        let mut st = self.lock();
        let etag = Some(if st.opaque_etags {
            format!("\"{}\"", md5_hex(file.md5.as_bytes()))
        } else {
            format!("\"{}\"", file.md5)
        });
        if head {
            st.stats.heads += 1;
            if st.replace_after_head.remove(&name) {
                st.replaced.insert(name.clone());
                st.cache.retain(|(n, _)| n != path);
            }
            return ArchiveAnswer {
                status: 200,
                body: Arc::new(Vec::new()),
                etag,
                length: file.bytes.len(),
            };
        }
        st.stats.downloads += 1;
        *st.stats.per_file.entry(name.clone()).or_default() += 1;
        let damaged = match st.corrupt.get_mut(&name) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        let body = if damaged {
            let mut bytes = file.bytes.as_ref().clone();
            let mid = bytes.len() / 2;
            for b in bytes.iter_mut().skip(mid).take(8) {
                *b ^= 0x5a;
            }
            Arc::new(bytes)
        } else {
            file.bytes.clone()
        };
        ArchiveAnswer {
            status: 200,
            length: body.len(),
            body,
            etag,
        }
    }
}

/// Epoch ms of `YYYY-MM-DD`'s midnight UTC.
pub(crate) fn day_start(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let (y, m, d): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if parts.next().is_some()
        || date.len() != 10
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * 86_400_000)
}
