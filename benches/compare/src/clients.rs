//! The contenders that live in this binary: the raw client and sink (the limit) and the
//! reqwest clients.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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

/// A file read synchronously inside `poll_read`: a read from the page cache takes
/// microseconds, so reqwest's tasks read their files on the runtime's own thread, as
/// chunkwire does, instead of through tokio's blocking thread pool (`tokio::fs`), which
/// would add a thread hop per read and, with many uploads at once, hundreds of threads.
struct SyncFile(std::fs::File);

impl tokio::io::AsyncRead for SyncFile {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use std::os::fd::AsRawFd;
        // SAFETY: read(2) only writes into the unfilled part it is given, and `assume_init`
        // covers exactly the bytes it wrote.
        unsafe {
            let unfilled = buf.unfilled_mut();
            let n = libc::read(
                self.0.as_raw_fd(),
                unfilled.as_mut_ptr().cast(),
                unfilled.len(),
            );
            if n < 0 {
                return Poll::Ready(Err(io::Error::last_os_error()));
            }
            buf.assume_init(n as usize);
            buf.advance(n as usize);
        }
        Poll::Ready(Ok(()))
    }
}

type TaskResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// `reqwest-many URL/ DIR [--concurrency C] [--runtime current|multi] [--body stream|whole]
/// [--cacert CA]`: one reqwest client uploads every file in DIR to URL followed by the
/// file's name, from C tasks that each take the next file until none is left. `stream`
/// streams the file as the single-upload client does (chunked); `whole` reads it into memory
/// first and sends it with Content-Length.
pub fn reqwest_many(args: &[String]) -> Result<()> {
    let [base, dir, ..] = args else {
        return Err("usage: reqwest-many URL/ DIR [--concurrency C] [--runtime current|multi] [--body stream|whole] [--cacert CA]".into());
    };
    let concurrency: usize = crate::parsed(args, "--concurrency", 1)?;
    let whole = match value(args, "--body") {
        None | Some("stream") => false,
        Some("whole") => true,
        Some(other) => return Err(format!("unknown --body {other}").into()),
    };
    let mut builder = match value(args, "--runtime") {
        None | Some("current") => tokio::runtime::Builder::new_current_thread(),
        Some("multi") => tokio::runtime::Builder::new_multi_thread(),
        Some(other) => return Err(format!("unknown --runtime {other}").into()),
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let names = Arc::new(names);
    let dir = Arc::new(std::path::PathBuf::from(dir));
    let base = Arc::new(base.clone());
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async {
        let mut client = reqwest::Client::builder();
        if let Some(ca) = value(args, "--cacert") {
            let pem = std::fs::read(ca)?;
            client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let client = client.build()?;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency.clamp(1, names.len().max(1)) {
            let (client, names, next, dir, base) = (
                client.clone(),
                names.clone(),
                next.clone(),
                dir.clone(),
                base.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(name) = names.get(i) else {
                        return TaskResult::Ok(());
                    };
                    let path = dir.join(name);
                    let body = if whole {
                        reqwest::Body::from(std::fs::read(&path)?)
                    } else {
                        let file = SyncFile(std::fs::File::open(&path)?);
                        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                            file,
                            64 * 1024,
                        ))
                    };
                    let response = client
                        .put(format!("{base}{name}"))
                        .body(body)
                        .send()
                        .await?;
                    let status = response.status();
                    let text = response.bytes().await?;
                    if !status.is_success() {
                        return Err(format!(
                            "{name}: status {status}: {}",
                            String::from_utf8_lossy(&text)
                        )
                        .into());
                    }
                }
            }));
        }
        for task in tasks {
            task.await?.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// reqwest's multipart form: the two text fields of the form benchmark and the file as a
/// streamed part of known length (64 KiB reads), so reqwest sends a Content-Length. The
/// response body goes to OUT.
pub fn reqwest_form(args: &[String]) -> Result<()> {
    let [url, file, out, ..] = args else {
        return Err("usage: reqwest-form URL FILE OUT".into());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().build()?;
        let source = tokio::fs::File::open(file).await?;
        let len = source.metadata().await?.len();
        let name = Path::new(file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stream = tokio_util::io::ReaderStream::with_capacity(source, 64 * 1024);
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
                .file_name(name)
                .mime_str("application/octet-stream")?;
        let (title, note) = crate::form::FIELDS;
        let form = reqwest::multipart::Form::new()
            .text(title.0, title.1)
            .text(note.0, note.1)
            .part("file", part);
        let response = client.post(url.as_str()).multipart(form).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        std::fs::write(out, &body)?;
        if !status.is_success() {
            return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)).into());
        }
        Ok(())
    })
}
