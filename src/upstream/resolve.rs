//! Name resolution for the upstream client: the system resolver, except that
//! `localhost` and every `*.localhost` name are loopback (RFC 6761 §6.3), so
//! virtual-hosted buckets of a local upstream (`bucket.localhost:9000`)
//! resolve where the system's resolver knows only `localhost` itself.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiAddrs, GaiResolver, Name};
use tower_service::Service;

/// The system resolver with `*.localhost` answered locally.
#[derive(Clone, Debug)]
pub(crate) struct Resolver {
    system: GaiResolver,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            system: GaiResolver::new(),
        }
    }
}

/// Addresses for one name: loopback, or what the system resolver returned.
pub(crate) enum Addrs {
    Loopback(std::array::IntoIter<SocketAddr, 2>),
    System(GaiAddrs),
}

impl Iterator for Addrs {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        match self {
            Addrs::Loopback(addrs) => addrs.next(),
            Addrs::System(addrs) => addrs.next(),
        }
    }
}

/// Whether `name` is `localhost` or under it (case-insensitive, an absolute
/// name's trailing dot allowed).
fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

impl Service<Name> for Resolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if is_localhost(name.as_str()) {
            // The port is set by the connector; IPv4 first, as most local
            // servers listen on 127.0.0.1.
            let addrs = [
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
            ];
            return Box::pin(std::future::ready(Ok(Addrs::Loopback(addrs.into_iter()))));
        }
        let lookup = self.system.call(name);
        Box::pin(async move { lookup.await.map(Addrs::System) })
    }
}

#[cfg(test)]
mod tests {
    use super::is_localhost;

    #[test]
    fn localhost_names() {
        for name in [
            "localhost",
            "LocalHost.",
            "bucket.localhost",
            "a.b.localhost.",
        ] {
            assert!(is_localhost(name), "{name}");
        }
        for name in [
            "localhost.example.com",
            "notlocalhost",
            "example.com",
            "127.0.0.1",
        ] {
            assert!(!is_localhost(name), "{name}");
        }
    }
}
