//! The contenders that live in this binary: the raw client and sink (the limit) and the
//! reqwest clients.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;

use crate::{RAW_WRITE, Result, value};

fn client_tls(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca)?;
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The limit: the file through one buffer into a socket, no HTTP, plain or rustls.
pub fn raw_client(args: &[String]) -> Result<()> {
    let [addr, file, ..] = args else {
        return Err("usage: raw-client ADDR FILE [--cacert CA]".into());
    };
    let mut source = std::fs::File::open(file)?;
    let write_size = value(args, "--write")
        .map(str::parse)
        .transpose()?
        .unwrap_or(RAW_WRITE);
    let mut buf = vec![0u8; write_size];
    let tcp = TcpStream::connect(addr)?;
    // The same socket option chunkwire sets: without it, Nagle holds back the tail of each
    // write that does not fill a segment, and the limit measures that instead.
    tcp.set_nodelay(true)?;
    let mut sent = 0u64;
    match value(args, "--cacert") {
        None => {
            let mut tcp = tcp;
            loop {
                let n = source.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                tcp.write_all(&buf[..n])?;
                sent += n as u64;
            }
            tcp.shutdown(std::net::Shutdown::Write)?;
            let mut ack = [0u8; 8];
            tcp.read_exact(&mut ack)?;
            check_ack(ack, sent)
        }
        Some(ca) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let conn = rustls::ClientConnection::new(client_tls(Path::new(ca))?, name)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            loop {
                let n = source.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                tls.write_all(&buf[..n])?;
                sent += n as u64;
            }
            tls.conn.send_close_notify();
            tls.flush()?;
            let mut ack = [0u8; 8];
            tls.read_exact(&mut ack)?;
            check_ack(ack, sent)
        }
    }
}

fn check_ack(ack: [u8; 8], sent: u64) -> Result<()> {
    let got = u64::from_le_bytes(ack);
    if got != sent {
        return Err(format!("the raw sink got {got} of {sent} bytes").into());
    }
    Ok(())
}

/// Counts what raw clients send and answers with the count (8 bytes) at their end.
pub fn raw_sink(args: &[String]) -> Result<()> {
    let addr = args
        .first()
        .ok_or("usage: raw-sink ADDR [--tls --ca-out FILE]")?;
    let listener = TcpListener::bind(addr)?;
    let tls = if args.iter().any(|a| a == "--tls") {
        let identity = chunkwire::ServerTls::self_signed()?;
        let ca_out = value(args, "--ca-out").ok_or("--tls needs --ca-out")?;
        std::fs::write(ca_out, identity.ca_pem())?;
        Some(identity)
    } else {
        None
    };
    for stream in listener.incoming() {
        let stream = stream?;
        let tls = tls.clone();
        std::thread::spawn(move || -> io::Result<()> {
            let mut buf = vec![0u8; 256 * 1024];
            match tls {
                None => {
                    let mut stream = stream;
                    let count = drain(&mut stream, &mut buf)?;
                    stream.write_all(&count.to_le_bytes())
                }
                Some(tls) => {
                    let mut stream = tls.accept(stream)?;
                    let count = drain(&mut stream, &mut buf)?;
                    stream.write_all(&count.to_le_bytes())?;
                    stream.close();
                    Ok(())
                }
            }
        });
    }
    Ok(())
}

fn drain(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<u64> {
    let mut count = 0u64;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(count),
            Ok(n) => count += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// reqwest streaming the file: `Body::wrap_stream` over a 64 KiB `ReaderStream`, chunked or
/// with Content-Length.
pub fn reqwest_client(args: &[String]) -> Result<()> {
    let [url, file, mode, ..] = args else {
        return Err(
            "usage: reqwest-client URL FILE --chunked|--content-length [--cacert CA]".into(),
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = value(args, "--cacert") {
            let pem = std::fs::read(ca)?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let client = builder.build()?;
        let source = tokio::fs::File::open(file).await?;
        let len = source.metadata().await?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(source, 64 * 1024);
        let mut request = client
            .put(url.as_str())
            .body(reqwest::Body::wrap_stream(stream));
        if mode == "--content-length" {
            request = request.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        Ok(())
    })
}
