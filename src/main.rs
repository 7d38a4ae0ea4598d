//! The `chunkwire` command: `upload` a file or standard input, run a loopback `sink`, or
//! run the `demo`. Option names follow curl's where curl has the same option, and so do
//! the exit codes (6 resolve, 7 connect, 22 HTTP error with `-f`, 26 reading a source, 28
//! timeout, 47 too many redirects, 52 no response, 55 send, 56 receive, 65 a redirect the
//! body could not follow).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chunkwire::pcap::PcapTrace;
use chunkwire::sink::{Report, Sink};
use chunkwire::trace::{
    Direction, Part, Trace, TraceFormat, TraceWriter, TracedConnection, WireTap,
};
use chunkwire::{Client, Error, ServerTls, Stage, TlsConfig, UploadProgress};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A line on standard error that is lost, not a panic, when standard error cannot be
/// written (a closed pipe): the exit code still says how the upload ended.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr(), $($arg)*);
    }};
}

#[path = "cli/args.rs"]
mod args;
#[path = "cli/progress.rs"]
mod progress;
#[path = "cli/walkthrough.rs"]
mod walkthrough;
#[path = "cli/write_out.rs"]
mod write_out;

use args::{Command, DemoArgs, ProxyArgs, SinkArgs, TraceArgs, TraceForm, UploadArgs};
use progress::ProgressMeter;
use write_out::{Values, WriteOut};

impl TraceArgs {
    /// The trace writer the options ask for, if any.
    fn writer(&self, append: bool) -> Result<Option<FlushOnDrop>, Failure> {
        let Some((path, form)) = &self.destination else {
            return Ok(None);
        };
        let format = match form {
            TraceForm::Ascii => TraceFormat::Ascii {
                data_limit: self.data_bytes,
            },
            TraceForm::Hex => TraceFormat::Hex,
            TraceForm::Json => TraceFormat::Json,
        };
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(io::stdout())
        } else {
            let opened = if append {
                File::options().append(true).open(path)
            } else {
                File::create(path)
            };
            Box::new(io::BufWriter::new(opened.map_err(|e| {
                Failure::usage(format!("cannot create trace file {path}: {e}"))
            })?))
        };
        Ok(Some(FlushOnDrop {
            writer: TraceWriter::new(out, format),
            path: path.clone(),
            option: form.option(),
        }))
    }
}

/// A trace writer that flushes at message boundaries and when the trace ends, and then
/// warns if any of the trace could not be written (a full disk), as the upload goes on.
struct FlushOnDrop {
    writer: TraceWriter<Box<dyn Write + Send>>,
    path: String,
    option: &'static str,
}

impl Trace for FlushOnDrop {
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]) {
        self.writer.bytes(direction, part, bytes);
        // Flush at message boundaries, so a trace of a server killed with Ctrl-C is whole;
        // chunk data in between stays buffered. A failure is kept for the warning on drop.
        if matches!(part, Part::EndOfHead | Part::EndOfBody | Part::Body) {
            self.flush();
        }
    }

    fn note(&mut self, direction: Direction, text: &str) {
        self.writer.note(direction, text);
        self.flush();
    }
}

/// The text trace and the packet capture of one upload, both.
struct BothTraces(FlushOnDrop, PcapTrace);

impl Trace for BothTraces {
    fn bytes(&mut self, direction: Direction, part: Part, bytes: &[u8]) {
        self.0.bytes(direction, part, bytes);
        self.1.bytes(direction, part, bytes);
    }

    fn note(&mut self, direction: Direction, text: &str) {
        self.0.note(direction, text);
    }

    fn connected(&mut self, connection: &TracedConnection) {
        self.1.connected(connection);
    }

    fn wire_tap(&mut self) -> Option<std::sync::Arc<dyn WireTap>> {
        self.1.wire_tap()
    }
}

impl FlushOnDrop {
    /// Flushes the writer; the first failure, of a write or a flush, is what `drop` warns of.
    fn flush(&mut self) -> Option<String> {
        let flushed = self.writer.flush();
        match self.writer.error() {
            Some(e) => Some(e.to_string()),
            None => flushed.err().map(|e| e.to_string()),
        }
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        if let Some(e) = self.flush() {
            say!(
                "chunkwire: warning: {} {}: {e}; the trace is incomplete",
                self.option,
                self.path
            );
        }
    }
}

fn main() -> ExitCode {
    let command = match args::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            say!("chunkwire: {message}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Print(text) => {
            // `print!` panics on a closed standard output; `--help > /dev/full` is exit 23.
            let mut out = io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) => Err(Failure {
                    message: format!("cannot write to standard output: {e}"),
                    code: 23,
                }),
            }
        }
        Command::Upload(args) => upload(*args),
        Command::Sink(args) => sink(&args),
        Command::Demo(args) => demo(&args),
        Command::Walkthrough(args) => {
            walkthrough::run(&args).map_err(|message| Failure { message, code: 1 })
        }
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            say!("chunkwire: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A failure: one line for standard error and a curl-style exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 2,
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let code = if err.is_timeout() {
            28
        } else if err.is_too_many_redirects() {
            47
        } else if err.is_redirect_body_not_resendable() {
            // curl's CURLE_SEND_FAIL_REWIND: the body had to be sent again and could not.
            65
        } else if err.is_via_proxy() && err.stage() == Stage::Resolve {
            // curl's CURLE_COULDNT_RESOLVE_PROXY.
            5
        } else if err.stage() == Stage::Proxy {
            // curl's CURLE_RECV_ERROR, which it gives for a CONNECT the proxy refused.
            56
        } else if err.is_closed_before_response() && err.stage() == Stage::Receive {
            // curl's CURLE_GOT_NOTHING ("empty reply from server").
            52
        } else {
            match err.stage() {
                Stage::Request => 3,
                Stage::Resolve => 6,
                Stage::Connect => 7,
                Stage::TlsHandshake => 35,
                Stage::Send => 55,
                // curl's CURLE_READ_ERROR: the local source could not be read (a file that
                // vanished before its turn, shrank while it was sent, or failed a read).
                Stage::ReadSource => READ_ERROR,
                Stage::WriteOutput => 23,
                _ => 56,
            }
        };
        Failure {
            message: err.to_string(),
            code,
        }
    }
}

fn client(
    chunk_size: Option<usize>,
    connect: Option<Duration>,
    max_time: Option<Duration>,
    tls: Option<TlsConfig>,
) -> Result<Client, Error> {
    let mut builder = Client::builder().max_time(max_time);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls);
    }
    if let Some(size) = chunk_size {
        builder = builder.chunk_size(size);
    }
    if let Some(connect) = connect {
        builder = builder.connect_timeout(connect);
    }
    builder.build()
}

/// The client with the proxy options of the command line (curl's names) applied.
fn with_proxy_options(client: Client, args: &ProxyArgs) -> Result<Client, Failure> {
    let mut builder = client.rebuild();
    match args.proxy.as_deref() {
        // As curl: an empty proxy turns proxies off, the environment's included.
        Some("") => builder = builder.proxy_from_environment(false),
        Some(url) => builder = builder.proxy(chunkwire::Proxy::parse(url).map_err(Error::from)?),
        None => {}
    }
    if let Some(list) = &args.noproxy {
        builder = builder.noproxy(list);
    }
    if let Some(user) = &args.user {
        let (name, password) = user.split_once(':').unwrap_or((user, ""));
        builder = builder.proxy_credentials(name, password);
    }
    for line in &args.headers {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            Failure::usage(format!(
                "proxy header {line:?} is not of the form 'Name: value'"
            ))
        })?;
        builder = builder.proxy_header(name, value);
    }
    if let Some(path) = &args.cacert {
        let tls = TlsConfig::builder()
            .add_ca_pem_file(path)
            .and_then(|b| b.build())
            .map_err(Error::from)?;
        builder = builder.proxy_tls_config(tls);
    }
    Ok(builder
        .proxy_tunnel(args.tunnel)
        .proxy_trailers(args.trailers)
        .build()?)
}

/// Whether `SSLKEYLOGFILE` names a file to append TLS secrets to (curl's rule: set and not
/// empty). A file that cannot be opened is said so once, and the upload goes on (rustls
/// then writes nothing), as curl does.
fn key_log_wanted() -> bool {
    let Some(path) = std::env::var_os("SSLKEYLOGFILE").filter(|p| !p.is_empty()) else {
        return false;
    };
    // Owner-only, as rustls makes it: the file opens every session logged in it.
    use std::os::unix::fs::OpenOptionsExt;
    let opened = File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path);
    if let Err(e) = opened {
        say!(
            "chunkwire: warning: SSLKEYLOGFILE {}: {e}; no TLS secrets are logged",
            Path::new(&path).display()
        );
    }
    true
}

/// Whether `path` is this process's standard output under another name (`/dev/stdout`,
/// `/proc/self/fd/1`, the file standard output is redirected to): writing a capture there
/// mixes it with the response body as `-` would. A device (`/dev/null`, a terminal) is
/// shared harmlessly, as in [`same_file`].
fn names_standard_output(path: &Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(named) = std::fs::metadata(path) else {
        return false;
    };
    let ours = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .and_then(|file| file.metadata());
    let Ok(ours) = ours else { return false };
    let kind = ours.file_type();
    (kind.is_fifo() || kind.is_socket() || kind.is_file())
        && (named.dev(), named.ino()) == (ours.dev(), ours.ino())
}

/// The `--trace-pcap` capture, created once every check on the command line has passed.
fn open_pcap(args: &UploadArgs) -> Result<Option<PcapTrace>, Failure> {
    Ok(match &args.trace_pcap {
        // Standard output, to pipe into `tshark -r -`, once the body goes elsewhere.
        Some(path) if path.as_os_str() == "-" => {
            if args.output.is_none() {
                return Err(Failure::usage(
                    "--trace-pcap - needs -o FILE: the response body would go into the capture",
                ));
            }
            Some(
                PcapTrace::new(io::BufWriter::new(io::stdout())).map_err(|e| {
                    Failure::usage(format!("cannot write --trace-pcap to standard output: {e}"))
                })?,
            )
        }
        Some(path) => Some(PcapTrace::create(path).map_err(|e| {
            Failure::usage(format!(
                "cannot create --trace-pcap file {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    })
}

/// `--trace-pcap -` is the whole of standard output: a text trace or `-w` output there too
/// would land among the capture's bytes, which no pcapng reader then opens.
fn check_pcap_stdout(args: &UploadArgs, write_out: Option<&WriteOut>) -> Result<(), Failure> {
    if args.trace_pcap.as_deref() != Some(Path::new("-")) {
        return Ok(());
    }
    if let Some((path, form)) = &args.trace.destination
        && path == "-"
    {
        return Err(Failure::usage(format!(
            "{} - and --trace-pcap - both write to standard output: give one of them a FILE",
            form.option()
        )));
    }
    if write_out.is_some_and(WriteOut::writes_to_stdout) {
        return Err(Failure::usage(
            "-w writes to standard output, which --trace-pcap - holds: start the format \
             with %{stderr}, or give --trace-pcap a FILE",
        ));
    }
    Ok(())
}

/// Ends the capture (its FINs and the rest of its buffer); a failure is a warning, as the
/// uploads are over.
fn finish_pcap(args: &UploadArgs, pcap: Option<PcapTrace>) {
    if let (Some(pcap), Some(path)) = (pcap, &args.trace_pcap)
        && let Err(e) = pcap.finish()
    {
        say!("chunkwire: warning: --trace-pcap {}: {e}", path.display());
    }
}

fn upload(mut args: UploadArgs) -> Result<ExitCode, Failure> {
    if args
        .trace_pcap
        .as_deref()
        .is_some_and(names_standard_output)
    {
        args.trace_pcap = Some(PathBuf::from("-"));
    }
    let key_log = key_log_wanted();
    let tls = if args.cacert.is_some() || args.cert.is_some() || key_log {
        let mut builder = TlsConfig::builder();
        if key_log {
            builder = builder.key_log_from_env();
        }
        if let Some(path) = &args.cacert {
            builder = builder.add_ca_pem_file(path).map_err(Error::from)?;
        }
        if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
            builder = builder
                .client_auth_pem_files(cert, key)
                .map_err(Error::from)?;
        }
        Some(builder.build().map_err(Error::from)?)
    } else {
        None
    };
    let client = client(args.chunk_size, args.connect_timeout, args.max_time, tls)?;
    let client = with_proxy_options(client, &args.proxy)?;
    if !args.form.is_empty() {
        return upload_form_with_output(&client, &args);
    }
    if args.files.iter().filter(|f| is_stdin(f)).count() > 1 {
        return Err(Failure::usage(
            "standard input (-) can be uploaded only once",
        ));
    }
    // Everything that can be found wrong with the files is found before connecting.
    let sources = check_sources(&args.files)?;
    check_destinations(&args, &sources)?;
    let write_out = match &args.write_out {
        Some(format) => Some(WriteOut::parse(&read_format(format, &args.files)?)),
        None => None,
    };
    check_pcap_stdout(&args, write_out.as_ref())?;
    let mut output = Output::of(args.output.as_ref());
    let pcap = open_pcap(&args)?;
    let result = if args.parallel {
        upload_parallel(
            &client,
            &args,
            &sources,
            &mut output,
            write_out.as_ref(),
            pcap.as_ref(),
        )
    } else {
        upload_each(
            &client,
            &args,
            &mut output,
            write_out.as_ref(),
            pcap.as_ref(),
        )
    };
    finish_pcap(&args, pcap);
    result
}

/// The files of `args` one after the other.
fn upload_each(
    client: &Client,
    args: &UploadArgs,
    output: &mut Output,
    write_out: Option<&WriteOut>,
    pcap: Option<&PcapTrace>,
) -> Result<ExitCode, Failure> {
    for (index, file) in args.files.iter().enumerate() {
        let url = url_for(args, file);
        let mut values = Values::new(&url, &args.method);
        let result = upload_one(
            client,
            args,
            &url,
            file,
            Tracing {
                append: index > 0,
                pcap,
            },
            output,
            &mut values,
        )
        .and_then(|()| output.finish().map_err(body_write_failure));
        if let Some(format) = write_out {
            write_values(format, &mut values, result.as_ref().err());
        }
        result?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `-F`: the form's upload, its response body to `-o` (or standard output) and `-w`'s
/// output, as for one FILE.
fn upload_form_with_output(client: &Client, args: &UploadArgs) -> Result<ExitCode, Failure> {
    let stdin_parts: Vec<PathBuf> = args
        .form
        .iter()
        .filter_map(|part| part.value.path().filter(|path| is_stdin(path)))
        .map(Path::to_path_buf)
        .collect();
    let write_out = match &args.write_out {
        Some(format) => Some(WriteOut::parse(&read_format(format, &stdin_parts)?)),
        None => None,
    };
    check_pcap_stdout(args, write_out.as_ref())?;
    let mut output = Output::of(args.output.as_ref());
    let mut values = Values::new(&args.url, &args.method);
    let result = upload_form(client, args, &mut output, &mut values)
        .and_then(|()| output.finish().map_err(body_write_failure));
    if let Some(format) = &write_out {
        write_values(format, &mut values, result.as_ref().err());
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// The `-w` format: as given, or read from the file after `@` (`@-`: standard input, when
/// it is not a body too).
fn read_format(format: &str, files: &[PathBuf]) -> Result<String, Failure> {
    let Some(path) = format.strip_prefix('@') else {
        return Ok(format.to_owned());
    };
    let read = if path == "-" {
        if files.iter().any(|f| is_stdin(f)) {
            return Err(Failure::usage(
                "-w @- reads the format from standard input, which is a body to upload",
            ));
        }
        let mut bytes = Vec::new();
        io::stdin().lock().read_to_end(&mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    let bytes = read.map_err(|e| Failure {
        message: format!("cannot read the -w format from {path}: {e}"),
        code: READ_ERROR,
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes `-w`'s output for one upload that ended with `failure` (none: success). Like
/// curl, a failure to write it does not change the exit code.
fn write_values(format: &WriteOut, values: &mut Values, failure: Option<&Failure>) {
    values.end(failure.map(|f| (f.code, f.message.as_str())));
    let _ = format.write(values, &mut io::stdout(), &mut io::stderr());
}

/// Counts the bytes written through it (`size_download`).
struct Counted<'w, W: Write> {
    out: &'w mut W,
    bytes: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.out.write(bytes)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Where response bodies go. A `-o` file is created (or truncated) only when the first
/// body byte is written, as curl does, so an upload that fails before its response keeps
/// the file as it was; an upload that succeeds with an empty body leaves an empty file,
/// also as curl does (curl 7.88: `curl -o x URL` against `Content-Length: 0` makes `x`).
/// Every write error, the final flush's included, reaches the caller: curl's exit 23.
enum Output {
    Stdout(io::StdoutLock<'static>),
    File { path: PathBuf, file: Option<File> },
}

/// The progress meter, shared by the callbacks that move it and the code that ends it.
type SharedMeter = Rc<RefCell<ProgressMeter<io::Stderr>>>;

/// The progress meter on standard error: with `-#`, or when it is a terminal, unless `-s`.
fn progress_meter(args: &UploadArgs) -> Option<SharedMeter> {
    let show_bar = !args.silent && (args.progress_bar || io::stderr().is_terminal());
    show_bar.then(|| Rc::new(RefCell::new(ProgressMeter::new(io::stderr()))))
}

/// The meter of one upload, and the progress callback that moves it.
fn one_upload_meter(args: &UploadArgs) -> (Option<SharedMeter>, Option<ProgressFn>) {
    let meter = progress_meter(args);
    let progress = meter.as_ref().map(|meter| {
        let meter = Rc::clone(meter);
        Box::new(move |p: &UploadProgress| meter.borrow_mut().update(p)) as ProgressFn
    });
    (meter, progress)
}

/// A response body that could not be written: curl's CURLE_WRITE_ERROR.
fn body_write_failure(e: io::Error) -> Failure {
    Failure {
        message: format!("cannot write the response body: {e}"),
        code: 23,
    }
}

impl Output {
    /// Where `-o` (or, without it, standard output) takes the response bodies.
    fn of(path: Option<&PathBuf>) -> Output {
        match path {
            Some(path) => Output::File {
                path: path.clone(),
                file: None,
            },
            None => Output::Stdout(io::stdout().lock()),
        }
    }

    /// Ends one upload's body: creates the `-o` file if no byte made it yet, and flushes.
    fn finish(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush().map_err(|e| named("standard output", e)),
            Output::File { path, file } => {
                if file.is_none() {
                    *file = Some(create_output(path)?);
                }
                Ok(())
            }
        }
    }
}

fn create_output(path: &Path) -> io::Result<File> {
    File::create(path).map_err(|e| named(&format!("cannot create {}", path.display()), e))
}

/// `e`, with `what` in front of its message.
fn named(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(out) => out.write(bytes).map_err(|e| named("standard output", e)),
            Output::File { path, file } => {
                if bytes.is_empty() {
                    return Ok(0);
                }
                let file = match file {
                    Some(file) => file,
                    None => file.insert(create_output(path)?),
                };
                file.write(bytes)
                    .map_err(|e| named(&path.display().to_string(), e))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush().map_err(|e| named("standard output", e)),
            Output::File { file: None, .. } => Ok(()),
            Output::File {
                path,
                file: Some(file),
            } => file
                .flush()
                .map_err(|e| named(&path.display().to_string(), e)),
        }
    }
}

/// A regular file to be uploaded, by device and inode, so that any spelling of its path
/// (and a hard link) is recognised.
struct SourceId {
    dev: u64,
    ino: u64,
    name: String,
    /// Its size when checked, and which FILE argument it is (standard input: `None`).
    size: u64,
    arg: Option<usize>,
}

impl SourceId {
    fn of(meta: &std::fs::Metadata, name: String, arg: Option<usize>) -> Self {
        use std::os::unix::fs::MetadataExt;
        SourceId {
            dev: meta.dev(),
            ino: meta.ino(),
            name,
            size: meta.len(),
            arg,
        }
    }

    fn is(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        (self.dev, self.ino) == (meta.dev(), meta.ino())
    }
}

/// Curl's exit code for a source it cannot open or read (`(26) Failed to open/read local
/// data from file/application`).
const READ_ERROR: u8 = 26;

fn unreadable(name: &str, why: impl std::fmt::Display) -> Failure {
    Failure {
        message: format!("cannot read {name}: {why}; nothing was sent"),
        code: READ_ERROR,
    }
}

/// Checks, before connecting, that every source can be read, and returns the regular
/// files among them. A missing file, a directory or one without read permission is
/// refused here (exit 26, as curl), not after the head went out. A regular file is
/// opened to prove it can be; a FIFO or a device only looked at, since opening one can
/// block or consume what its writer sent: it is opened once, when its turn comes.
fn check_sources(files: &[PathBuf]) -> Result<Vec<SourceId>, Failure> {
    let mut regular = Vec::new();
    for (arg, file) in files.iter().enumerate() {
        if is_stdin(file) {
            let name = "standard input";
            let Some(meta) = stdin_file().and_then(|f| f.metadata().ok()) else {
                continue;
            };
            if meta.is_dir() {
                return Err(unreadable(name, "it is a directory"));
            }
            if meta.is_file() {
                regular.push(SourceId::of(&meta, name.to_owned(), None));
            }
            continue;
        }
        let name = file.display().to_string();
        let meta = std::fs::metadata(file).map_err(|e| unreadable(&name, e))?;
        if meta.is_dir() {
            return Err(unreadable(&name, "it is a directory"));
        }
        if meta.is_file() {
            File::open(file).map_err(|e| unreadable(&name, e))?;
            regular.push(SourceId::of(&meta, name, Some(arg)));
        }
    }
    Ok(regular)
}

/// Refuses, before anything is created or sent, a `-o`, trace or key log file that is one of the
/// sources (the upload would send the file while it is being overwritten: curl does not
/// check this, and `curl -T f -o f` replaces `f` with the response), and a trace that is
/// the `-o` file (each would overwrite the other).
fn check_destinations(args: &UploadArgs, sources: &[SourceId]) -> Result<(), Failure> {
    let trace = match &args.trace.destination {
        Some((path, form)) if path != "-" => Some((Path::new(path), form.option())),
        _ => None,
    };
    let output = args.output.as_deref().map(|path| (path, "-o"));
    let pcap = args
        .trace_pcap
        .as_deref()
        .map(|path| (path, "--trace-pcap"));
    // The handshake appends to the key log before the body is read: a chunked upload of
    // that very file would carry the session's secrets along.
    let key_log = std::env::var_os("SSLKEYLOGFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let key_log = key_log.as_deref().map(|path| (path, "SSLKEYLOGFILE"));
    for (path, option) in output.into_iter().chain(trace).chain(pcap).chain(key_log) {
        // A path that does not exist yet cannot be a source.
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        if let Some(source) = sources.iter().find(|s| s.is(&meta)) {
            return Err(Failure::usage(format!(
                "{option} {} is the same file as {}, which is to be uploaded",
                path.display(),
                source.name
            )));
        }
    }
    if let (Some((out, _)), Some((trace, option))) = (output, trace)
        && same_file(out, trace)
    {
        return Err(Failure::usage(format!(
            "-o {} and {option} {} are the same file",
            out.display(),
            trace.display()
        )));
    }
    for (other, option) in output.into_iter().chain(trace) {
        if let Some((pcap, _)) = pcap
            && same_file(other, pcap)
        {
            return Err(Failure::usage(format!(
                "{option} {} and --trace-pcap {} are the same file",
                other.display(),
                pcap.display()
            )));
        }
    }
    Ok(())
}

/// Whether two paths name one regular file, which writing both would garble: by device
/// and inode when both exist; when neither does, by the canonical directory and the name
/// the file would be created with. A device such as `/dev/null` is shared harmlessly.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.is_file() && (a.dev(), a.ino()) == (b.dev(), b.ino()),
        (Err(_), Err(_)) => {
            let place = |p: &Path| {
                let dir = match p.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                Some((dir.canonicalize().ok()?, p.file_name()?.to_owned()))
            };
            place(a).is_some_and(|a| Some(a) == place(b))
        }
        _ => false,
    }
}

/// A progress callback of one upload.
type ProgressFn = Box<dyn FnMut(&UploadProgress)>;

/// The request for one file with the options of `args`; `progress` sees its body go out.
/// How one upload is traced besides its own text trace's options: whether that trace
/// appends (every file after the first), and the capture all the uploads share.
#[derive(Clone, Copy)]
struct Tracing<'p> {
    append: bool,
    pcap: Option<&'p PcapTrace>,
}

fn request_for<'c>(
    client: &'c Client,
    args: &UploadArgs,
    url: &str,
    known_len: Option<u64>,
    tracing: Tracing<'_>,
    progress: Option<ProgressFn>,
) -> Result<chunkwire::Upload<'c>, Failure> {
    let mut request = client.upload(url).method(&args.method);
    let mut expect_continue = args.expect_continue;
    for line in &args.headers {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            Failure::usage(format!("header {line:?} is not of the form 'Name: value'"))
        })?;
        // As with curl, `Expect` is an option in header's clothing: 100-continue turns the
        // wait on, an empty value keeps it off.
        if name.trim().eq_ignore_ascii_case("expect") {
            match value.trim() {
                "" => expect_continue = false,
                v if v.eq_ignore_ascii_case("100-continue") => expect_continue = true,
                v => return Err(Failure::usage(format!("Expect: {v:?} is not supported"))),
            }
            continue;
        }
        // `-H 'Transfer-Encoding: chunked'` is curl's way to ask for a chunked upload:
        // it is what chunkwire sends anyway (the library takes it as a no-op), and it
        // cannot be had together with a Content-Length.
        if args.content_length
            && name.trim().eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked")
        {
            return Err(Failure::usage(
                "-H 'Transfer-Encoding: chunked' and --content-length conflict: \
                 the body is framed one way or the other",
            ));
        }
        request = request.header(name, value);
    }
    if expect_continue {
        request = request.expect_continue(args.expect100_timeout);
    }
    if let Some(rate) = args.limit_rate {
        request = request.limit_rate(rate);
    }
    if let Some(algorithm) = args.checksum {
        request = request.checksum_trailer(algorithm);
    }
    if let Some(len) = known_len {
        request = request.size_hint(len);
    }
    if let Some(mut progress) = progress {
        request = request.progress(move |p: &UploadProgress| progress(p));
    }
    for line in &args.trailers {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            Failure::usage(format!("trailer {line:?} is not of the form 'Name: value'"))
        })?;
        request = request.trailer(name, value);
    }
    match (args.trace.writer(tracing.append)?, tracing.pcap) {
        (Some(writer), Some(pcap)) => request = request.trace(BothTraces(writer, pcap.clone())),
        (Some(writer), None) => request = request.trace(writer),
        (None, Some(pcap)) => request = request.trace(pcap.clone()),
        (None, None) => {}
    }
    // A form states its own length (`--content-length` requires it: see `upload_form`).
    if args.content_length && args.form.is_empty() {
        let len = known_len.ok_or_else(|| {
            Failure::usage("--content-length needs a regular file whose size is known, not a pipe")
        })?;
        request = request.content_length(len);
    }
    if args.location {
        request = request.max_redirects(args.max_redirs);
    }
    Ok(request)
}

/// The URL of `file`: with several files and a URL ending in `/`, the file's name is
/// appended as one encoded path segment (`#`, `?` and `%` in a name must not change it).
fn url_for(args: &UploadArgs, file: &Path) -> String {
    if args.files.len() > 1 && args.url.ends_with('/') {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stdin".to_owned());
        chunkwire::with_path_segment(&args.url, &name)
    } else {
        args.url.clone()
    }
}

/// Uploads one file (or standard input) with the options of `args`; writes the response
/// body to `output`.
fn upload_one(
    client: &Client,
    args: &UploadArgs,
    url: &str,
    file_name: &Path,
    tracing: Tracing<'_>,
    output: &mut Output,
    values: &mut Values,
) -> Result<(), Failure> {
    let source = Source::open(file_name)?;
    let known_len = source.known_len();
    let (meter, progress) = one_upload_meter(args);
    let request = request_for(client, args, url, known_len, tracing, progress)?;
    if args.verbose {
        // Which proxy, and why: the option or variable, or the no-proxy entry; nothing
        // when no proxy was set at all, as curl.
        let route = request.route()?;
        if route.considered {
            say!("* {}", route.reason);
        }
    }
    let sent = match source {
        Source::Regular(file) => request.send_seekable(file),
        Source::Other(file) => request.send(file),
        Source::Stdin => request.send(io::stdin().lock()),
    };
    if let Some(meter) = &meter {
        meter.borrow_mut().finish();
    }
    deliver(
        args,
        noted(values, sent).map_err(Failure::from),
        output,
        values,
    )
}

/// `sent`, after its figures for `-w` are taken when it failed (a success gives them in
/// `deliver`).
fn noted(
    values: &mut Values,
    sent: chunkwire::Result<chunkwire::Response>,
) -> chunkwire::Result<chunkwire::Response> {
    if let Some(transfer) = sent.as_ref().err().and_then(Error::transfer) {
        values.take(transfer);
    }
    sent
}

/// `-F`: one upload of the form the parts make, to the URL. Every file is checked before
/// connecting, as FILE arguments are; each is opened only when its part is sent.
fn upload_form(
    client: &Client,
    args: &UploadArgs,
    output: &mut Output,
    values: &mut Values,
) -> Result<(), Failure> {
    let paths: Vec<PathBuf> = args
        .form
        .iter()
        .filter_map(|part| part.value.path().map(Path::to_path_buf))
        .collect();
    let sources = check_sources(&paths)?;
    check_destinations(args, &sources)?;
    let pcap = open_pcap(args)?;
    let sent = send_form(client, args, pcap.as_ref());
    finish_pcap(args, pcap);
    // `--content-length` with a part of unknown size (a pipe, a device) is a usage error,
    // as with a FILE argument.
    let sent = noted(values, sent?).map_err(|err| match err.request_error() {
        Some(chunkwire::RequestError::FormPartUnsized { .. }) => Failure::usage(err.to_string()),
        _ => Failure::from(err),
    });
    deliver(args, sent, output, values)
}

/// Sends the form of `-F`'s parts; `Err` is an error before the upload began.
fn send_form(
    client: &Client,
    args: &UploadArgs,
    pcap: Option<&PcapTrace>,
) -> Result<chunkwire::Result<chunkwire::Response>, Failure> {
    let mut form = chunkwire::Form::new().require_length(args.content_length);
    for part in &args.form {
        form = form.part(&part.name, form_part(part));
    }
    let (meter, progress) = one_upload_meter(args);
    let tracing = Tracing {
        append: false,
        pcap,
    };
    let request = request_for(client, args, &args.url, None, tracing, progress)?;
    let sent = request.send_form(form);
    if let Some(meter) = &meter {
        meter.borrow_mut().finish();
    }
    Ok(sent)
}

/// The part one `-F` asks for, laid out as curl lays it out: a file part has the path's
/// name and a type guessed from its extension; standard input (`@-`) is named `-` and has
/// no type; `<file` and text have neither.
fn form_part(part: &args::FormArg) -> chunkwire::FormPart<'static> {
    use args::FormValue;
    let made = match &part.value {
        FormValue::Text(text) => chunkwire::FormPart::text(text.clone()),
        FormValue::File(path) if is_stdin(path) => stdin_part().file_name("-").content_type(""),
        FormValue::File(path) => chunkwire::FormPart::file(path.clone()),
        FormValue::Content(path) if is_stdin(path) => stdin_part().content_type(""),
        FormValue::Content(path) => chunkwire::FormPart::file(path.clone())
            .without_file_name()
            .content_type(""),
    };
    let made = match &part.file_name {
        Some(name) => made.file_name(name.clone()),
        None => made,
    };
    match &part.content_type {
        Some(content_type) => made.content_type(content_type.clone()),
        None => made,
    }
}

/// Standard input as a part: redirected from a regular file (`@- < file`), sized and
/// rewindable from where it stands; else (a pipe, a terminal) streamed, of unknown size.
fn stdin_part() -> chunkwire::FormPart<'static> {
    match stdin_file() {
        Some(file) if file.metadata().is_ok_and(|meta| meta.is_file()) => {
            chunkwire::FormPart::seekable(file)
        }
        _ => chunkwire::FormPart::reader(io::stdin()),
    }
}

/// The response of one upload: `-v` prints its head, `-f` fails on 400 and above, and
/// its body goes to `output`.
fn deliver(
    args: &UploadArgs,
    sent: Result<chunkwire::Response, Failure>,
    output: &mut Output,
    values: &mut Values,
) -> Result<(), Failure> {
    let mut response = sent?;
    values.take(&response.transfer());
    values.take_headers(response.headers());
    if args.verbose {
        let mut err = io::stderr().lock();
        let _ = writeln!(
            err,
            "< HTTP/1.{} {} {}",
            response.version_minor(),
            response.status().as_u16(),
            response.reason()
        );
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes());
            // A Location may carry credentials: never print a password.
            let shown = if value.contains("://") {
                chunkwire::redact_userinfo(&value)
            } else {
                value.into_owned()
            };
            let _ = writeln!(err, "< {name}: {shown}");
        }
        if !response.upload_complete() {
            let _ = writeln!(
                err,
                "* the server answered before the body was complete; upload stopped after {} body bytes",
                response.progress().body_bytes_sent
            );
        }
    }
    let status = response.status();
    if args.fail && status.as_u16() >= 400 {
        return Err(Failure {
            message: format!(
                "the server returned {} {} ({} body bytes sent)",
                status.as_u16(),
                response.reason(),
                response.progress().body_bytes_sent
            ),
            code: 22,
        });
    }
    let mut counted = Counted {
        out: output,
        bytes: 0,
    };
    let copied = response.copy_to(&mut counted);
    values.size_download = counted.bytes;
    values.take(&response.transfer());
    copied?;
    Ok(())
}

/// Response bytes kept per upload with -Z: each body is written whole when its upload
/// ends, so bodies of uploads that ran at once never interleave in the output.
const PARALLEL_KEPT_RESPONSE: usize = 1 << 20;

/// The body bytes of uploads that run at once, summed for one progress line.
#[derive(Default)]
struct TotalProgress {
    sent: Vec<u64>,
    sum: u64,
    total: Option<u64>,
    started: Option<Instant>,
}

/// `-Z`: every file at once on one thread ([`chunkwire::Uploads`]), at most
/// `--parallel-max` at a time. Each upload gets a result line on stderr (failures even with
/// `-s`); the exit status is 0 when all succeeded, else that of the first FILE that failed.
fn upload_parallel<'c>(
    client: &'c Client,
    args: &UploadArgs,
    checked: &[SourceId],
    output: &mut Output,
    write_out: Option<&WriteOut>,
    pcap: Option<&PcapTrace>,
) -> Result<ExitCode, Failure> {
    // Files are opened when their upload first reads them, so thousands of queued files do
    // not hold thousands of descriptors; what can be checked without opening is checked now.
    // The sizes come from the check before connecting: one path lookup less per file.
    let mut sizes = vec![None; args.files.len()];
    for id in checked {
        if let Some(arg) = id.arg {
            sizes[arg] = Some(id.size);
        }
    }
    let mut sources = Vec::with_capacity(args.files.len());
    for (file, size) in args.files.iter().zip(sizes) {
        let name = file.display().to_string();
        let Some(size) = size else {
            // Its reads would block the thread every other upload runs on.
            return Err(Failure::usage(format!(
                "-Z uploads regular files only: {} is a pipe, a device or a terminal",
                if is_stdin(file) {
                    "standard input"
                } else {
                    &name
                }
            )));
        };
        sources.push(OpenOnRead {
            path: file.clone(),
            name,
            size,
            file: None,
        });
    }
    let meter = progress_meter(args);
    let totals = Rc::new(RefCell::new(TotalProgress {
        sent: vec![0; sources.len()],
        total: Some(sources.iter().map(|s| s.size).sum()),
        ..TotalProgress::default()
    }));
    let mut uploads = client
        .uploads()?
        .max_active(args.parallel_max)
        .keep_response_body(PARALLEL_KEPT_RESPONSE);
    let mut names = std::collections::HashMap::new();
    // The set is fed as it drains, a few uploads ahead of its limit, so the memory of a
    // run of 10,000 files is that of the uploads at once, not of all of them.
    let ahead = args.parallel_max.saturating_mul(2).max(16);
    let mut waiting = args.files.iter().zip(sources).enumerate();
    let mut feed = |uploads: &mut chunkwire::Uploads<'c>,
                    names: &mut std::collections::HashMap<_, _>|
     -> Result<(), Failure> {
        while uploads.len() < ahead {
            let Some((index, (file, source))) = waiting.next() else {
                return Ok(());
            };
            let url = url_for(args, file);
            let progress = meter.as_ref().map(|meter| {
                let (meter, totals) = (Rc::clone(meter), Rc::clone(&totals));
                Box::new(move |p: &UploadProgress| {
                    let mut t = totals.borrow_mut();
                    let started = *t.started.get_or_insert_with(Instant::now);
                    // An upload sent again (a redirect, a retry) starts again from 0: the
                    // total holds each upload's latest figure, not a sum of its attempts.
                    t.sum = t.sum - t.sent[index] + p.body_bytes_sent;
                    t.sent[index] = p.body_bytes_sent;
                    let elapsed = started.elapsed();
                    let all = UploadProgress {
                        body_bytes_sent: t.sum,
                        total: t.total,
                        elapsed,
                        bytes_per_second: t.sum as f64 / elapsed.as_secs_f64().max(1e-9),
                    };
                    drop(t);
                    meter.borrow_mut().update(&all);
                }) as ProgressFn
            });
            let tracing = Tracing {
                append: false,
                pcap,
            };
            let request = request_for(client, args, &url, Some(source.size), tracing, progress)?;
            let id = uploads.add_seekable(request, source);
            names.insert(id, (index, file.display().to_string(), url));
        }
        Ok(())
    };
    feed(&mut uploads, &mut names)?;
    let mut first_failure: Option<(usize, Failure)> = None;
    let mut failed = 0;
    while let Some(finished) = uploads.next_finished() {
        feed(&mut uploads, &mut names)?;
        let (index, name, url) = names.remove(&finished.id).expect("every id is named");
        let mut values = Values::new(&url, &args.method);
        match &finished.result {
            Ok(completed) => {
                values.take(&completed.transfer);
                values.take_headers(&completed.headers);
                // -f stops at the head, as curl does: no body is written.
                if !(args.fail && completed.status.as_u16() >= 400) {
                    values.size_download = completed.body_len;
                }
            }
            Err(err) => {
                if let Some(transfer) = err.transfer() {
                    values.take(transfer);
                }
            }
        }
        let url = chunkwire::redact_userinfo(&url);
        let outcome = finished
            .result
            .map_err(Failure::from)
            .and_then(|completed| parallel_outcome(args, completed, output));
        if let Some(format) = write_out {
            write_values(format, &mut values, outcome.as_ref().err());
        }
        let line = match outcome {
            Ok(line) => {
                if !args.silent {
                    if let Some(meter) = &meter {
                        meter.borrow_mut().finish();
                    }
                    say!("chunkwire: {name} -> {url}: {line}");
                }
                continue;
            }
            Err(failure) => failure,
        };
        failed += 1;
        if let Some(meter) = &meter {
            meter.borrow_mut().finish();
        }
        say!("chunkwire: {name} -> {url}: {}", line.message);
        if first_failure
            .as_ref()
            .is_none_or(|(first, _)| index < *first)
        {
            first_failure = Some((index, line));
        }
    }
    if let Some(meter) = &meter {
        meter.borrow_mut().finish();
    }
    match first_failure {
        None => Ok(ExitCode::SUCCESS),
        Some((_, failure)) => Err(Failure {
            message: format!(
                "{failed} of {} uploads failed; the exit code is the first failed file's",
                args.files.len()
            ),
            code: failure.code,
        }),
    }
}

/// What one finished upload of -Z came to: its result line, or its failure. Its response
/// body goes to the output whole.
fn parallel_outcome(
    args: &UploadArgs,
    completed: chunkwire::Completed,
    output: &mut Output,
) -> Result<String, Failure> {
    let status = completed.status;
    let sent = completed.progress.body_bytes_sent;
    if args.fail && status.as_u16() >= 400 {
        return Err(Failure {
            message: format!(
                "the server returned {} {} ({sent} body bytes sent)",
                status.as_u16(),
                completed.reason
            ),
            code: 22,
        });
    }
    if completed.body_len > completed.body.len() as u64 {
        return Err(Failure {
            message: format!(
                "the response body has {} bytes; -Z keeps at most {PARALLEL_KEPT_RESPONSE}",
                completed.body_len
            ),
            code: 23,
        });
    }
    output
        .write_all(&completed.body)
        .and_then(|()| output.finish())
        .map_err(body_write_failure)?;
    let whole = if completed.upload_complete {
        String::new()
    } else {
        "; the server answered before the body was complete".to_owned()
    };
    Ok(format!(
        "{} {} ({sent} body bytes sent{whole})",
        status.as_u16(),
        completed.reason
    ))
}

fn sink(args: &SinkArgs) -> Result<ExitCode, Failure> {
    let listen = &args.listen;
    let mut sink = Sink::bind(listen)
        .map_err(|e| Failure {
            message: format!("cannot listen on {listen}: {e}"),
            code: 7,
        })?
        .max_connections(args.max_connections);
    if let Some(max) = args.max_body {
        sink = sink.max_body(max);
    }
    let addr = sink
        .local_addr()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut scheme = "http";
    if args.tls {
        let ca_out = &args.ca_out;
        let tls = ServerTls::self_signed().map_err(|e| Failure::usage(e.to_string()))?;
        std::fs::write(ca_out, tls.ca_pem())
            .map_err(|e| Failure::usage(format!("cannot write {}: {e}", ca_out.display())))?;
        say!(
            "chunkwire sink: TLS with a new CA; trust it with --cacert {}",
            ca_out.display()
        );
        sink = sink.with_tls(tls);
        scheme = "https";
    }
    if let Some(writer) = args.trace.writer(false)? {
        sink = sink.with_trace(writer);
    }
    say!("chunkwire sink listening on {scheme}://{addr}/ (Ctrl-C to stop)");
    sink.serve(|report: &Report| println!("{}", report.to_json()));
    Ok(ExitCode::SUCCESS)
}

/// `-` names standard input.
fn is_stdin(file: &Path) -> bool {
    file.as_os_str() == "-"
}

/// One upload's body.
enum Source {
    /// A regular file, or standard input redirected from one (`- < file`): its size is
    /// known and it can be rewound (for a redirect or a retry) to where it started.
    Regular(KnownSize),
    /// A FIFO, a device or the like: read to its end, once.
    Other(File),
    /// Standard input that is not a regular file (a pipe, a terminal): read once.
    Stdin,
}

impl Source {
    fn open(file_name: &Path) -> Result<Source, Failure> {
        if is_stdin(file_name) {
            let name = "standard input";
            let Some(mut file) = stdin_file() else {
                return Ok(Source::Stdin);
            };
            let Ok(meta) = file.metadata() else {
                return Ok(Source::Stdin);
            };
            if !meta.is_file() {
                return Ok(Source::Stdin);
            }
            // `(head -c 10 >/dev/null; chunkwire upload URL -) < file`: the body is what
            // is left from the shared offset on, not the whole file. The duplicated
            // descriptor shares that offset, and rewinding goes back to it.
            let start = file.stream_position().map_err(|e| unreadable(name, e))?;
            return Ok(Source::Regular(KnownSize::new(
                file,
                name,
                meta.len(),
                start,
            )));
        }
        let name = file_name.display().to_string();
        let file = File::open(file_name).map_err(|e| unreadable(&name, e))?;
        let meta = file.metadata().map_err(|e| unreadable(&name, e))?;
        Ok(if meta.is_file() {
            Source::Regular(KnownSize::new(file, &name, meta.len(), 0))
        } else {
            Source::Other(file)
        })
    }

    /// The bytes the body will have, when that is known.
    fn known_len(&self) -> Option<u64> {
        match self {
            Source::Regular(file) => Some(file.size.saturating_sub(file.pos)),
            Source::Other(_) | Source::Stdin => None,
        }
    }
}

/// A regular file whose size was taken when its upload began. Ending before that size
/// is an error (`UnexpectedEof`), so that a file that shrinks while it is sent fails the
/// upload at its read-source stage, before the last chunk, as a Content-Length upload
/// does, rather than arriving as a complete, shorter body. Growing is not checked: a
/// chunked upload sends what is there when it reaches the end.
struct KnownSize {
    file: File,
    name: String,
    /// The file's size when it was opened.
    size: u64,
    /// The file offset; a seek (a rewind for a redirect or retry) sets it anew.
    pos: u64,
}

impl KnownSize {
    fn new(file: File, name: &str, size: u64, pos: u64) -> Self {
        KnownSize {
            file,
            name: name.to_owned(),
            size,
            pos,
        }
    }
}

impl Read for KnownSize {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(out)?;
        if n == 0 && !out.is_empty() && self.pos < self.size {
            let now = self.file.metadata().map_or(self.pos, |m| m.len());
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} shrank from {} to {now} bytes while it was being sent",
                    self.name, self.size
                ),
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for KnownSize {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }

    /// Known without asking the kernel: one `lseek` less per upload of many small files.
    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

/// A regular file for -Z, opened (and its size checked, as [`KnownSize`] does) at its first
/// read or seek.
struct OpenOnRead {
    path: PathBuf,
    name: String,
    size: u64,
    file: Option<KnownSize>,
}

impl OpenOnRead {
    fn open(&mut self) -> io::Result<&mut KnownSize> {
        if self.file.is_none() {
            let file = File::open(&self.path)
                .map_err(|e| named(&format!("cannot open {}", self.name), e))?;
            self.file = Some(KnownSize::new(file, &self.name, self.size, 0));
        }
        Ok(self.file.as_mut().expect("just opened"))
    }
}

impl Read for OpenOnRead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.open()?.read(out)
    }
}

impl Seek for OpenOnRead {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match (&mut self.file, to) {
            // Back to the start before it was ever read: nothing to do yet.
            (None, SeekFrom::Start(0)) => Ok(0),
            _ => self.open()?.seek(to),
        }
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.file.as_ref().map_or(0, |f| f.pos))
    }
}

/// Standard input's file descriptor, duplicated (it shares the file offset).
fn stdin_file() -> Option<File> {
    use std::os::fd::AsFd;
    Some(File::from(io::stdin().as_fd().try_clone_to_owned().ok()?))
}

/// A deterministic stream of `len` pseudo-random bytes that keeps the CRC-32 of what it gave.
struct GeneratedStream {
    left: u64,
    state: u64,
    crc: crc32fast::Hasher,
}

impl Read for GeneratedStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = out
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for word in out[..n].chunks_mut(8) {
            // xorshift64: fast, and different bytes everywhere, so a misplaced chunk shows.
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            word.copy_from_slice(&self.state.to_le_bytes()[..word.len()]);
        }
        self.crc.update(&out[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// The process's peak resident set size, from /proc (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn demo(args: &DemoArgs) -> Result<ExitCode, Failure> {
    let DemoArgs {
        size_mib,
        chunk_size,
        tls,
    } = *args;
    let io_failure = |what: &str, e: io::Error| Failure {
        message: format!("{what}: {e}"),
        code: 1,
    };
    let mut sink =
        Sink::bind("127.0.0.1:0").map_err(|e| io_failure("cannot start the loopback sink", e))?;
    let mut client_tls = None;
    if tls {
        let server_tls =
            ServerTls::self_signed().map_err(|e| io_failure("cannot make a certificate", e))?;
        client_tls = Some(
            TlsConfig::builder()
                .add_ca_pem(server_tls.ca_pem().as_bytes())
                .and_then(|b| b.build())
                .map_err(Error::from)?,
        );
        sink = sink.with_tls(server_tls);
    }
    let sink = sink
        .spawn()
        .map_err(|e| io_failure("cannot start the loopback sink", e))?;
    let client = client(chunk_size, None, None, client_tls)?;
    // The demo's sink is on loopback: no proxy of the environment stands in between.
    let client = client.rebuild().proxy_from_environment(false).build()?;
    let len = size_mib * 1024 * 1024;
    let mut source = GeneratedStream {
        left: len,
        state: 0x9E37_79B9_7F4A_7C15,
        crc: crc32fast::Hasher::new(),
    };
    let url = sink.url("/demo/upload");
    println!(
        "chunkwire demo: PUT {size_mib} MiB, chunked, {} byte chunks, to the loopback sink at {url}",
        client.chunk_size()
    );
    let started = Instant::now();
    let mut response = client
        .upload(&url)
        .header("Content-Type", "application/octet-stream")
        .trailer("X-Demo", "done")
        .send(&mut source)?;
    let body = response.text()?;
    let elapsed = started.elapsed();
    let progress = response.progress();
    let sent_crc = source.crc.clone().finalize();
    let report = sink
        .next_report(Duration::from_secs(10))
        .ok_or_else(|| Failure::usage("the sink sent no report"))?;
    let gib_per_s = progress.body_bytes_sent as f64 / elapsed.as_secs_f64() / (1u64 << 30) as f64;
    println!(
        "status:       {} {}",
        response.status().as_u16(),
        response.reason()
    );
    if let Some(tls) = response.tls() {
        println!(
            "tls:          {} {} ALPN {}",
            tls.version,
            tls.cipher_suite,
            tls.alpn.as_deref().unwrap_or("none")
        );
    }
    println!(
        "body bytes:   {} sent, {} received by the sink",
        progress.body_bytes_sent, report.bytes
    );
    println!(
        "wire bytes:   {} (framing overhead {} bytes)",
        progress.wire_bytes_sent,
        progress.wire_bytes_sent - progress.body_bytes_sent
    );
    println!(
        "chunks:       {} (largest {} bytes)",
        report.chunks, report.largest_chunk
    );
    println!(
        "time:         {:.3} s, {gib_per_s:.2} GiB/s",
        elapsed.as_secs_f64()
    );
    if let Some(kib) = peak_rss_kib() {
        println!(
            "peak memory:  {:.1} MiB resident (whole process: client, sink thread and its 256 KiB buffer)",
            kib as f64 / 1024.0
        );
    }
    println!("sink report:  {}", body.trim_end());
    let intact = report.bytes == len && report.crc32 == sent_crc && response.status().is_success();
    println!(
        "intact:       {} (CRC-32 sent {sent_crc:08x}, received {:08x})",
        if intact { "yes" } else { "NO" },
        report.crc32
    );
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_size_fails_at_an_early_end_and_counts_afresh_after_a_seek() {
        let path =
            std::env::temp_dir().join(format!("chunkwire-known-size-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        let mut body = KnownSize::new(File::open(&path).unwrap(), "f", 10, 0);
        let mut buf = [0u8; 4];
        assert_eq!(body.read(&mut buf).unwrap(), 4);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(6)
            .unwrap();
        assert_eq!(body.read(&mut buf).unwrap(), 2);
        let err = body.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            err.to_string(),
            "f shrank from 10 to 6 bytes while it was being sent"
        );
        // Rewound and whole again: read to the end without an error.
        std::fs::write(&path, b"0123456789").unwrap();
        body.rewind().unwrap();
        let mut all = Vec::new();
        body.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"0123456789");
        // An empty buffer is not an end.
        assert_eq!(body.read(&mut []).unwrap(), 0);
        std::fs::remove_file(&path).unwrap();
    }
}
