//! TCP_CHECK: the real server accepts a TCP connection within `connect_timeout`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::{CheckError, WeightChange};

/// Opens a TCP connection to `to`, from `bind` when set, within `timeout`.
pub async fn connect(to: SocketAddrV4, bind: Option<Ipv4Addr>, timeout: Duration) -> Result<TcpStream, CheckError> {
    let socket = TcpSocket::new_v4().map_err(CheckError::io("socket"))?;
    if let Some(ip) = bind {
        socket.bind(SocketAddr::from((ip, 0))).map_err(CheckError::io("bind"))?;
    }
    match tokio::time::timeout(timeout, socket.connect(SocketAddr::V4(to))).await {
        Err(_) => Err(CheckError::Timeout { what: "connect", after: timeout }),
        Ok(Err(source)) => Err(CheckError::Io { what: "connect", source }),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// One TCP_CHECK attempt: connect, then close.
pub async fn check(to: SocketAddrV4, bind: Option<Ipv4Addr>, timeout: Duration) -> Result<WeightChange, CheckError> {
    let stream = connect(to, bind, timeout).await?;
    drop(stream);
    Ok(WeightChange::Keep)
}
