//! HTTP_GET: each URL answers with an accepted status code (and, when
//! `digest` is set, a body whose MD5 matches).
//!
//! The request is Keepalived's: `GET path HTTP/1.0` with a `Host` header
//! (`virtualhost`, else the address, with `:port` unless it is the scheme's
//! default) and `Connection: close`, one connection per URL. The response is
//! read up to `Content-Length`, or to the end of the stream; a chunked body is
//! decoded. Connecting is limited by `connect_timeout`, and so is everything
//! after it (the TLS handshake for SSL_GET, the request and the whole response).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{encode_hex, tcp, CheckError, WeightChange};
use crate::ha::UrlCheck;

/// Largest response read (headers and body), 16 MiB.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// One HTTP_GET attempt: every URL must pass.
pub async fn check(
    to: SocketAddr,
    bind: Option<IpAddr>,
    timeout: Duration,
    urls: &[UrlCheck],
    virtualhost: Option<&str>,
) -> Result<WeightChange, CheckError> {
    let host = host_header(to, virtualhost, 80);
    for url in urls {
        let stream = tcp::connect(to, bind, timeout).await?;
        match tokio::time::timeout(timeout, verify(stream, url, &host)).await {
            Err(_) => return Err(CheckError::Timeout { what: "response", after: timeout }),
            Ok(result) => result?,
        }
    }
    Ok(WeightChange::Keep)
}

/// The `Host` header: `virtualhost`, else `ip` or `ip:port` (an IPv6
/// address in brackets, RFC 3986).
pub fn host_header(to: SocketAddr, virtualhost: Option<&str>, default_port: u16) -> String {
    match (virtualhost, to.ip()) {
        (Some(v), _) => v.to_owned(),
        (None, IpAddr::V4(ip)) if to.port() == default_port => ip.to_string(),
        (None, IpAddr::V6(ip)) if to.port() == default_port => format!("[{ip}]"),
        (None, _) => to.to_string(),
    }
}

/// The request Keepalived sends.
pub fn request(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// Sends the GET for `url` on `stream` and checks the status and digest.
pub async fn verify<S>(mut stream: S, url: &UrlCheck, host: &str) -> Result<(), CheckError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(request(&url.path, host).as_bytes()).await.map_err(CheckError::io("send"))?;
    stream.flush().await.map_err(CheckError::io("send"))?;
    let (code, body) = read_response(&mut stream).await?;
    if !url.status_code.contains(&code) {
        return Err(CheckError::Status { path: url.path.clone(), code, expected: url.status_code.clone() });
    }
    if let Some(expected) = &url.digest {
        let got = encode_hex(&Md5::digest(&body));
        if !got.eq_ignore_ascii_case(expected.trim()) {
            return Err(CheckError::Digest { path: url.path.clone(), got, expected: expected.clone() });
        }
    }
    Ok(())
}

/// Reads one response: its status code and (de-chunked) body.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(u16, Vec<u8>), CheckError> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let mut head: Option<Head> = None;
    loop {
        if head.is_none() {
            head = parse_head(&buf)?;
        }
        if let Some(h) = &head {
            if let Some(len) = h.content_length {
                if !h.chunked && buf.len() >= h.body_start.saturating_add(len) {
                    break;
                }
            }
            if h.chunked && dechunk(&buf[h.body_start..]).is_ok_and(|d| d.complete) {
                break;
            }
        }
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // TLS peers that close without close_notify: treat as the end.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(source) => return Err(CheckError::Io { what: "recv", source }),
        };
        if n == 0 {
            break;
        }
        if buf.len() + n > MAX_RESPONSE {
            return Err(CheckError::Answer(format!("response larger than {MAX_RESPONSE} bytes")));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = match head {
        Some(h) => h,
        None => parse_head(&buf)?.ok_or_else(|| CheckError::Answer("connection closed before a complete HTTP header".into()))?,
    };
    let raw = &buf[head.body_start..];
    let body = if head.chunked {
        dechunk(raw)?.body
    } else {
        match head.content_length {
            Some(len) if raw.len() < len => return Err(CheckError::Answer(format!("body cut short: {} of {len} bytes", raw.len()))),
            Some(len) => raw[..len].to_vec(),
            None => raw.to_vec(),
        }
    };
    Ok((head.status, body))
}

/// The parts of a response header the checker uses.
#[derive(Debug)]
struct Head {
    status: u16,
    body_start: usize,
    content_length: Option<usize>,
    chunked: bool,
}

/// Parses the header once it is complete (`None` until then).
fn parse_head(buf: &[u8]) -> Result<Option<Head>, CheckError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(CheckError::Answer("HTTP header longer than 64 KiB".into()));
        }
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|c| c.parse::<u16>().ok());
    let status = match (version.starts_with("HTTP/"), status) {
        (true, Some(code)) => code,
        _ => return Err(CheckError::Answer(format!("not an HTTP status line: `{status_line}`"))),
    };
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = value.parse::<usize>().ok();
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(Some(Head { status, body_start: end + 4, content_length, chunked }))
}

/// A chunked body decoded so far.
struct Dechunked {
    body: Vec<u8>,
    complete: bool,
}

/// Decodes `Transfer-Encoding: chunked`; `complete` once the last chunk is seen.
fn dechunk(mut raw: &[u8]) -> Result<Dechunked, CheckError> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Ok(Dechunked { body, complete: false });
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| CheckError::Answer(format!("bad chunk size `{size_hex}`")))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(Dechunked { body, complete: true });
        }
        if raw.len() < size + 2 {
            return Ok(Dechunked { body, complete: false });
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn parses_content_length_chunked_and_eof_bodies() {
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(read_response(&mut r).await.expect("ok"), (200, b"hello".to_vec()));
        let mut r: &[u8] = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(read_response(&mut r).await.expect("ok"), (404, b"abcde".to_vec()));
        let mut r: &[u8] = b"HTTP/1.0 500 Oops\r\nServer: x\r\n\r\nall of it";
        assert_eq!(read_response(&mut r).await.expect("ok"), (500, b"all of it".to_vec()));
        let mut r: &[u8] = b"SSH-2.0-OpenSSH\r\n\r\n";
        assert!(read_response(&mut r).await.is_err());
        let mut r: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort";
        assert!(read_response(&mut r).await.is_err());
    }

    #[test]
    fn host_header_and_request() {
        let to = SocketAddr::new(Ipv4Addr::new(10, 1, 0, 11).into(), 80);
        assert_eq!(host_header(to, None, 80), "10.1.0.11");
        assert_eq!(host_header(SocketAddr::new(to.ip(), 8080), None, 80), "10.1.0.11:8080");
        assert_eq!(host_header(to, Some("www.example.com"), 80), "www.example.com");
        assert_eq!(request("/health", "h"), "GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: h\r\nConnection: close\r\n\r\n");
    }
}
