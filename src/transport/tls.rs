//! TLS through rustls 0.23 on the same non-blocking socket and the same event loop as plain
//! TCP. This is the only module that names rustls types, so a later rustls is taken here.
//!
//! The client side: trust anchors (webpki-roots, plus the caller's PEM files), an optional
//! client certificate, ALPN `http/1.1`, TLS 1.2 and 1.3 with the aws-lc-rs provider. The
//! handshake runs in the event loop under the connect deadline. rustls buffers what it
//! encrypts; its buffer limit is set to about one chunk frame, so memory stays fixed: a frame
//! is accepted only once the previous records have gone to the socket.
//!
//! The server side (feature `sink`) is for the loopback sink: a throwaway CA and a server
//! certificate signed by it, made with rcgen, over a blocking stream.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use crate::error::RequestError;
use crate::trace::{Direction, WireTap};

/// The ALPN protocol id of HTTP/1.1, the only protocol chunkwire speaks.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Room in rustls's buffer beyond one chunk frame: record headers and tags, and the
/// handshake's last flight.
const BUFFER_SLACK: usize = 16 * 1024;

fn invalid(option: &'static str, reason: String) -> RequestError {
    RequestError::InvalidOption { option, reason }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS settings of a client: which servers to trust, and who we are if asked.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.inner.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl Default for TlsConfig {
    /// Mozilla's trust roots (webpki-roots), no client certificate.
    fn default() -> Self {
        TlsConfig::builder()
            .build()
            .expect("the default TLS configuration is valid")
    }
}

impl TlsConfig {
    /// Starts from Mozilla's trust roots (webpki-roots) and no client certificate.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder {
            roots: RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
            client_auth: None,
            key_log_file: false,
        }
    }

    /// Uses the caller's own rustls configuration as it is (its ALPN list included; add
    /// `http/1.1` to it for servers that require ALPN).
    pub fn from_rustls(config: Arc<ClientConfig>) -> Self {
        TlsConfig { inner: config }
    }
}

/// Builds a [`TlsConfig`].
pub struct TlsConfigBuilder {
    roots: RootCertStore,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    key_log_file: bool,
}

impl std::fmt::Debug for TlsConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfigBuilder")
            .field("roots", &self.roots.len())
            .field("client_auth", &self.client_auth.is_some())
            .field("key_log_file", &self.key_log_file)
            .finish()
    }
}

impl TlsConfigBuilder {
    /// Trusts the certificates in `pem` (one or more) as well as the defaults.
    pub fn add_ca_pem(mut self, pem: &[u8]) -> Result<Self, RequestError> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| invalid("CA certificate", format!("bad PEM: {e}")))?;
            self.roots
                .add(cert)
                .map_err(|e| invalid("CA certificate", e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(invalid(
                "CA certificate",
                "no certificate in the PEM data".into(),
            ));
        }
        Ok(self)
    }

    /// Trusts the certificates in the PEM file at `path` as well as the defaults.
    pub fn add_ca_pem_file(self, path: impl AsRef<Path>) -> Result<Self, RequestError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| {
            invalid(
                "CA certificate",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        self.add_ca_pem(&pem)
            .map_err(|e| invalid("CA certificate", format!("{}: {e}", path.display())))
    }

    /// Presents this certificate chain and private key (PEM) when the server asks (mutual TLS).
    pub fn client_auth_pem(mut self, cert_chain: &[u8], key: &[u8]) -> Result<Self, RequestError> {
        let chain = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("client certificate", format!("bad PEM: {e}")))?;
        if chain.is_empty() {
            return Err(invalid(
                "client certificate",
                "no certificate in the PEM data".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| invalid("client key", format!("bad PEM: {e}")))?;
        self.client_auth = Some((chain, key));
        Ok(self)
    }

    /// Presents the certificate chain and key in these PEM files when the server asks.
    pub fn client_auth_pem_files(
        self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, RequestError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| invalid(what, format!("cannot read {}: {e}", path.display())))
        };
        let chain = read("client certificate", cert_chain.as_ref())?;
        let key = read("client key", key.as_ref())?;
        self.client_auth_pem(&chain, &key)
    }

    /// Appends the secrets of every TLS session to the file named by the environment
    /// variable `SSLKEYLOGFILE` (NSS key log format, RFC 9850), as curl and browsers do, so
    /// that Wireshark can decrypt a capture of the connections. Nothing is written when the
    /// variable is unset or the file cannot be opened. Off unless asked for: the file holds
    /// what it takes to read every byte of the sessions.
    pub fn key_log_from_env(mut self) -> Self {
        self.key_log_file = true;
        self
    }

    /// Builds the configuration: TLS 1.2 and 1.3, ALPN `http/1.1`.
    pub fn build(self) -> Result<TlsConfig, RequestError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS configuration", e.to_string()))?
            .with_root_certificates(self.roots);
        let mut config = match self.client_auth {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("client certificate", e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        if self.key_log_file {
            config.key_log = Arc::new(rustls::KeyLogFile::new());
        }
        Ok(TlsConfig {
            inner: Arc::new(config),
        })
    }
}

/// What the handshake settled, for messages and the wire trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSummary {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The cipher suite's IANA name.
    pub cipher_suite: String,
    /// The negotiated ALPN protocol, if any.
    pub alpn: Option<String>,
    /// The subject of the server's certificate, as `CN=..., O=...`.
    pub peer_subject: Option<String>,
}

impl std::fmt::Display for TlsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TLS handshake: {} {}, ALPN {}, server certificate {}",
            self.version,
            self.cipher_suite,
            self.alpn.as_deref().unwrap_or("none"),
            self.peer_subject
                .as_deref()
                .unwrap_or("(subject unreadable)")
        )
    }
}

/// One DER element: its tag, its contents, and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let len = rest[..octets]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[octets..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject of an X.509 certificate as `CN=..., O=...`: just enough DER to show who the
/// server said it was, without an X.509 parser as a dependency.
fn certificate_subject(der: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    let (_, certificate, _) = der_element(der).filter(|(tag, ..)| *tag == SEQUENCE)?;
    let (_, tbs, _) = der_element(certificate)?;
    let mut fields = tbs;
    // tbsCertificate: [0] version (optional), serial, signature, issuer, validity, subject.
    if fields.first() == Some(&0xa0) {
        fields = der_element(fields)?.2;
    }
    for _ in 0..4 {
        fields = der_element(fields)?.2;
    }
    let (_, subject, _) = der_element(fields)?;
    let mut parts = Vec::new();
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (_, set, rest) = der_element(rdns)?;
        rdns = rest;
        let (_, attribute, _) = der_element(set)?;
        let (_, oid, rest) = der_element(attribute)?;
        let (_, value, _) = der_element(rest)?;
        let name = match oid {
            [0x55, 0x04, 0x03] => "CN",
            [0x55, 0x04, 0x06] => "C",
            [0x55, 0x04, 0x07] => "L",
            [0x55, 0x04, 0x08] => "ST",
            [0x55, 0x04, 0x0a] => "O",
            [0x55, 0x04, 0x0b] => "OU",
            _ => continue,
        };
        parts.push(format!("{name}={}", String::from_utf8_lossy(value)));
    }
    Some(parts.join(", "))
}

/// What a TLS session runs over: the socket, or the TLS session to an https proxy that
/// carries a CONNECT tunnel (TLS inside TLS).
#[derive(Debug)]
pub(crate) enum Carrier {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

impl Carrier {
    /// The socket at the bottom.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Carrier::Tcp(tcp) => tcp,
            Carrier::Tls(outer) => outer.tcp(),
        }
    }
}

impl Read for Carrier {
    fn read(&mut self, space: &mut [u8]) -> io::Result<usize> {
        match self {
            Carrier::Tcp(tcp) => tcp.read(space),
            Carrier::Tls(outer) => outer.read(space),
        }
    }
}

impl Write for Carrier {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Carrier::Tcp(tcp) => tcp.write(bytes),
            Carrier::Tls(outer) => outer.write(bytes),
        }
    }

    /// `WouldBlock` while an outer session still holds records for the socket.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Carrier::Tcp(_) => Ok(()),
            Carrier::Tls(outer) => match outer.flush()? {
                true => Ok(()),
                false => Err(io::ErrorKind::WouldBlock.into()),
            },
        }
    }
}

/// A TLS client connection over a non-blocking socket (or over another TLS session).
pub(crate) struct TlsStream {
    conn: ClientConnection,
    tcp: Carrier,
    /// Sees the records as they cross the socket (a packet-capture trace).
    tap: Option<Arc<dyn WireTap>>,
}

/// The socket as rustls reads and writes it, showing every byte to the tap if there is one.
struct Tapped<'a> {
    tcp: &'a mut Carrier,
    tap: Option<&'a dyn WireTap>,
}

impl Read for Tapped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        if let Some(tap) = self.tap
            && n > 0
        {
            tap.wire(Direction::Received, &buf[..n]);
        }
        Ok(n)
    }
}

impl Write for Tapped<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tcp.write(buf)?;
        if let Some(tap) = self.tap {
            tap.wire(Direction::Sent, &buf[..n]);
        }
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.tcp.write_vectored(bufs)?;
        if let Some(tap) = self.tap {
            let mut left = n;
            for buf in bufs {
                let taken = left.min(buf.len());
                if taken > 0 {
                    tap.wire(Direction::Sent, &buf[..taken]);
                }
                left -= taken;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Hands the session's secrets to a tap, and to the key log the configuration already had
/// (`SSLKEYLOGFILE`, or the caller's own).
struct TapKeyLog {
    tap: Arc<dyn WireTap>,
    also: Arc<dyn rustls::KeyLog>,
}

impl std::fmt::Debug for TapKeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapKeyLog").finish_non_exhaustive()
    }
}

impl rustls::KeyLog for TapKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.also.log(label, client_random, secret);
        self.tap.secret(&key_log_line(label, client_random, secret));
    }
}

/// One line of the NSS key log format, without its line feed.
fn key_log_line(label: &str, client_random: &[u8], secret: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut line =
        String::with_capacity(label.len() + 2 + 2 * (client_random.len() + secret.len()));
    line.push_str(label);
    line.push(' ');
    for b in client_random {
        let _ = write!(line, "{b:02x}");
    }
    line.push(' ');
    for b in secret {
        let _ = write!(line, "{b:02x}");
    }
    line
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// A rustls error as an `io::Error`, keeping its message (rustls names the reason, such as
/// `UnknownIssuer` or `NotValidForName`).
fn tls_error(err: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

impl TlsStream {
    /// Starts a client connection to `host` (a name or an IP address) over `tcp`; `tap`, if
    /// any, sees its records and its secrets.
    pub(crate) fn new(
        config: &TlsConfig,
        host: &str,
        tcp: TcpStream,
        frame_capacity: usize,
        tap: Option<Arc<dyn WireTap>>,
    ) -> Result<Self, RequestError> {
        TlsStream::over(config, host, Carrier::Tcp(tcp), frame_capacity, tap)
    }

    /// Starts a client connection to `host` over `carrier`: a socket, or a tunnel inside
    /// the TLS session to an https proxy; `tap` as for [`TlsStream::new`].
    pub(crate) fn over(
        config: &TlsConfig,
        host: &str,
        tcp: Carrier,
        frame_capacity: usize,
        tap: Option<Arc<dyn WireTap>>,
    ) -> Result<Self, RequestError> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            invalid(
                "TLS server name",
                format!("{host:?} is not a DNS name or IP address"),
            )
        })?;
        let config = match &tap {
            // Key logs belong to a configuration: a tapped connection gets a copy of its
            // own, so that the tap sees the secrets of this session only.
            Some(tap) => {
                let mut own = ClientConfig::clone(&config.inner);
                own.key_log = Arc::new(TapKeyLog {
                    tap: Arc::clone(tap),
                    also: Arc::clone(&config.inner.key_log),
                });
                Arc::new(own)
            }
            None => config.inner.clone(),
        };
        let mut conn = ClientConnection::new(config, name)
            .map_err(|e| invalid("TLS configuration", e.to_string()))?;
        conn.set_buffer_limit(Some(frame_capacity + BUFFER_SLACK));
        Ok(TlsStream { conn, tcp, tap })
    }

    /// Shows the records from now on to `tap` (the trace of the next upload on a kept
    /// connection) instead of the one before. The session's secrets went to whichever tap
    /// it had when they were made.
    /// Inside an https proxy's session, the outer session gets it: its records are the
    /// ones on the socket.
    pub(crate) fn set_tap(&mut self, tap: Option<Arc<dyn WireTap>>) {
        match &mut self.tcp {
            Carrier::Tls(outer) => outer.set_tap(tap),
            Carrier::Tcp(_) => self.tap = tap,
        }
    }

    /// The socket under the TLS session (under every session, for TLS inside TLS).
    pub(crate) fn tcp(&self) -> &TcpStream {
        self.tcp.tcp()
    }

    /// Moves the handshake on as far as the socket allows. `Ok(true)` once it is complete and
    /// its last flight is written; `Ok(false)` means wait for readiness and call again.
    pub(crate) fn handshake(&mut self) -> io::Result<bool> {
        loop {
            if self.conn.wants_write() && !self.flush()? {
                return Ok(false);
            }
            if !self.conn.is_handshaking() {
                return match self.conn.alpn_protocol() {
                    Some(alpn) if alpn != ALPN_HTTP_1_1 => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the server chose ALPN protocol {:?}, not http/1.1",
                            String::from_utf8_lossy(alpn)
                        ),
                    )),
                    _ => Ok(true),
                };
            }
            match self.conn.read_tls(&mut Tapped {
                tcp: &mut self.tcp,
                tap: self.tap.as_deref(),
            }) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the TLS handshake",
                    ));
                }
                Ok(_) => {
                    if let Err(err) = self.conn.process_new_packets() {
                        // Send the alert that says why, then fail.
                        let _ = self.flush();
                        return Err(tls_error(err));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts what rustls's buffer has room for and pushes it to the socket.
    pub(crate) fn write(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        let accepted = self.conn.writer().write(plaintext)?;
        self.flush()?;
        if accepted == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(accepted)
    }

    /// Writes buffered records to the socket. `Ok(true)` when nothing is left.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Tapped {
                tcp: &mut self.tcp,
                tap: self.tap.as_deref(),
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Records handed to an outer session (TLS inside TLS) may still wait in it.
        if let Carrier::Tls(outer) = &mut self.tcp {
            return outer.flush();
        }
        Ok(true)
    }

    /// Reads plaintext. 0 means the server sent close_notify; a TCP close without it is
    /// `UnexpectedEof`, so a truncated body is never taken for a complete one.
    pub(crate) fn read(&mut self, space: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(space) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the TCP connection without TLS close_notify",
                    ));
                }
                result => return result,
            }
            match self.conn.read_tls(&mut Tapped {
                tcp: &mut self.tcp,
                tap: self.tap.as_deref(),
            }) {
                Ok(_) => {
                    // Ok(0) is the TCP end: processing it makes the reader report how it ended.
                    self.conn.process_new_packets().map_err(tls_error)?;
                    if self.conn.wants_write() {
                        // Key updates and alerts go out at once; a full socket can wait.
                        self.flush()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends close_notify (best effort: the socket is closed next anyway).
    pub(crate) fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }

    /// The negotiated version, cipher suite and ALPN protocol.
    pub(crate) fn summary(&self) -> TlsSummary {
        TlsSummary {
            version: self
                .conn
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
                .replace('_', "."),
            cipher_suite: self
                .conn
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("unknown")
                .to_owned(),
            alpn: self
                .conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            peer_subject: self
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| certificate_subject(leaf)),
        }
    }
}

#[cfg(feature = "sink")]
pub use server::{ServerStream, ServerTls};

#[cfg(feature = "sink")]
mod server {
    use super::*;
    use rustls::{ServerConfig, ServerConnection, StreamOwned};

    /// A loopback server's TLS identity: a throwaway CA and a certificate it signed for
    /// `localhost`, `127.0.0.1` and `::1`.
    #[derive(Clone)]
    pub struct ServerTls {
        config: Arc<ServerConfig>,
        ca_pem: String,
        /// The CA, kept to issue client certificates and to trust them.
        ca: Arc<(rcgen::Certificate, rcgen::KeyPair)>,
        leaf: Arc<(CertificateDer<'static>, Vec<u8>)>,
    }

    impl std::fmt::Debug for ServerTls {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ServerTls").finish_non_exhaustive()
        }
    }

    impl ServerTls {
        /// Makes a new CA and a server certificate for the loopback names.
        pub fn self_signed() -> io::Result<ServerTls> {
            ServerTls::for_names(&["localhost", "127.0.0.1", "::1"])
        }

        /// Makes a new CA and a server certificate for `names` (DNS names or IP addresses).
        pub fn for_names(names: &[&str]) -> io::Result<ServerTls> {
            ServerTls::generate(names, false)
        }

        /// Like [`ServerTls::for_names`], but the server certificate expired long ago: for
        /// checking that clients refuse it.
        pub fn expired(names: &[&str]) -> io::Result<ServerTls> {
            ServerTls::generate(names, true)
        }

        fn generate(names: &[&str], expired: bool) -> io::Result<ServerTls> {
            let failed = |e: rcgen::Error| io::Error::other(format!("certificate generation: {e}"));
            let ca_key = rcgen::KeyPair::generate().map_err(failed)?;
            let mut ca_params =
                rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "chunkwire sink test CA");
            ca_params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ];
            let ca = ca_params.self_signed(&ca_key).map_err(failed)?;

            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let leaf_key = rcgen::KeyPair::generate().map_err(failed)?;
            let mut leaf_params = rcgen::CertificateParams::new(names).map_err(failed)?;
            leaf_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "chunkwire sink");
            if expired {
                leaf_params.not_before = rcgen::date_time_ymd(2001, 1, 1);
                leaf_params.not_after = rcgen::date_time_ymd(2001, 1, 2);
            }
            let leaf = leaf_params
                .signed_by(&leaf_key, &ca, &ca_key)
                .map_err(failed)?;

            let ca = Arc::new((ca, ca_key));
            let leaf = Arc::new((leaf.der().clone(), leaf_key.serialize_der()));
            Ok(ServerTls {
                config: server_config(&leaf, &ca, false)?,
                ca_pem: ca.0.pem(),
                ca,
                leaf,
            })
        }

        /// The same identity, but clients must present a certificate issued by this CA
        /// (mutual TLS); see [`ServerTls::issue_client_cert`].
        pub fn requiring_client_cert(mut self) -> io::Result<ServerTls> {
            self.config = server_config(&self.leaf, &self.ca, true)?;
            Ok(self)
        }

        /// Issues a client certificate for `name`, signed by this CA: (certificate PEM,
        /// private key PEM), as `--cert` and `--key` take them.
        pub fn issue_client_cert(&self, name: &str) -> io::Result<(String, String)> {
            let failed = |e: rcgen::Error| io::Error::other(format!("certificate generation: {e}"));
            let key = rcgen::KeyPair::generate().map_err(failed)?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let (ca, ca_key) = &*self.ca;
            let cert = params.signed_by(&key, ca, ca_key).map_err(failed)?;
            Ok((cert.pem(), key.serialize_pem()))
        }

        /// The CA certificate, PEM: what a client must trust to talk to this server.
        pub fn ca_pem(&self) -> &str {
            &self.ca_pem
        }

        /// Wraps an accepted connection; the handshake happens on first read or write.
        pub fn accept(&self, tcp: std::net::TcpStream) -> io::Result<ServerStream> {
            let conn = ServerConnection::new(self.config.clone()).map_err(io::Error::other)?;
            Ok(ServerStream {
                inner: StreamOwned::new(conn, tcp),
            })
        }
    }

    /// The server configuration for a certificate and key, optionally requiring client
    /// certificates issued by `ca`.
    fn server_config(
        leaf: &(CertificateDer<'static>, Vec<u8>),
        ca: &(rcgen::Certificate, rcgen::KeyPair),
        client_auth: bool,
    ) -> io::Result<Arc<ServerConfig>> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?;
        let builder = if client_auth {
            let mut roots = RootCertStore::empty();
            roots.add(ca.0.der().clone()).map_err(io::Error::other)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::try_from(leaf.1.clone()).map_err(io::Error::other)?;
        let mut config = builder
            .with_single_cert(vec![leaf.0.clone()], key)
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        Ok(Arc::new(config))
    }

    /// A blocking server-side TLS stream.
    pub struct ServerStream {
        inner: StreamOwned<ServerConnection, std::net::TcpStream>,
    }

    impl std::fmt::Debug for ServerStream {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ServerStream").finish_non_exhaustive()
        }
    }

    impl ServerStream {
        /// Sends close_notify and flushes.
        pub fn close(&mut self) {
            self.inner.conn.send_close_notify();
            let _ = self.inner.flush();
        }
    }

    impl Read for ServerStream {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.inner.read(buf)
        }
    }

    impl Write for ServerStream {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.inner.write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }
}

/// Fills `bytes` from the operating system's secure random source, through aws-lc-rs (the
/// crypto provider already linked for TLS): a multipart boundary needs no new dependency.
pub(crate) fn fill_random(bytes: &mut [u8]) -> io::Result<()> {
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(bytes)
        .map_err(|_| io::Error::other("the system's random source failed"))
}
