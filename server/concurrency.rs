//! A cap on the calls one client address has in progress, so that one client cannot take every
//! slot of the server's global limit: two connections opening 1,000 calls each with headers and
//! no body held all 2,000 and locked everyone else out until the request timeout. A call counts
//! from its arrival until its answer starts (a stream: until it is open), as under the global
//! limit; a call past the cap is refused at once and takes no global slot. Plain HTTP (health
//! checks, metrics, the web client's files) is not counted: a probe from a flooding address, or
//! from the proxy all clients share, still gets its answer.

use std::{
    collections::HashMap,
    error::Error,
    fmt,
    future::Future,
    net::{IpAddr, Ipv6Addr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{BoxError, Layer, Service, ServiceExt};

/// The address calls are counted under: an IPv4 address, or the /64 network of an IPv6 one (one
/// host usually has a whole /64 to pick addresses from).
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// The error for a call refused because its address has the most calls it may have; the server
/// answers it with RESOURCE_EXHAUSTED.
#[derive(Debug)]
pub struct AddressBusy {
    /// The cap the address reached.
    pub max: usize,
}

impl fmt::Display for AddressBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this client address has {} calls in progress, the most one address may have",
            self.max
        )
    }
}

impl Error for AddressBusy {}

/// Calls in progress per client address.
#[derive(Debug)]
struct CallsInProgress {
    /// The most one address may have.
    max: usize,
    /// Addresses with calls in progress; an address leaves when its last call does.
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

impl CallsInProgress {
    /// Counts a new call of `address`, unless it already has `max`.
    fn enter(self: &Arc<Self>, address: IpAddr) -> Option<CallSlot> {
        let mut by_address = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let calls = by_address.entry(address).or_default();
        if *calls >= self.max {
            return None;
        }
        *calls += 1;
        Some(CallSlot {
            calls: self.clone(),
            address,
        })
    }
}

/// One call's place under its address's cap, given back when dropped.
struct CallSlot {
    calls: Arc<CallsInProgress>,
    address: IpAddr,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        let mut by_address = self
            .calls
            .by_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(calls) = by_address.get_mut(&self.address) {
            *calls -= 1;
            if *calls == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

/// Limits each client address to `max` calls in progress.
#[derive(Debug, Clone)]
pub struct PerAddressLimitLayer {
    calls: Arc<CallsInProgress>,
}

impl PerAddressLimitLayer {
    /// At most `max` calls in progress per client address (see [`client_network`]).
    pub fn new(max: usize) -> Self {
        Self {
            calls: Arc::new(CallsInProgress {
                max,
                by_address: Mutex::default(),
            }),
        }
    }
}

impl<S> Layer<S> for PerAddressLimitLayer {
    type Service = PerAddressLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PerAddressLimit {
            inner,
            calls: self.calls.clone(),
        }
    }
}

/// The service [`PerAddressLimitLayer`] makes.
#[derive(Debug, Clone)]
pub struct PerAddressLimit<S> {
    inner: S,
    calls: Arc<CallsInProgress>,
}

impl<S, B> Service<http::Request<B>> for PerAddressLimit<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    // Readiness is the inner service's business once a call is let through: asking for it here
    // would take a global slot for a call this layer may refuse.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
        let peer = peer_ip(&request).filter(|_| grpc);
        let slot = match peer {
            Some(ip) => match self.calls.enter(client_network(ip)) {
                Some(slot) => Some(slot),
                None => {
                    let busy = AddressBusy {
                        max: self.calls.max,
                    };
                    return Box::pin(async move { Err(busy.into()) });
                }
            },
            None => None,
        };
        Box::pin(async move {
            let response = inner.oneshot(request).await.map_err(Into::into);
            drop(slot);
            response
        })
    }
}

/// The peer's address, from the connection info tonic puts on each request.
fn peer_ip<B>(request: &http::Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
        extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(|tls| tls.get_ref())
    });
    tcp.and_then(|info| info.remote_addr())
        .map(|addr| addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_network(a), client_network(b));
        assert_ne!(client_network(a), client_network(other));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(
            client_network(mapped),
            "10.0.0.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_address_gets_its_cap_and_its_slots_back() {
        let calls = Arc::new(CallsInProgress {
            max: 2,
            by_address: Mutex::default(),
        });
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let first = calls.enter(one).unwrap();
        let _second = calls.enter(one).unwrap();
        assert!(calls.enter(one).is_none());
        assert!(
            calls.enter(two).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert!(calls.enter(one).is_some());
    }
}
