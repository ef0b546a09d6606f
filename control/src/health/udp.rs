//! UDP_CHECK: a datagram with `payload` is sent from a connected UDP socket.
//!
//! * With `require_reply`, an answer must arrive within `connect_timeout` and,
//!   when `reply` is set, start with those bytes.
//! * Without it, the check fails only on an ICMP error (port unreachable shows
//!   up as `ECONNREFUSED` on the connected socket's next receive); an answer,
//!   or silence for `connect_timeout`, passes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::{encode_hex, CheckError, WeightChange};

/// A UDP socket bound to `bind` (or any address) and connected to `to`.
pub async fn connected_socket(to: SocketAddr, bind: Option<IpAddr>) -> Result<UdpSocket, CheckError> {
    let any = if to.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
    let socket = UdpSocket::bind(SocketAddr::new(bind.unwrap_or(any), 0)).await.map_err(CheckError::io("bind"))?;
    socket.connect(to).await.map_err(CheckError::io("connect"))?;
    Ok(socket)
}

/// One UDP_CHECK attempt.
pub async fn check(
    to: SocketAddr,
    bind: Option<IpAddr>,
    timeout: Duration,
    payload: &[u8],
    require_reply: bool,
    reply: Option<&[u8]>,
) -> Result<WeightChange, CheckError> {
    let socket = connected_socket(to, bind).await?;
    socket.send(payload).await.map_err(CheckError::io("send"))?;
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(timeout, socket.recv(&mut buf)).await {
        Err(_) if require_reply => Err(CheckError::Timeout { what: "reply", after: timeout }),
        Err(_) => Ok(WeightChange::Keep),
        Ok(Err(source)) => Err(CheckError::Io { what: "recv", source }),
        Ok(Ok(n)) => match reply {
            Some(want) if require_reply && !buf[..n].starts_with(want) => {
                Err(CheckError::Answer(format!("reply {} does not start with {}", encode_hex(&buf[..n.min(64)]), encode_hex(want))))
            }
            _ => Ok(WeightChange::Keep),
        },
    }
}
