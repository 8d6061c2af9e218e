//! Optional TLS with rustls. ALPN offers `h2` and `http/1.1`: browsers get HTTP/2 (one connection
//! for every tab), and grpc-web or plain HTTP clients that speak only HTTP/1.1 still connect.
//!
//! tonic's own `ServerTlsConfig` offers only `h2`, so the server takes connections that are
//! already TLS: `tls-listener` runs the handshakes concurrently (one slow client does not hold up
//! the others) and with a timeout, on the connections [`connections::accept`] lets in.

use std::{
    io,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll, ready},
};

use anyhow::{Context, bail};
use tls_listener::{AsyncAccept, TlsListener};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        crypto::ring,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    server::TlsStream,
};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

use crate::{config::Config, connections::Connection};

/// The TLS acceptor the config asks for, or None to serve plaintext. Fails when a file cannot be
/// read or holds no usable certificate or key.
pub fn from_config(config: &Config) -> anyhow::Result<Option<TlsAcceptor>> {
    match (&config.tls_cert, &config.tls_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => acceptor(cert, key).map(Some),
        _ => bail!("--tls-cert and --tls-key go together: set both or neither"),
    }
}

/// A TLS acceptor for the PEM certificate chain and private key in these files.
fn acceptor(cert_path: &Path, key_path: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "--tls-cert {}: cannot read PEM certificates",
                cert_path.display()
            )
        })?;
    if certs.is_empty() {
        bail!(
            "--tls-cert {}: no certificate in the file",
            cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_path).with_context(|| {
        format!(
            "--tls-key {}: cannot read a PEM private key",
            key_path.display()
        )
    })?;
    // The provider is named rather than taken from the process default, which is ambiguous when
    // another dependency enables a second one.
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context(
            "--tls-cert/--tls-key: the key does not fit the certificate or is not supported",
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connections made on `connections`. A failed handshake (a plaintext client, a client
/// that does not trust the certificate) drops that connection only.
pub fn incoming(
    connections: impl Stream<Item = io::Result<Connection>> + Send + 'static,
    acceptor: TlsAcceptor,
) -> impl Stream<Item = io::Result<TlsStream<Connection>>> {
    let connections = Accepted(Box::pin(connections));
    TlsListener::new(acceptor, connections).filter_map(|accepted| match accepted {
        Ok((stream, _)) => Some(Ok(stream)),
        Err(tls_listener::Error::ListenerError(err)) => Some(Err(err)),
        Err(err) => {
            tracing::debug!(error = %err, peer = ?err.peer_addr(), "TLS handshake failed");
            None
        }
    })
}

/// The accepted connections, in the shape `tls-listener` takes them.
struct Accepted(Pin<Box<dyn Stream<Item = io::Result<Connection>> + Send>>);

impl AsyncAccept for Accepted {
    type Connection = Connection;
    type Address = Option<SocketAddr>;
    type Error = io::Error;

    fn poll_accept(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<io::Result<(Connection, Option<SocketAddr>)>> {
        match ready!(self.0.as_mut().poll_next(cx)) {
            Some(accepted) => Poll::Ready(accepted.map(|connection| {
                let peer = connection.connect_info().remote_addr();
                (connection, peer)
            })),
            // A listener's connections never end; should they, the server stops with this.
            None => Poll::Ready(Err(io::Error::other("the listener stopped accepting"))),
        }
    }
}
