//! Hard limits on what the loader accepts from outside: the size of a REST body, a checksum
//! file, an archive download, a CSV row and a WebSocket message, and where a redirect may lead.
//! One place, so every reader applies the same caps and a hostile or broken server costs a
//! clear error instead of the pod's memory.

use bytes::{Bytes, BytesMut};

/// A REST response body. The largest Binance sends to the loader is futures `exchangeInfo`
/// (about 1-2 MB, every symbol); a 1,500-row page is about 300 KB, a 5,000-level depth
/// snapshot about 400 KB.
pub const MAX_REST_BODY: usize = 64 << 20;

/// An error answer: Binance's are one line of JSON (`{"code":-1121,"msg":"…"}`).
pub const MAX_ERROR_BODY: usize = 64 << 10;

/// A `.CHECKSUM` file: one sha256sum line, about 100 bytes.
pub const MAX_CHECKSUM_FILE: usize = 4 << 10;

/// One archive zip on disk. Binance's largest monthly files (BTCUSDT trades) are a few GB; a
/// file past this is not Binance's and would only fill ARCHIVE_DIR.
pub const MAX_ARCHIVE_FILE: u64 = 64 << 30;

/// One CSV line of an archive file (Binance's rows are under 200 bytes). The CSV reader would
/// otherwise buffer a line without end until memory runs out.
pub const MAX_CSV_LINE: usize = 64 << 10;

/// One WebSocket message (and frame). Binance's largest are depth updates of a few hundred KB.
pub const MAX_WS_MESSAGE: usize = 16 << 20;

/// What one WebSocket connection may hold for the live source while it is busy (a backfill, a
/// paced order-book snapshot): the reader keeps reading and answering pings meanwhile, and past
/// this gives the connection up. A second of 1,024 depth streams is a few MB.
pub const MAX_WS_BACKLOG: usize = 64 << 20;

/// Redirects followed for one REST request.
const MAX_REDIRECTS: usize = 5;

/// Why a capped body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The body is larger than the cap: not an answer this loader asked for.
    TooLarge { cap: usize },
    /// The connection failed while reading (transient).
    Transport(reqwest::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { cap } => {
                write!(f, "the response body is larger than {}", human(*cap))
            }
            BodyError::Transport(e) => write!(f, "reading the response body: {e}"),
        }
    }
}

/// `n` bytes as KiB, MiB or GiB, for messages.
pub fn human(n: usize) -> String {
    match n {
        n if n >= 1 << 30 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n => format!("{} KiB", n >> 10),
    }
}

/// Reads `resp`'s body, refusing it as soon as it would pass `cap` bytes (at once when its
/// Content-Length says so). A body that arrives in one chunk is not copied.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge { cap });
    }
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        let so_far = joined.as_ref().map_or(0, |b| b.len()) + first.as_ref().map_or(0, |b| b.len());
        if so_far + chunk.len() > cap {
            return Err(BodyError::TooLarge { cap });
        }
        match (&mut joined, first.take()) {
            (Some(all), _) => all.extend_from_slice(&chunk),
            (None, None) => first = Some(chunk),
            (None, Some(head)) => {
                let mut all = BytesMut::with_capacity(
                    resp.content_length()
                        .map_or(head.len() + chunk.len(), |n| n as usize + head.len()),
                );
                all.extend_from_slice(&head);
                all.extend_from_slice(&chunk);
                joined = Some(all);
            }
        }
    }
    Ok(match joined {
        Some(all) => all.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Follows a redirect only to the same scheme, host and port: the REST client sends the API key
/// with every request, and it must never reach another host.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = attempt.previous().first().map(|u| u.origin());
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if origin.as_ref() == Some(&attempt.url().origin()) {
            attempt.follow()
        } else {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(format!(
                "a redirect to another host ({to}) is not followed: the API key is sent only to the configured URL"
            ))
        }
    })
}

/// A reader that fails once a line passes `cap` bytes, so that the CSV reader above it never
/// buffers more than that for one row.
pub struct LineBounded<R> {
    inner: R,
    cap: usize,
    /// Bytes since the last newline.
    run: usize,
}

impl<R> LineBounded<R> {
    pub fn new(inner: R, cap: usize) -> Self {
        LineBounded { inner, cap, run: 0 }
    }
}

impl<R: std::io::Read> std::io::Read for LineBounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A read of at most `cap` bytes holds no whole line longer than the cap between two of
        // its newlines, so only the line that runs across reads needs counting.
        let limit = buf.len().min(self.cap);
        let n = self.inner.read(&mut buf[..limit])?;
        let got = &buf[..n];
        match memchr::memchr(b'\n', got) {
            None => self.run += n,
            Some(first) => {
                self.run += first;
                if self.run <= self.cap {
                    let last = memchr::memrchr(b'\n', got).unwrap_or(first);
                    self.run = n - last - 1;
                }
            }
        }
        if self.run > self.cap {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "a line longer than {} (archive rows are under 200 bytes)",
                    human(self.cap)
                ),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn response(chunks: Vec<&'static [u8]>) -> reqwest::Response {
        let frames = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from_static(c)))),
        );
        let body = reqwest::Body::wrap(http_body_util::StreamBody::new(frames));
        reqwest::Response::from(hyper::Response::new(body))
    }

    #[tokio::test]
    async fn bodies_within_the_cap_are_read_whole() {
        let one = read_capped(response(vec![b"abc"]), 3).await.unwrap();
        assert_eq!(&one[..], b"abc");
        let many = read_capped(response(vec![b"ab", b"cd", b"e"]), 5)
            .await
            .unwrap();
        assert_eq!(&many[..], b"abcde");
        let none = read_capped(response(vec![]), 5).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn bodies_past_the_cap_are_refused() {
        let streamed = read_capped(response(vec![b"ab", b"cd", b"ef"]), 5).await;
        assert!(matches!(streamed, Err(BodyError::TooLarge { cap: 5 })));
        // A declared length past the cap is refused before the body is read.
        let sized = hyper::Response::new(reqwest::Body::from(b"abcdef".to_vec()));
        let declared = read_capped(reqwest::Response::from(sized), 5).await;
        assert!(matches!(declared, Err(BodyError::TooLarge { cap: 5 })));
    }

    /// Reads everything through a `LineBounded` in reads of `step` bytes.
    fn read_all(text: &[u8], cap: usize, step: usize) -> std::io::Result<Vec<u8>> {
        let mut r = LineBounded::new(text, cap);
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn lines_up_to_the_cap_pass_whatever_the_read_size() {
        let text = b"1234\n12\n\n1234\n1";
        for step in [1, 2, 3, 5, 7, 64] {
            assert_eq!(
                read_all(text, 4, step).unwrap(),
                text.to_vec(),
                "step {step}"
            );
        }
    }

    #[test]
    fn a_line_past_the_cap_fails_whatever_the_read_size() {
        for text in [
            &b"12345\n1"[..],
            b"1\n12345",
            b"12\n123456\n1",
            b"123456789",
        ] {
            for step in [1, 2, 3, 5, 7, 64] {
                let err = read_all(text, 4, step).unwrap_err();
                assert_eq!(
                    err.kind(),
                    std::io::ErrorKind::InvalidData,
                    "{text:?} step {step}"
                );
            }
        }
    }
}
