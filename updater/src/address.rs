//! Which coordinator to talk to. `--coordinator` names one or more addresses
//! (`https://a:7400,https://b:7400`); each DNS name is resolved at every (re)connect and
//! counts as one endpoint per address it resolves to. A connection goes to the endpoint's
//! IP, but TLS verifies the server's certificate for the configured name (and HTTP/2 sends
//! it as the authority), so certificate checks are the same as with one address.
//!
//! `next_address` (pure) picks the endpoint: round-robin from a random start, never the
//! one that just failed while another exists.

use std::{fmt, net::IpAddr};

use anyhow::{Context, bail};
use tonic::codegen::http::Uri;

/// One configured address, as given (`https://coordinator:7400`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub url: String,
    https: bool,
    host: String,
    port: u16,
}

/// The coordinators to try, in the order given; all `https://` or all `http://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinators(Vec<Address>);

impl Coordinators {
    /// Parses a comma-separated list of `http(s)://HOST[:PORT]` addresses.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut addresses: Vec<Address> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let address = Address::parse(part)?;
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        let Some(first) = addresses.first() else {
            bail!("no coordinator address given; use e.g. https://coordinator:7400");
        };
        if addresses.iter().any(|a| a.https != first.https) {
            bail!(
                "'{text}' mixes https:// and http:// addresses; replicas of one coordinator \
                 all serve TLS (or all run --insecure)"
            );
        }
        Ok(Self(addresses))
    }

    /// True when the coordinators serve TLS.
    pub fn https(&self) -> bool {
        self.0[0].https
    }

    /// The first address (enrolment and CA pinning use it).
    pub fn first(&self) -> &str {
        &self.0[0].url
    }

    pub fn addresses(&self) -> &[Address] {
        &self.0
    }

    /// Every endpoint the addresses resolve to now, in a stable order (a name's addresses
    /// sorted). A name that does not resolve is logged and left out; an empty answer means
    /// none resolved.
    pub async fn resolve(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for address in &self.0 {
            match address.resolve().await {
                Ok(found) => {
                    for target in found {
                        if !targets.contains(&target) {
                            targets.push(target);
                        }
                    }
                }
                Err(err) => tracing::warn!(
                    coordinator = %address.url,
                    error = format!("{err:#}"),
                    "cannot resolve a coordinator address"
                ),
            }
        }
        targets
    }
}

impl fmt::Display for Coordinators {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<&str> = self.0.iter().map(|a| a.url.as_str()).collect();
        f.write_str(&urls.join(","))
    }
}

impl Address {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let invalid =
            || format!("'{text}' is not a valid coordinator address; use e.g. https://HOST:7400");
        let uri: Uri = text.parse().with_context(invalid)?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("{}: give the scheme, https:// or http://", invalid()),
        };
        if uri
            .path_and_query()
            .is_some_and(|p| !matches!(p.as_str(), "" | "/"))
        {
            bail!("{}: give no path", invalid());
        }
        let host = uri
            .host()
            .with_context(invalid)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let authority = uri.authority().map_or("", |a| a.as_str());
        let port = match (uri.port_u16(), authority.rsplit_once(':')) {
            (Some(port), _) => port,
            // A colon after the host (not inside an IPv6 address) must bring a number.
            (None, Some((_, tail))) if !tail.contains(']') => bail!("{}: bad port", invalid()),
            (None, _) => {
                if https {
                    443
                } else {
                    80
                }
            }
        };
        Ok(Self {
            url: text.trim_end_matches('/').to_string(),
            https,
            host,
            port,
        })
    }

    async fn resolve(&self) -> anyhow::Result<Vec<Target>> {
        if self.host.parse::<IpAddr>().is_ok() {
            return Ok(vec![Target {
                address: self.url.clone(),
                url: self.url.clone(),
                tls_name: None,
            }]);
        }
        let mut found: Vec<_> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot resolve {}", self.host))?
            .collect();
        found.sort();
        found.dedup();
        if found.is_empty() {
            bail!("{} resolves to no address", self.host);
        }
        let scheme = if self.https { "https" } else { "http" };
        Ok(found
            .into_iter()
            .map(|ip| Target {
                address: self.url.clone(),
                url: format!("{scheme}://{ip}"),
                tls_name: Some(self.host.clone()),
            })
            .collect())
    }
}

/// One endpoint to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The configured address it came from (sent as the HTTP/2 authority).
    pub address: String,
    /// Where to connect: the address itself, or `scheme://IP:PORT` for a DNS name.
    pub url: String,
    /// The name TLS verifies the server's certificate for, when `url` is a resolved IP.
    pub tls_name: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.url == self.address {
            f.write_str(&self.address)
        } else {
            write!(f, "{} ({})", self.address, self.url)
        }
    }
}

/// The index of the endpoint to try next among `targets` (non-empty): the one after
/// `last` (the endpoint tried last, which just failed or whose session ended), or a random
/// start (`random` uniform in [0, 1)) when there is none or it is gone from the list.
/// With more than one endpoint, the answer is never `last`.
pub fn next_address<T: PartialEq>(targets: &[T], last: Option<&T>, random: f64) -> usize {
    let count = targets.len().max(1);
    match last.and_then(|last| targets.iter().position(|t| t == last)) {
        Some(at) => (at + 1) % count,
        None => ((random.clamp(0.0, 1.0) * count as f64) as usize).min(count - 1),
    }
}

/// Failures counted in rounds over the endpoints: the updater tries each endpoint in turn
/// and waits (the jittered exponential backoff) only once a whole round has failed.
#[derive(Debug, Default)]
pub struct Rounds {
    /// Whole rounds failed since the last stable session.
    attempt: u32,
    failed_in_round: usize,
}

impl Rounds {
    /// After a session with one of `endpoints` ended (or never started): `Some(n)` when the
    /// round is complete and the updater should wait `Backoff::delay(n, …)`; `None` to try
    /// the next endpoint at once. A `stable` session (up a while) starts afresh.
    pub fn ended(&mut self, endpoints: usize, stable: bool) -> Option<u32> {
        if stable {
            *self = Self::default();
        }
        self.failed_in_round += 1;
        if self.failed_in_round < endpoints {
            return None;
        }
        self.failed_in_round = 0;
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        Some(attempt)
    }
}

#[cfg(test)]
mod tests;
