//! Sending an archive zip: `Range` header parsing, the streamed response body read from the
//! cached file in chunks by a task that applies the transfer faults (flipped bytes, a cut-off
//! connection, a bandwidth limit) on the way, so the cached file stays clean, and the connection
//! stream wrapper ([`CutStream`]) that lets a cut-off download close its connection only after
//! the bytes it did send have left.

use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::gauge::Under;

/// Largest chunk read and sent at once.
const CHUNK: u64 = 1 << 16;

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeReq {
    /// No usable single byte range: the whole body (HTTP 200).
    Full,
    /// Bytes `first..=last` (HTTP 206).
    Part(u64, u64),
    /// A range starting past the end (HTTP 416).
    Unsatisfiable,
}

/// Parses `bytes=N-`, `bytes=N-M` and `bytes=-S`. Malformed headers, other units and multiple
/// ranges are ignored (the whole body is sent), as RFC 9110 allows.
pub(crate) fn parse_range(header: Option<&str>, len: u64) -> RangeReq {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => match num(suffix) {
            None => RangeReq::Full,
            Some(0) => RangeReq::Unsatisfiable,
            Some(_) if len == 0 => RangeReq::Unsatisfiable,
            Some(n) => RangeReq::Part(len - n.min(len), len - 1),
        },
        (first, last) => {
            let Some(first) = num(first) else {
                return RangeReq::Full;
            };
            let last = if last.is_empty() {
                u64::MAX
            } else {
                match num(last) {
                    Some(l) if l >= first => l,
                    _ => return RangeReq::Full,
                }
            };
            if first >= len {
                RangeReq::Unsatisfiable
            } else {
                RangeReq::Part(first, last.min(len - 1))
            }
        }
    }
}

/// How to send bytes `first..=last` of a cached file.
pub(crate) struct Transfer {
    pub first: u64,
    pub last: u64,
    /// The size of the whole file (for placing the corrupted bytes).
    pub file_len: u64,
    /// Flip a few bytes (the `corrupt` fault).
    pub corrupt: bool,
    /// Send about half of the bytes, then close the connection.
    pub truncate: bool,
    /// Bytes per second, `0` = unlimited.
    pub bandwidth: u64,
}

/// The offsets of the whole file whose bytes a corrupted download flips.
fn corrupt_offsets(file_len: u64) -> [u64; 3] {
    [file_len / 3, file_len / 2, file_len * 2 / 3]
}

/// A response body fed by the task that reads the file.
pub(crate) struct FileBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    left: u64,
    /// The connection's cut flag: a truncated transfer sets it once its bytes are handed over.
    cut: Arc<AtomicBool>,
    /// Counted as a download under way until hyper drops the body (sent, cut or abandoned).
    _under: Under,
}

impl FileBody {
    /// Starts sending `t` from `file` (already open) on the connection whose [`CutStream`] has
    /// the flag `cut`; `sent` counts the bytes handed to hyper.
    pub(crate) fn spawn(
        file: tokio::fs::File,
        t: Transfer,
        sent: Arc<AtomicU64>,
        cut: Arc<AtomicBool>,
        under: Under,
    ) -> FileBody {
        let (tx, rx) = mpsc::channel(4);
        let left = t.last + 1 - t.first;
        tokio::spawn(async move {
            if let Err(e) = pump(file, &t, &tx, &sent).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        FileBody {
            rx,
            left,
            cut,
            _under: under,
        }
    }
}

async fn pump(
    mut file: tokio::fs::File,
    t: &Transfer,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    sent: &AtomicU64,
) -> io::Result<()> {
    let total = t.last + 1 - t.first;
    let stop = if t.truncate {
        t.first + total / 2
    } else {
        t.last + 1
    };
    let chunk = if t.bandwidth > 0 {
        (t.bandwidth / 20).clamp(1, CHUNK)
    } else {
        CHUNK
    };
    let flips = corrupt_offsets(t.file_len);
    file.seek(SeekFrom::Start(t.first)).await?;
    let started = tokio::time::Instant::now();
    let mut pos = t.first;
    while pos < stop {
        let n = chunk.min(stop - pos);
        let mut buf = vec![0u8; n as usize];
        file.read_exact(&mut buf).await?;
        if t.corrupt {
            for off in flips {
                if (pos..pos + n).contains(&off) {
                    buf[(off - pos) as usize] ^= 0x5a;
                }
            }
        }
        if tx.send(Ok(Bytes::from(buf))).await.is_err() {
            // The client went away.
            return Ok(());
        }
        sent.fetch_add(n, Ordering::Relaxed);
        pos += n;
        if t.bandwidth > 0 {
            let secs = (pos - t.first) as f64 / t.bandwidth as f64;
            tokio::time::sleep_until(started + Duration::from_secs_f64(secs)).await;
        }
    }
    // A truncated transfer just ends here; the body then cuts the connection.
    Ok(())
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => {
                self.left = self.left.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                // Cut off short of the announced length. Failing the body now would make
                // hyper drop what it still buffers; instead stay pending, which makes hyper
                // write out its buffer and flush, and let the flush on the cut stream fail.
                self.cut.store(true, Ordering::Release);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// A connection's TCP stream that can be cut: once its flag is set, the next flush fails
/// (hyper flushes only after writing out everything it buffered), so hyper closes the
/// connection right after the bytes already sent, as if the transfer broke off.
pub(crate) struct CutStream {
    inner: TcpStream,
    cut: Arc<AtomicBool>,
}

impl CutStream {
    pub(crate) fn new(inner: TcpStream, cut: Arc<AtomicBool>) -> CutStream {
        CutStream { inner, cut }
    }
}

impl AsyncRead for CutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) if self.cut.load(Ordering::Acquire) => {
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "download cut off by fault injection",
                )))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeReq::*;
        let r = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(r("bytes=0-"), Part(0, 99));
        assert_eq!(r("bytes=40-"), Part(40, 99));
        assert_eq!(r("bytes=40-49"), Part(40, 49));
        assert_eq!(r("bytes=40-400"), Part(40, 99));
        assert_eq!(r("bytes=99-99"), Part(99, 99));
        assert_eq!(r("bytes=-10"), Part(90, 99));
        assert_eq!(r("bytes=-1000"), Part(0, 99));
        assert_eq!(r("bytes=100-"), Unsatisfiable);
        assert_eq!(r("bytes=100-200"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=50-40"), Full);
        assert_eq!(r("bytes=0-1,5-6"), Full);
        assert_eq!(r("items=0-5"), Full);
        assert_eq!(r("bytes=abc"), Full);
        assert_eq!(r("bytes=-"), Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }
}
