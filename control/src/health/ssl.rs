//! SSL_GET: HTTP_GET over TLS (rustls with the *ring* provider).
//!
//! As Keepalived does by default, the server's certificate is not verified
//! (any chain, any name, any date is accepted); the handshake signatures are
//! still checked, so the peer must hold the key of the certificate it shows.
//! SNI is `virtualhost` when set (no SNI for a bare IP address).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::{http, tcp, CheckError, WeightChange};
use crate::ha::UrlCheck;

/// One SSL_GET attempt: every URL must pass.
pub async fn check(
    to: SocketAddr,
    bind: Option<IpAddr>,
    timeout: Duration,
    urls: &[UrlCheck],
    virtualhost: Option<&str>,
) -> Result<WeightChange, CheckError> {
    let connector = TlsConnector::from(client_config()?);
    let host = http::host_header(to, virtualhost, 443);
    let name: ServerName<'static> = match virtualhost {
        Some(v) => {
            ServerName::try_from(v.to_owned()).map_err(|e| CheckError::Invalid(format!("virtualhost `{v}` is not a server name: {e}")))?
        }
        None => ServerName::from(to.ip()),
    };
    for url in urls {
        let stream = tcp::connect(to, bind, timeout).await?;
        let exchange = async {
            let tls = connector.connect(name.clone(), stream).await.map_err(|e| CheckError::Tls(e.to_string()))?;
            http::verify(tls, url, &host).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => return Err(CheckError::Timeout { what: "TLS handshake and response", after: timeout }),
            Ok(result) => result?,
        }
    }
    Ok(WeightChange::Keep)
}

/// The shared client config (built once).
fn client_config() -> Result<Arc<ClientConfig>, CheckError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(CheckError::Tls)
}

/// Accepts any server certificate (Keepalived does not verify them either),
/// but verifies the handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
