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
}
