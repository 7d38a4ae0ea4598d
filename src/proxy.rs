//! HTTP proxies: which proxy (if any) an upload goes through, decided from the options and
//! the environment by curl's rules, and the proxy URL itself. Pure: the environment comes
//! in as a lookup function, so every rule is table-tested without touching the process.
//!
//! The rules (curl's, which Go's `httpproxy` and reqwest's matcher also follow):
//!
//! 1. For an `http://` target the variable is `http_proxy`, lower case only: in a CGI
//!    program a request header `Proxy:` arrives as `HTTP_PROXY`, so the upper-case
//!    spelling is never read (httpoxy, CVE-2016-5385). When `REQUEST_METHOD` is set (a
//!    CGI environment) `http_proxy` is not read either.
//! 2. For an `https://` target: `https_proxy`, then `HTTPS_PROXY`.
//! 3. Then, for either: `all_proxy`, then `ALL_PROXY`. The lower-case spelling wins
//!    whenever both are set; an empty value counts as unset.
//! 4. `no_proxy`, then `NO_PROXY` (an empty value again counts as unset): a
//!    comma-separated list of hosts reached directly. `*`
//!    is every host. A name matches itself and every name under it on a label boundary
//!    (`example.com` matches `www.example.com`, not `www.notexample.com`); a leading dot
//!    (`.example.com`) means the same. An IPv4 or IPv6 address (without brackets, or
//!    with) matches that address, and `10.0.0.0/8` or `fd00::/8` a range; names are never
//!    resolved to compare. An entry may end in `:port` to match that port only.
//! 5. An explicit proxy (the `-x` option, [`crate::ClientBuilder::proxy`]) replaces the
//!    variables, and the no-proxy list applies to it too, as in curl; an explicit
//!    no-proxy list (`--noproxy`) replaces the variables' (`""` sends everything through
//!    the proxy).
//! 6. A proxy URL is `[scheme://][user:password@]host[:port]`. The scheme is `http` (the
//!    default) or `https` (TLS to the proxy); `socks*` is refused clearly. Without a port,
//!    curl's defaults: 1080, or 443 for an https proxy. The credentials are
//!    percent-decoded and sent as `Proxy-Authorization: Basic` to the proxy only.

use std::fmt;
use std::net::IpAddr;

use crate::error::RequestError;
use crate::target::{Credentials, Scheme, Target, redact_userinfo};

/// The port of a proxy URL without one (curl's default for HTTP proxies).
pub const DEFAULT_PROXY_PORT: u16 = 1080;
/// The port of an `https://` proxy URL without one (curl's default for HTTPS proxies).
pub const DEFAULT_HTTPS_PROXY_PORT: u16 = 443;

/// A proxy to send uploads through: its scheme, address and credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    scheme: Scheme,
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.to_string())
            .finish()
    }
}

/// `scheme://[user:***@]host:port`: the password is never shown.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if let Some(credentials) = &self.credentials {
            write!(f, "{}:***@", credentials.user)?;
        }
        f.write_str(&self.authority())
    }
}

fn invalid_proxy(url: &str, reason: impl Into<String>) -> RequestError {
    RequestError::InvalidOption {
        option: "proxy",
        reason: format!("{:?}: {}", redact_userinfo(url), reason.into()),
    }
}

impl Proxy {
    /// Parses `[scheme://][user:password@]host[:port]` (rule 6 of the module docs).
    pub fn parse(url: &str) -> Result<Proxy, RequestError> {
        let url = url.trim();
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("http".to_owned(), url),
        };
        let scheme = match scheme.as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            s if s.starts_with("socks") => {
                return Err(invalid_proxy(
                    url,
                    "SOCKS proxies are not supported (only http:// and https:// proxies)",
                ));
            }
            other => {
                return Err(invalid_proxy(
                    url,
                    format!("unsupported proxy scheme {other:?} (expected http or https)"),
                ));
            }
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if !path.is_empty() && path != "/" {
            return Err(invalid_proxy(url, "a proxy URL has no path or query"));
        }
        let host_and_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let explicit_port = match host_and_port.strip_prefix('[') {
            Some(bracketed) => bracketed
                .split_once(']')
                .is_some_and(|(_, after)| after.len() > 1),
            None => host_and_port
                .split_once(':')
                .is_some_and(|(_, port)| !port.is_empty()),
        };
        let target = Target::parse(&format!("{}://{authority}/", scheme.as_str()))
            .map_err(|e| invalid_proxy(url, e.to_string()))?;
        let port = match (explicit_port, scheme) {
            (true, _) => target.port,
            (false, Scheme::Http) => DEFAULT_PROXY_PORT,
            (false, Scheme::Https) => DEFAULT_HTTPS_PROXY_PORT,
        };
        Ok(Proxy {
            scheme,
            host: target.host,
            port,
            credentials: target.credentials,
        })
    }

    /// The same proxy with these credentials (curl's `-U user:password`), in place of any
    /// the URL had.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        });
        self
    }

    /// `http` (plain TCP to the proxy) or `https` (TLS to the proxy).
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The proxy's host: a name, or an address literal without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The credentials sent to the proxy, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// `host:port`, with brackets around an IPv6 literal.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One entry of a no-proxy list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: every host.
    Everything,
    /// A name and the names under it, lower case, without leading or trailing dot.
    Domain(String),
    /// An address, or a range of `bits` leading bits.
    Network { address: IpAddr, bits: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// As written, for messages.
    text: String,
    pattern: Pattern,
    port: Option<u16>,
}

/// The hosts reached directly even when a proxy is set (rule 4 of the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<Entry>,
}

impl NoProxy {
    /// Reads a comma-separated list. Entries that can match nothing (empty ones, a port
    /// that is not a number, a bad range) are skipped, as curl skips them.
    pub fn parse(list: &str) -> NoProxy {
        let entries = list
            .split(',')
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .filter_map(parse_entry)
            .collect();
        NoProxy { entries }
    }

    /// True when the list has no entry (every host goes through the proxy).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry (as written) that sends `host` on `port` direct, if one does. `host` is
    /// as [`Target::host`] holds it: lower case, IPv6 without brackets.
    pub fn matching(&self, host: &str, port: u16) -> Option<&str> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let address = host.parse::<IpAddr>().ok();
        self.entries
            .iter()
            .find(|entry| {
                entry.port.is_none_or(|p| p == port)
                    && match &entry.pattern {
                        Pattern::Everything => true,
                        Pattern::Domain(domain) => {
                            address.is_none()
                                && (host == *domain
                                    || host
                                        .strip_suffix(domain.as_str())
                                        .is_some_and(|under| under.ends_with('.')))
                        }
                        Pattern::Network { address: net, bits } => {
                            address.is_some_and(|a| in_network(a, *net, *bits))
                        }
                    }
            })
            .map(|entry| entry.text.as_str())
    }
}

fn parse_entry(text: &str) -> Option<Entry> {
    let entry = |pattern, port| Entry {
        text: text.to_owned(),
        pattern,
        port,
    };
    if text == "*" {
        return Some(entry(Pattern::Everything, None));
    }
    // `[v6]:port`, `[v6]`, bare `v6` (curl's spelling), `v6/bits`, `v4/bits:port`...
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']')?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?.parse().ok()?),
        };
        (inside, port)
    } else if text.matches(':').count() > 1 {
        (text, None) // an unbracketed IPv6 address or range
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse().ok()?)),
            None => (text, None),
        }
    };
    let (address, bits) = match host.split_once('/') {
        Some((address, bits)) => (address, Some(bits)),
        None => (host, None),
    };
    if let Ok(address) = address.parse::<IpAddr>() {
        let max = if address.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(bits) => bits.parse::<u8>().ok().filter(|&b| b <= max)?,
        };
        return Some(entry(Pattern::Network { address, bits }, port));
    }
    if bits.is_some() {
        return None; // a range of something that is not an address
    }
    let domain = host
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!domain.is_empty()).then(|| entry(Pattern::Domain(domain), port))
}

fn in_network(address: IpAddr, network: IpAddr, bits: u8) -> bool {
    let (address, network, width) = match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            (u128::from(u32::from(a)), u128::from(u32::from(n)), 32u32)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    let bits = u32::from(bits);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (address >> shift) == (network >> shift)
}

/// What an upload with trailers (a checksum) does when its proxy would get it in absolute
/// form. Forward proxies do not pass a request's trailers on: squid 5.7 forwards the body
/// without them, tinyproxy 1.11.1 stops forwarding in the middle of the trailer section
/// (the upload stalls), pproxy 2.7.9 happens to pass them through. Inside a CONNECT tunnel
/// the proxy only moves bytes and trailers arrive as sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyTrailers {
    /// Go through a CONNECT tunnel instead, so the trailers arrive (the default). A proxy
    /// that allows no CONNECT to the origin's port refuses it with an error that says so:
    /// never a checksum lost without a word.
    #[default]
    Tunnel,
    /// Refuse the upload before anything is sent.
    Refuse,
    /// Send in absolute form anyway, knowing the proxy may drop or stall on them.
    SendAnyway,
}

/// Where a proxy setting came from, for `-v` and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxySource {
    /// Given to the client ([`crate::ClientBuilder::proxy`], `-x`).
    Option,
    /// Read from this environment variable.
    Variable(&'static str),
}

impl fmt::Display for ProxySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySource::Option => f.write_str("the proxy option"),
            ProxySource::Variable(name) => write!(f, "the environment variable {name}"),
        }
    }
}

/// A setting and where it came from; an unparsable proxy URL is kept as its error, which
/// is reported when a target would use it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sourced<T> {
    value: T,
    source: ProxySource,
}

/// The proxy variables of an environment, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProxyEnvironment {
    http: Option<Sourced<Result<Proxy, RequestError>>>,
    https: Option<Sourced<Result<Proxy, RequestError>>>,
    /// Set when `http_proxy` was present but not read because of `REQUEST_METHOD`.
    cgi_guarded: bool,
    no_proxy: Option<Sourced<NoProxy>>,
}

impl ProxyEnvironment {
    /// Reads the variables through `lookup` (rules 1 to 4).
    pub(crate) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> ProxyEnvironment {
        let get = |name: &'static str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .map(|value| (value, name))
        };
        let proxy = |(value, name): (String, &'static str)| Sourced {
            value: Proxy::parse(&value),
            source: ProxySource::Variable(name),
        };
        let cgi = lookup("REQUEST_METHOD").is_some();
        let all = || get("all_proxy").or_else(|| get("ALL_PROXY"));
        let http_variable = get("http_proxy");
        let cgi_guarded = cgi && http_variable.is_some();
        let http = if cgi { None } else { http_variable }.or_else(all);
        let https = get("https_proxy")
            .or_else(|| get("HTTPS_PROXY"))
            .or_else(all);
        // An empty no_proxy is unset, as curl and Go's httpproxy read it: NO_PROXY applies.
        let no_proxy = get("no_proxy")
            .or_else(|| get("NO_PROXY"))
            .map(|(value, name)| Sourced {
                value: NoProxy::parse(&value),
                source: ProxySource::Variable(name),
            });
        ProxyEnvironment {
            http: http.map(proxy),
            https: https.map(proxy),
            cgi_guarded,
            no_proxy,
        }
    }
}

/// What decides the proxy of each upload of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyRules {
    /// The proxy given to the client, for every target.
    pub(crate) explicit: Option<Proxy>,
    /// The no-proxy list given to the client, in place of the environment's.
    pub(crate) no_proxy: Option<NoProxy>,
    /// The environment as read when the client was built; `None` when turned off.
    pub(crate) environment: Option<ProxyEnvironment>,
    /// CONNECT tunnels for http:// targets too (curl's `--proxytunnel`).
    pub(crate) tunnel_http: bool,
    /// Credentials for whichever proxy applies (curl's `-U`), in place of the URL's.
    pub(crate) credentials: Option<Credentials>,
    /// What an upload with trailers does in absolute form.
    pub(crate) trailers: ProxyTrailers,
}

impl Default for ProxyRules {
    fn default() -> Self {
        ProxyRules {
            explicit: None,
            no_proxy: None,
            environment: Some(ProxyEnvironment::default()),
            tunnel_http: false,
            credentials: None,
            trailers: ProxyTrailers::default(),
        }
    }
}

/// How an upload reaches its target, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The proxy, or `None` for a direct connection.
    pub proxy: Option<Proxy>,
    /// True when the proxy carries a CONNECT tunnel (https targets, or `--proxytunnel`);
    /// false for an http target sent to the proxy in absolute form.
    pub tunnel: bool,
    /// Why, in words, for `-v`.
    pub reason: String,
    /// False when no proxy was set for the target's scheme at all (nothing to explain);
    /// true when one was used, or skipped for a reason (a no-proxy entry, the CGI guard).
    pub considered: bool,
}

impl ProxyRules {
    /// The route of an upload to `target` that sends trailers (`trailers`): as
    /// [`ProxyRules::route`], with [`ProxyTrailers`] applied to absolute form.
    pub(crate) fn route_with_trailers(
        &self,
        target: &Target,
        trailers: bool,
    ) -> Result<Route, RequestError> {
        let mut route = self.route(target)?;
        if !trailers || route.proxy.is_none() || route.tunnel {
            return Ok(route);
        }
        match self.trailers {
            ProxyTrailers::Tunnel => {
                route.tunnel = true;
                route.reason.push_str(
                    "; through a CONNECT tunnel because the upload has trailers, which forward \
                     proxies drop or stall on",
                );
            }
            ProxyTrailers::Refuse => {
                return Err(RequestError::InvalidOption {
                    option: "trailers",
                    reason: format!(
                        "the upload to {} would go to the proxy in absolute form, and forward \
                         proxies drop trailers (or stall on them); use a tunnel, or send them anyway",
                        target.authority()
                    ),
                });
            }
            ProxyTrailers::SendAnyway => route
                .reason
                .push_str("; with trailers in absolute form, which the proxy may drop or stall on"),
        }
        Ok(route)
    }

    /// The route of `target`: an error when the proxy that applies cannot be parsed.
    pub(crate) fn route(&self, target: &Target) -> Result<Route, RequestError> {
        let env = self.environment.as_ref();
        let chosen = match &self.explicit {
            Some(proxy) => Some(Sourced {
                value: Ok(proxy.clone()),
                source: ProxySource::Option,
            }),
            None => env.and_then(|env| match target.scheme {
                Scheme::Http => env.http.clone(),
                Scheme::Https => env.https.clone(),
            }),
        };
        let Some(Sourced { value, source }) = chosen else {
            let guarded = env.is_some_and(|env| env.cgi_guarded) && target.scheme == Scheme::Http;
            let reason = match env {
                Some(_) if guarded => {
                    "direct: http_proxy is not read when REQUEST_METHOD is set (a CGI \
                     environment, httpoxy)"
                }
                Some(_) => "direct: no proxy is set for this scheme",
                None => "direct: no proxy given and the environment is not read",
            };
            let mut route = direct(reason.to_owned());
            route.considered = guarded;
            return Ok(route);
        };
        let proxy = value.map_err(|e| match e {
            RequestError::InvalidOption { reason, .. } => RequestError::InvalidOption {
                option: "proxy",
                reason: format!("{reason} (from {source})"),
            },
            other => other,
        })?;
        let no_proxy = match &self.no_proxy {
            Some(list) => Some((list, "the no-proxy option".to_owned())),
            None => env
                .and_then(|env| env.no_proxy.as_ref())
                .map(|s| (&s.value, s.source.to_string())),
        };
        if let Some((list, list_source)) = no_proxy
            && let Some(entry) = list.matching(&target.host, target.port)
        {
            let mut route = direct(format!(
                "direct: {} matches {entry:?} in {list_source}",
                target.authority()
            ));
            route.considered = true;
            return Ok(route);
        }
        let tunnel = target.scheme == Scheme::Https || self.tunnel_http;
        let how = if tunnel {
            "a CONNECT tunnel"
        } else {
            "absolute-form requests"
        };
        Ok(Route {
            reason: format!("via proxy {proxy} ({how}), from {source}"),
            proxy: Some(proxy),
            tunnel,
            considered: true,
        })
    }
}

fn direct(reason: String) -> Route {
    Route {
        proxy: None,
        tunnel: false,
        reason,
        considered: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> ProxyEnvironment {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ProxyEnvironment::read(&move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn route(vars: &[(&str, &str)], url: &str) -> Route {
        let rules = ProxyRules {
            environment: Some(env(vars)),
            ..ProxyRules::default()
        };
        rules.route(&Target::parse(url).unwrap()).unwrap()
    }

    fn via(vars: &[(&str, &str)], url: &str) -> Option<String> {
        route(vars, url).proxy.map(|p| p.authority())
    }

    #[test]
    fn proxy_urls_parse_by_curls_rules() {
        /// URL, then the scheme, host, port and credentials it parses to.
        type Case = (
            &'static str,
            Scheme,
            &'static str,
            u16,
            Option<(&'static str, &'static str)>,
        );
        let cases: &[Case] = &[
            ("proxy.example", Scheme::Http, "proxy.example", 1080, None),
            (
                "proxy.example:3128",
                Scheme::Http,
                "proxy.example",
                3128,
                None,
            ),
            ("http://p:8080/", Scheme::Http, "p", 8080, None),
            ("HTTP://P", Scheme::Http, "p", 1080, None),
            ("https://p", Scheme::Https, "p", 443, None),
            ("https://p:8443", Scheme::Https, "p", 8443, None),
            ("[::1]:3128", Scheme::Http, "::1", 3128, None),
            ("http://[::1]", Scheme::Http, "::1", 1080, None),
            ("p:", Scheme::Http, "p", 1080, None),
            ("u:p%40ss@p:1", Scheme::Http, "p", 1, Some(("u", "p@ss"))),
            ("http://us%3Aer@p", Scheme::Http, "p", 1080, None),
            (
                "http://a%20b:c@p",
                Scheme::Http,
                "p",
                1080,
                Some(("a b", "c")),
            ),
        ];
        for (url, scheme, host, port, credentials) in cases {
            let parsed = Proxy::parse(url);
            if url.contains("%3A") {
                // A user name with ':' cannot be carried by Basic authentication.
                assert!(parsed.is_err(), "{url}");
                continue;
            }
            let proxy = parsed.unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(proxy.scheme(), *scheme, "{url}");
            assert_eq!(proxy.host(), *host, "{url}");
            assert_eq!(proxy.port(), *port, "{url}");
            let got = proxy
                .credentials()
                .map(|c| (c.user.as_str(), c.password.as_str()));
            assert_eq!(got, *credentials, "{url}");
        }
        for bad in [
            "socks5://p:1080",
            "socks5h://p",
            "ftp://p",
            "http://p/path",
            "",
            "http://p:99999",
        ] {
            let err = Proxy::parse(bad).unwrap_err().to_string();
            assert!(err.contains("proxy"), "{bad}: {err}");
        }
        assert!(
            Proxy::parse("socks5://p")
                .unwrap_err()
                .to_string()
                .contains("SOCKS proxies are not supported")
        );
        let shown = Proxy::parse("http://me:secret@p:3128").unwrap();
        assert_eq!(shown.to_string(), "http://me:***@p:3128");
        assert!(!format!("{shown:?}").contains("secret"));
        let err = Proxy::parse("ftp://me:secret@p").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(
            shown.credentials().unwrap().basic_authorization(),
            "Basic bWU6c2VjcmV0",
            "base64 of me:secret"
        );
        let replaced = shown.with_credentials("other", "pw");
        assert_eq!(replaced.credentials().unwrap().user, "other");
    }

    /// Cases from curl's documentation of `--noproxy` and `CURLOPT_NOPROXY`: "ample.com"
    /// matches ample.com, ample.com:80 and www.ample.com, not www.example.com or
    /// ample.com.org; a leading dot is a domain match that includes the name itself;
    /// IPv6 addresses without brackets; CIDR ranges since 7.86.0; `*` matches all.
    #[test]
    fn no_proxy_matching_follows_curls_documentation() {
        let cases: &[(&str, &str, u16, bool)] = &[
            ("ample.com", "ample.com", 80, true),
            ("ample.com", "www.ample.com", 443, true),
            ("ample.com", "a.b.ample.com", 80, true),
            ("ample.com", "www.example.com", 80, false),
            ("ample.com", "ample.com.org", 80, false),
            ("ample.com", "xample.com", 80, false),
            ("local.com", "www.notlocal.com", 80, false),
            (".example.com", "www.example.com", 80, true),
            (".example.com", "example.com", 80, true),
            ("EXAMPLE.com", "www.example.com", 80, true),
            ("example.com.", "www.example.com", 80, true),
            ("example.com", "example.com.", 80, true),
            ("*", "anything.example", 1, true),
            ("*", "::1", 1, true),
            ("other.org, example.com", "example.com", 80, true),
            ("other.org,,  ,example.com ", "www.example.com", 80, true),
            ("example.com,::1,localhost", "::1", 8080, true),
            ("example.com,::1,localhost", "localhost", 8080, true),
            ("example.com,::1,localhost", "127.0.0.1", 8080, false),
            ("[::1]", "::1", 80, true),
            ("[::1]:8080", "::1", 8080, true),
            ("[::1]:8080", "::1", 8081, false),
            ("::1", "::2", 80, false),
            ("192.168.0.0/16", "192.168.3.4", 80, true),
            ("192.168.0.0/16", "192.169.0.1", 80, false),
            ("192.168.1.1", "192.168.1.1", 80, true),
            ("192.168.1.1", "192.168.1.10", 80, false),
            ("10.0.0.0/8", "10.255.0.1", 80, true),
            ("0.0.0.0/0", "8.8.8.8", 80, true),
            ("fd00::/8", "fd12::1", 80, true),
            ("fd00::/8", "fe80::1", 80, false),
            ("127.0.0.0/8", "::1", 80, false),
            // An address entry is not a name: it never matches a name, nor a name an address.
            ("127.0.0.1", "localhost", 80, false),
            ("1.2.3.4", "1.2.3.4.example", 80, false),
            ("example.com:8080", "www.example.com", 8080, true),
            ("example.com:8080", "www.example.com", 80, false),
            ("127.0.0.1:3000", "127.0.0.1", 3000, true),
            ("127.0.0.1:3000", "127.0.0.1", 3001, false),
            ("", "example.com", 80, false),
            ("example.com:port", "example.com", 80, false),
            ("example.com/8", "example.com", 80, false),
            ("10.0.0.0/33", "10.0.0.1", 80, false),
        ];
        for (list, host, port, direct) in cases {
            let no_proxy = NoProxy::parse(list);
            assert_eq!(
                no_proxy.matching(host, *port).is_some(),
                *direct,
                "NO_PROXY={list:?} host {host} port {port}"
            );
        }
        assert_eq!(
            NoProxy::parse("a.org, .example.com").matching("www.example.com", 1),
            Some(".example.com")
        );
    }

    #[test]
    fn environment_variables_by_curls_rules() {
        let http = "http://h/";
        let https = "https://h/";
        // Rule 1: http_proxy in lower case only.
        assert_eq!(via(&[("http_proxy", "p:1")], http).as_deref(), Some("p:1"));
        assert_eq!(via(&[("HTTP_PROXY", "p:1")], http), None);
        assert_eq!(via(&[("http_proxy", "p:1")], https), None);
        // The CGI guard.
        let cgi = [("http_proxy", "p:1"), ("REQUEST_METHOD", "GET")];
        assert_eq!(via(&cgi, http), None);
        assert!(route(&cgi, http).reason.contains("REQUEST_METHOD"));
        assert!(route(&cgi, http).considered);
        assert!(!route(&[("http_proxy", "p:1")], https).considered);
        let cgi_all = [
            ("http_proxy", "p:1"),
            ("REQUEST_METHOD", "GET"),
            ("all_proxy", "a:2"),
        ];
        assert_eq!(via(&cgi_all, http).as_deref(), Some("a:2"));
        // Rule 2, and lower case winning.
        assert_eq!(
            via(&[("HTTPS_PROXY", "p:1")], https).as_deref(),
            Some("p:1")
        );
        assert_eq!(
            via(&[("https_proxy", "p:1")], https).as_deref(),
            Some("p:1")
        );
        let both = [("HTTPS_PROXY", "upper:1"), ("https_proxy", "lower:2")];
        assert_eq!(via(&both, https).as_deref(), Some("lower:2"));
        assert_eq!(via(&both, http), None);
        // Rule 3: the fallback, after the scheme's own.
        assert_eq!(via(&[("ALL_PROXY", "a:1")], http).as_deref(), Some("a:1"));
        assert_eq!(via(&[("all_proxy", "a:1")], https).as_deref(), Some("a:1"));
        let all_both = [("ALL_PROXY", "upper:1"), ("all_proxy", "lower:2")];
        assert_eq!(via(&all_both, https).as_deref(), Some("lower:2"));
        let own_first = [("all_proxy", "a:1"), ("https_proxy", "s:2")];
        assert_eq!(via(&own_first, https).as_deref(), Some("s:2"));
        // Empty is unset.
        let empty = [("https_proxy", ""), ("HTTPS_PROXY", "p:1")];
        assert_eq!(via(&empty, https).as_deref(), Some("p:1"));
        // Rule 4: NO_PROXY, lower case winning; an empty one is unset.
        let skip = [("https_proxy", "p:1"), ("NO_PROXY", "h")];
        assert_eq!(via(&skip, https), None);
        let reason = route(&skip, https).reason;
        assert!(
            reason.contains("\"h\"") && reason.contains("NO_PROXY"),
            "{reason}"
        );
        let lower_empty = [("https_proxy", "p:1"), ("NO_PROXY", "h"), ("no_proxy", "")];
        assert_eq!(via(&lower_empty, https), None);
        let lower_other = [("https_proxy", "p:1"), ("NO_PROXY", "h"), ("no_proxy", "x")];
        assert_eq!(via(&lower_other, https).as_deref(), Some("p:1"));
        // Why, for -v.
        let reason = route(&[("https_proxy", "p:1")], https).reason;
        assert!(
            reason.contains("https_proxy") && reason.contains("CONNECT"),
            "{reason}"
        );
        let reason = route(&[("http_proxy", "p:1")], http).reason;
        assert!(reason.contains("absolute-form"), "{reason}");
    }

    #[test]
    fn explicit_proxy_and_list_replace_the_environment_and_no_proxy_still_applies() {
        let target = Target::parse("http://internal.corp/up").unwrap();
        let vars = [("http_proxy", "envproxy:1"), ("no_proxy", "corp")];
        let mut rules = ProxyRules {
            explicit: Some(Proxy::parse("explicit:2").unwrap()),
            environment: Some(env(&vars)),
            ..ProxyRules::default()
        };
        // NO_PROXY applies to the explicit proxy too, as in curl.
        assert_eq!(rules.route(&target).unwrap().proxy, None);
        let other = Target::parse("http://example.com/").unwrap();
        assert_eq!(
            rules.route(&other).unwrap().proxy.unwrap().authority(),
            "explicit:2"
        );
        // An explicit list, even an empty one, replaces the variable's.
        rules.no_proxy = Some(NoProxy::parse(""));
        assert!(rules.route(&target).unwrap().proxy.is_some());
        // Trailers in absolute form: a tunnel by default, or refused, or sent anyway.
        rules.no_proxy = None;
        let trailing = rules.route_with_trailers(&other, true).unwrap();
        assert!(
            trailing.tunnel && trailing.reason.contains("trailers"),
            "{trailing:?}"
        );
        assert!(!rules.route_with_trailers(&other, false).unwrap().tunnel);
        rules.trailers = ProxyTrailers::Refuse;
        assert!(rules.route_with_trailers(&other, true).is_err());
        rules.trailers = ProxyTrailers::SendAnyway;
        assert!(!rules.route_with_trailers(&other, true).unwrap().tunnel);
        rules.no_proxy = Some(NoProxy::parse(""));
        // --proxytunnel: CONNECT for http targets too.
        rules.tunnel_http = true;
        assert!(rules.route(&other).unwrap().tunnel);
        // Reading the environment turned off.
        let off = ProxyRules {
            environment: None,
            ..ProxyRules::default()
        };
        assert_eq!(off.route(&other).unwrap().proxy, None);
        // A variable that does not parse is an error once a target would use it.
        let bad = ProxyRules {
            environment: Some(env(&[("https_proxy", "socks5://s:1")])),
            ..ProxyRules::default()
        };
        let err = bad
            .route(&Target::parse("https://h/").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SOCKS") && err.contains("https_proxy"),
            "{err}"
        );
        assert!(bad.route(&Target::parse("http://h/").unwrap()).is_ok());
    }
}
