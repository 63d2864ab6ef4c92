//! Outbound HTTP with SSRF protection: every address a request would reach — after DNS
//! resolution, for IP literals, and on every redirect — must be public unless the operator's
//! allowlist names it. Checking resolved addresses inside the client's own resolver means the
//! connection goes to exactly the addresses that were checked, so a hostname that resolves to a
//! public address once and to 127.0.0.1 the next time (DNS rebinding) cannot slip through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an outbound request was refused before it was sent.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NetError {
    /// The URL is not http(s) or has no host.
    #[error("{0}")]
    BadUrl(String),
    /// The destination is a private, loopback, link-local or otherwise internal address.
    #[error("refused to connect to {host} ({ip}): {class} addresses are blocked to prevent server-side request forgery; an operator can allow it with ORCHEO_HTTP_ALLOW (e.g. ORCHEO_HTTP_ALLOW={ip})")]
    Blocked {
        /// The host as written.
        host: String,
        /// The address it reached.
        ip: IpAddr,
        /// What kind of address it is.
        class: &'static str,
    },
    /// An allowlist entry does not parse.
    #[error("`{0}` in the HTTP allowlist is not an IP address or CIDR range (examples: 127.0.0.1, 10.0.0.0/8, ::1, *)")]
    BadAllow(String),
    /// DNS gave nothing.
    #[error("cannot resolve host `{0}`")]
    Unresolved(String),
}

/// An IP range: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (s, None),
        };
        let net: IpAddr = ip.trim_matches(['[', ']']).parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max)?,
            None => max,
        };
        Some(Cidr { net, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => prefix_eq(&n.octets(), &i.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(i)) => prefix_eq(&n.octets(), &i.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// Which internal addresses outbound requests may reach; everything public is always allowed.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    allow: Vec<Cidr>,
    allow_all: bool,
}

impl NetPolicy {
    /// A policy from allowlist entries: IP addresses, CIDR ranges, or `*` to allow every
    /// address (the operator opts out of SSRF protection).
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<NetPolicy, NetError> {
        let mut p = NetPolicy::default();
        for e in entries {
            let e = e.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            if e == "*" {
                p.allow_all = true;
                continue;
            }
            p.allow
                .push(Cidr::parse(e).ok_or_else(|| NetError::BadAllow(e.to_string()))?);
        }
        Ok(p)
    }

    /// Whether a connection to `ip` is allowed; the error says why not.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), NetError> {
        let ip = canonical(ip);
        let Some(class) = internal_class(ip) else {
            return Ok(());
        };
        if self.allow_all || self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        Err(NetError::Blocked {
            host: host.to_string(),
            ip,
            class,
        })
    }

    /// Checks a URL before it is requested: http(s) only, and a literal IP host must be
    /// allowed (names are checked when they resolve).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), NetError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NetError::BadUrl(format!(
                "`{}` is not an http or https URL",
                redact(url)
            )));
        }
        let Some(host) = url.host_str() else {
            return Err(NetError::BadUrl(format!("`{}` has no host", redact(url))));
        };
        match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => self.check_ip(host, ip),
            // Names are checked when they resolve.
            Err(_) => Ok(()),
        }
    }

    /// A client builder with this policy wired in: a resolver that checks every resolved
    /// address and a redirect policy that checks every hop (at most `max_redirects`).
    pub fn apply(
        &self,
        builder: reqwest::ClientBuilder,
        max_redirects: usize,
    ) -> reqwest::ClientBuilder {
        let me = Arc::new(self.clone());
        let hops = me.clone();
        builder
            .dns_resolver(Arc::new(Guarded(me)))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > max_redirects {
                    let n = attempt.previous().len() - 1;
                    return attempt.error(format!("stopped after {n} redirects"));
                }
                match hops.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            }))
    }
}

/// A client that cannot be used without the policy: every request's URL is checked (IP
/// literals are not resolved, so the resolver alone would miss them), names are checked when
/// they resolve, and redirects on every hop.
#[derive(Clone, Debug)]
pub struct GuardedClient {
    client: reqwest::Client,
    /// The same, but answering redirects instead of following them.
    no_redirect: reqwest::Client,
    policy: Arc<NetPolicy>,
}

impl GuardedClient {
    /// A client with `policy` wired in (user agent, 10 s connect timeout, at most 10 redirects).
    pub fn new(policy: NetPolicy) -> Result<GuardedClient, String> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("orcheo/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(std::time::Duration::from_secs(10))
        };
        let client = policy
            .apply(builder(), 10)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let no_redirect = builder()
            .dns_resolver(Arc::new(Guarded(Arc::new(policy.clone()))))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(GuardedClient {
            client,
            no_redirect,
            policy: Arc::new(policy),
        })
    }

    /// A client from allowlist entries.
    pub fn from_allowlist<S: AsRef<str>>(entries: &[S]) -> Result<GuardedClient, String> {
        GuardedClient::new(NetPolicy::new(entries).map_err(|e| e.to_string())?)
    }

    /// A request to `url`, refused when the URL's scheme or literal address is not allowed.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
    ) -> Result<reqwest::RequestBuilder, NetError> {
        self.policy.check_url(&url)?;
        Ok(self.client.request(method, url))
    }

    /// A request that answers a redirect with its 3xx response instead of following it.
    pub fn request_no_redirect(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
    ) -> Result<reqwest::RequestBuilder, NetError> {
        self.policy.check_url(&url)?;
        Ok(self.no_redirect.request(method, url))
    }

    /// The client itself (resolver and redirect guards in place, but no URL check): for code
    /// that checks each URL with [`GuardedClient::policy`] first.
    pub fn unchecked(&self) -> &reqwest::Client {
        &self.client
    }

    /// The policy.
    pub fn policy(&self) -> &NetPolicy {
        &self.policy
    }
}

/// IPv4-mapped and IPv4-compatible IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                if s[..6] == [0, 0, 0, 0, 0, 0] && !(v6.is_loopback() || v6.is_unspecified()) {
                    IpAddr::V4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])))
                } else {
                    ip
                }
            }
        },
        v4 => v4,
    }
}

/// What kind of internal address `ip` is, or `None` for a public one.
fn internal_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_broadcast() || v4.is_multicast() || o[0] >= 240 {
                Some("broadcast, multicast or reserved")
            } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
                Some("IETF protocol")
            } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
                Some("benchmarking")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6 == Ipv6Addr::LOCALHOST {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                Some("NAT64")
            } else {
                None
            }
        }
    }
}

/// The client's resolver: resolves with the system resolver, then refuses the lookup when any
/// address is not allowed (so the connection can only go to checked addresses).
struct Guarded(Arc<NetPolicy>);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(NetError::Unresolved(host)) as _);
            }
            for a in &addrs {
                policy
                    .check_ip(&host, a.ip())
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A URL fit for messages and logs: without user info, query and fragment, which may carry
/// credentials.
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// A request error in plain words: the innermost causes joined, so a refusal by the policy
/// reads as the policy's message rather than "error sending request".
pub fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".into());
    }
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = src {
        last = Some(s.to_string());
        src = s.source();
    }
    match last {
        Some(l) => parts.push(l),
        None => parts.push(e.to_string()),
    }
    let mut text = parts.join(": ");
    if let Some(u) = e.url() {
        text = format!("{text} ({})", redact(u));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_blocked_and_public_ones_pass() {
        let p = NetPolicy::default();
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            assert!(p.check_ip("h", ip(bad)).is_err(), "{bad} must be blocked");
        }
        for good in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert!(p.check_ip("h", ip(good)).is_ok(), "{good} must pass");
        }
    }

    #[test]
    fn the_allowlist_opens_exactly_what_it_names() {
        let p = NetPolicy::new(&["127.0.0.1", "10.1.0.0/16", "::1"]).unwrap();
        assert!(p.check_ip("h", ip("127.0.0.1")).is_ok());
        assert!(p.check_ip("h", ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check_ip("h", ip("127.0.0.2")).is_err());
        assert!(p.check_ip("h", ip("10.1.200.3")).is_ok());
        assert!(p.check_ip("h", ip("10.2.0.1")).is_err());
        assert!(p.check_ip("h", ip("::1")).is_ok());
        assert!(p.check_ip("h", ip("169.254.169.254")).is_err());
        let all = NetPolicy::new(&["*"]).unwrap();
        assert!(all.check_ip("h", ip("169.254.169.254")).is_ok());
        assert_eq!(
            NetPolicy::new(&["10.0.0.0/33"]).unwrap_err(),
            NetError::BadAllow("10.0.0.0/33".into())
        );
        assert!(NetPolicy::new(&["example.com"]).is_err());
    }

    #[test]
    fn the_refusal_names_the_host_the_address_and_the_fix() {
        let e = NetPolicy::default()
            .check_ip("metadata.internal", ip("169.254.169.254"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata.internal"), "{e}");
        assert!(e.contains("169.254.169.254"), "{e}");
        assert!(e.contains("link-local"), "{e}");
        assert!(e.contains("ORCHEO_HTTP_ALLOW"), "{e}");
    }

    #[test]
    fn urls_are_checked_for_scheme_and_literal_hosts() {
        let p = NetPolicy::default();
        let u = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(p.check_url(&u("file:///etc/passwd")).is_err());
        assert!(p.check_url(&u("http://127.0.0.1:80/x")).is_err());
        assert!(p.check_url(&u("http://[::1]/x")).is_err());
        assert!(
            p.check_url(&u("http://2130706433/")).is_err(),
            "decimal 127.0.0.1"
        );
        assert!(p.check_url(&u("https://example.com/")).is_ok());
        assert_eq!(
            redact(&u("https://user:pw@example.com/a?token=x#f")),
            "https://example.com/a"
        );
    }
}
