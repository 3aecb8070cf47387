//! Request and response bodies: the size limit (checked before and after decompression, so a
//! gzip bomb is refused too), `Content-Encoding: gzip|deflate` requests, gzip answers when asked.

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::Compression;
use flate2::read::{MultiGzDecoder, ZlibDecoder};
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue, Response, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::Error;

/// Reads a whole request body, at most `limit` bytes once decoded.
pub async fn read<B>(body: B, headers: &HeaderMap, limit: usize) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let raw = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Error::PayloadTooLarge { limit }
            } else {
                Error::MalformedBody {
                    reason: "тело запроса получено не полностью".into(),
                }
            }
        })?
        .to_bytes();
    decode(raw, headers, limit)
}

fn decode(raw: Bytes, headers: &HeaderMap, limit: usize) -> Result<Bytes, Error> {
    let Some(encoding) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(raw);
    };
    let encoding = encoding.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(raw),
        "gzip" | "x-gzip" => inflate(MultiGzDecoder::new(&raw[..]), limit, "gzip"),
        "deflate" => inflate(ZlibDecoder::new(&raw[..]), limit, "deflate"),
        _ => Err(Error::UnsupportedEncoding { encoding }),
    }
}

fn inflate(reader: impl Read, limit: usize, name: &str) -> Result<Bytes, Error> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| Error::MalformedBody {
            reason: format!("не удалось распаковать {name}"),
        })?;
    if out.len() > limit {
        return Err(Error::PayloadTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// Whether the client accepts a gzip answer (`Accept-Encoding`, honouring `q=0`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            !refused
                && ["gzip", "x-gzip", "*"]
                    .iter()
                    .any(|c| coding.eq_ignore_ascii_case(c))
        })
}

/// Answers shorter than this stay plain even for a caller that accepts gzip: they leave in the
/// first round trip either way (TCP's initial window is ten segments, ≈ 14 KB), so compressing
/// them would save no time, while setting up the compressor (miniz's ≈ 300 KB of window and
/// hash tables, cleared for every answer) cost 35–45 µs of CPU for a 2.3 KB recalc answer
/// (measured), about as much as mapping that answer. A recalc of ≈ 30 positions and more is
/// compressed.
pub const GZIP_MIN_BYTES: usize = 8 * 1024;

/// Gzips an answer of at least [`GZIP_MIN_BYTES`] in place.
pub fn gzip(response: &mut Response<Bytes>) {
    if response.body().len() < GZIP_MIN_BYTES {
        return;
    }
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(response.body().len() / 2 + 32),
        Compression::fast(),
    );
    // Writing to a Vec cannot fail; if it somehow did, the plain answer is still correct.
    let Ok(compressed) = encoder
        .write_all(response.body())
        .and_then(|()| encoder.finish())
    else {
        return;
    };
    *response.body_mut() = Bytes::from(compressed);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    headers.remove(header::CONTENT_LENGTH);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn with_encoding(enc: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(enc).unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn limit_applies_to_raw_and_decoded_size() {
        let big = vec![b' '; 2000];
        let err = read(Full::new(Bytes::from(big.clone())), &HeaderMap::new(), 1000).await;
        assert!(matches!(err, Err(Error::PayloadTooLarge { limit: 1000 })));
        // 2000 spaces gzip to a few bytes: the decoded size is what counts.
        let err = read(
            Full::new(Bytes::from(gz(&big))),
            &with_encoding("gzip"),
            1000,
        )
        .await;
        assert!(matches!(err, Err(Error::PayloadTooLarge { .. })));
        let ok = read(
            Full::new(Bytes::from(gz(b"{}"))),
            &with_encoding("GZIP"),
            1000,
        )
        .await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"{}"));
    }

    #[tokio::test]
    async fn bad_gzip_and_unknown_encoding_are_refused() {
        let err = read(
            Full::new(Bytes::from_static(b"not gzip")),
            &with_encoding("gzip"),
            1000,
        )
        .await;
        assert!(matches!(err, Err(Error::MalformedBody { .. })));
        let err = read(
            Full::new(Bytes::from_static(b"{}")),
            &with_encoding("br"),
            1000,
        )
        .await;
        assert!(matches!(err, Err(Error::UnsupportedEncoding { .. })));
    }

    #[test]
    fn only_answers_worth_it_are_gzipped() {
        let answer = |len: usize| {
            let mut response = Response::new(Bytes::from(vec![b'7'; len]));
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            gzip(&mut response);
            response
        };
        let small = answer(GZIP_MIN_BYTES - 1);
        assert!(small.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(small.body().len(), GZIP_MIN_BYTES - 1);
        let big = answer(GZIP_MIN_BYTES);
        assert_eq!(big.headers()[header::CONTENT_ENCODING], "gzip");
        assert!(big.headers().get(header::CONTENT_LENGTH).is_none());
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&big.body()[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, vec![b'7'; GZIP_MIN_BYTES]);
    }

    #[test]
    fn accept_encoding_parsing() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip")));
        assert!(accepts_gzip(&h("deflate, gzip;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br, identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A task's waker that counts the wakes made while that task is being polled.
    struct WakeWatch {
        inner: std::task::Waker,
        polling: Arc<AtomicBool>,
        self_wakes: Arc<AtomicUsize>,
    }

    impl std::task::Wake for WakeWatch {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            if self.polling.load(Ordering::SeqCst) {
                self.self_wakes.fetch_add(1, Ordering::SeqCst);
            }
            self.inner.wake_by_ref();
        }
    }

    /// tokio re-queues a task woken while it runs and wakes another worker thread for it, so a
    /// connection task that wakes itself costs every request a futex wake at low load. hyper
    /// 1.12.0 did, when the handler read a body whose sender was already gone (the patch in
    /// vendor/hyper; this test fails against the published crate).
    #[tokio::test]
    async fn reading_a_whole_body_does_not_wake_the_connection_task() {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let body = br#"{"positions":[{"quantity":1}]}"#;
        let request = format!(
            "POST /retaildemand/recalc HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        client.write_all(request.as_bytes()).await.unwrap();
        client.write_all(body).await.unwrap();

        let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let (parts, incoming) = req.into_parts();
            let read = read(incoming, &parts.headers, 1024).await;
            let answer = Bytes::from(format!("read {} bytes", read.map_or(0, |b| b.len())));
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(answer)))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(server), service);
        let polling = Arc::new(AtomicBool::new(false));
        let self_wakes = Arc::new(AtomicUsize::new(0));
        let mut connection = std::pin::pin!(connection);
        let watched = std::future::poll_fn(|cx| {
            let waker = std::task::Waker::from(Arc::new(WakeWatch {
                inner: cx.waker().clone(),
                polling: polling.clone(),
                self_wakes: self_wakes.clone(),
            }));
            polling.store(true, Ordering::SeqCst);
            let polled = connection
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker));
            polling.store(false, Ordering::SeqCst);
            polled
        });
        let expected = format!("read {} bytes", body.len());
        let exchange = async {
            let mut answer = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&answer).ends_with(&expected) {
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection closed before answering");
                answer.extend_from_slice(&buf[..n]);
            }
            drop(client); // the connection ends at EOF
            String::from_utf8(answer).unwrap()
        };
        let (served, answer) = tokio::join!(watched, exchange);
        served.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert_eq!(self_wakes.load(Ordering::SeqCst), 0);
    }
}
