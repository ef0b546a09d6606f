//! TCP_CHECK: the real server accepts a TCP connection within `connect_timeout`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::{CheckError, WeightChange};

/// Opens a TCP connection to `to`, from `bind` when set, within `timeout`.
pub async fn connect(to: SocketAddr, bind: Option<IpAddr>, timeout: Duration) -> Result<TcpStream, CheckError> {
    let socket = if to.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(CheckError::io("socket"))?;
    if let Some(ip) = bind {
        socket.bind(SocketAddr::from((ip, 0))).map_err(CheckError::io("bind"))?;
    }
    match tokio::time::timeout(timeout, socket.connect(to)).await {
        Err(_) => Err(CheckError::Timeout { what: "connect", after: timeout }),
        Ok(Err(source)) => Err(CheckError::Io { what: "connect", source }),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// One TCP_CHECK attempt: connect, then close.
pub async fn check(to: SocketAddr, bind: Option<IpAddr>, timeout: Duration) -> Result<WeightChange, CheckError> {
    let stream = connect(to, bind, timeout).await?;
    drop(stream);
    Ok(WeightChange::Keep)
}
