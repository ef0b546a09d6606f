//! DNS_CHECK: a query for `name` of `query_type` (class IN, recursion desired)
//! is sent over UDP (port 53 unless `connect_port`). It passes when a response
//! with the query's id arrives within `connect_timeout` with RCODE 0 (NOERROR)
//! and at least one answer record. Datagrams with another id are ignored.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{udp, CheckError, WeightChange};

/// The query types Keepalived's DNS_CHECK accepts, with their codes.
pub const QUERY_TYPES: &[(&str, u16)] = &[("A", 1), ("NS", 2), ("CNAME", 5), ("SOA", 6), ("MX", 15), ("TXT", 16), ("AAAA", 28)];

/// The code of a query type name (case-insensitive).
pub fn query_type_code(name: &str) -> Result<u16, CheckError> {
    QUERY_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, code)| *code)
        .ok_or_else(|| CheckError::Invalid(format!("DNS query type `{name}` is not one of A, NS, CNAME, SOA, MX, TXT, AAAA")))
}

/// Encodes a standard query: header (id, RD, one question) and the question.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, CheckError> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(CheckError::Invalid(format!("DNS name `{name}` has an empty or too long label")));
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - 12 > 255 {
        return Err(CheckError::Invalid(format!("DNS name `{name}` is longer than 255 bytes")));
    }
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    Ok(out)
}

/// Judges a response to query `id`: `None` when it is not one (too short, not
/// a response, another id), else whether it passes.
pub fn judge_response(id: u16, msg: &[u8]) -> Option<Result<(), CheckError>> {
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    let ancount = u16::from_be_bytes([msg[6], msg[7]]);
    Some(if rcode != 0 {
        Err(CheckError::Answer(format!("DNS response RCODE {rcode}")))
    } else if ancount == 0 {
        Err(CheckError::Answer("DNS response has no answer".into()))
    } else {
        Ok(())
    })
}

/// A random query id.
fn query_id() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::collections::hash_map::RandomState::new().hash_one(nanos) as u16
}

/// One DNS_CHECK attempt.
pub async fn check(
    to: SocketAddr,
    bind: Option<IpAddr>,
    timeout: Duration,
    query_type: &str,
    name: &str,
) -> Result<WeightChange, CheckError> {
    let id = query_id();
    let query = encode_query(id, name, query_type_code(query_type)?)?;
    let socket = udp::connected_socket(to, bind).await?;
    socket.send(&query).await.map_err(CheckError::io("send"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(CheckError::Timeout { what: "DNS response", after: timeout }),
            Ok(Err(source)) => return Err(CheckError::Io { what: "recv", source }),
            Ok(Ok(n)) => n,
        };
        if let Some(verdict) = judge_response(id, &buf[..n]) {
            return verdict.map(|()| WeightChange::Keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_query() {
        let q = encode_query(0x1234, "www.example.com.", 1).expect("query");
        let mut want = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(q, want);
        assert_eq!(encode_query(1, ".", 2).expect("root")[12..], [0, 0, 2, 0, 1]);
        assert!(encode_query(1, "a..b", 1).is_err());
        assert!(encode_query(1, &"x".repeat(64), 1).is_err());
        assert_eq!(query_type_code("aaaa").expect("type"), 28);
        assert!(query_type_code("PTR").is_err());
    }

    #[test]
    fn judges_responses() {
        let mut r = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        assert!(matches!(judge_response(0x1234, &r), Some(Ok(()))));
        assert!(judge_response(0x1235, &r).is_none());
        r[3] = 0x83; // NXDOMAIN
        assert!(matches!(judge_response(0x1234, &r), Some(Err(_))));
        r[3] = 0x80;
        r[7] = 0; // no answer
        assert!(matches!(judge_response(0x1234, &r), Some(Err(_))));
        r[2] = 0x01; // a query, not a response
        assert!(judge_response(0x1234, &r).is_none());
    }
}
