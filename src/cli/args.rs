//! The command line: what `chunkwire upload`, `sink` and `demo` accept, parsed with lexopt,
//! and the help text. Parsing is a plain loop over the arguments (lexopt gives the
//! tokens: `-X PUT`, `-XPUT`, `--request=PUT`, `-sf`, `--`) rather than a derive-based
//! parser, because the whole program's peak resident memory is a benchmark target and a
//! large parser's start-up was a third of it (README "Benchmark").

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use chunkwire::checksum::ChecksumAlgorithm;
use lexopt::Arg;
use lexopt::prelude::*;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Upload(Box<UploadArgs>),
    Sink(SinkArgs),
    Demo(DemoArgs),
    Walkthrough(WalkthroughArgs),
    /// Print this text on standard output and exit 0 (`--help`, `--version`).
    Print(String),
}

#[derive(Debug)]
pub struct UploadArgs {
    pub url: String,
    pub files: Vec<PathBuf>,
    pub method: String,
    pub headers: Vec<String>,
    pub trailers: Vec<String>,
    pub chunk_size: Option<usize>,
    pub content_length: bool,
    pub expect_continue: bool,
    pub checksum: Option<ChecksumAlgorithm>,
    pub location: bool,
    pub max_redirs: u32,
    pub limit_rate: Option<u64>,
    pub progress_bar: bool,
    pub silent: bool,
    pub expect100_timeout: Duration,
    pub output: Option<PathBuf>,
    pub fail: bool,
    pub connect_timeout: Option<Duration>,
    pub max_time: Option<Duration>,
    pub verbose: bool,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub trace: TraceArgs,
    pub trace_pcap: Option<PathBuf>,
    pub parallel: bool,
    pub parallel_max: usize,
    pub proxy: ProxyArgs,
    /// `-w`: the format as given (`@file` is read by the caller).
    pub write_out: Option<String>,
    /// `-F` and `--form-string` parts, in order: with them the body is a form.
    pub form: Vec<FormArg>,
}

/// One `-F name=...` or `--form-string name=value`, as curl reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormArg {
    pub name: String,
    pub value: FormValue,
    /// `;type=`: the part's Content-Type.
    pub content_type: Option<String>,
    /// `;filename=`: the part's file name instead of the path's.
    pub file_name: Option<String>,
}

/// What a form part's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormValue {
    Text(String),
    /// `name=@path`: a file part (`-`: standard input, of unknown size).
    File(PathBuf),
    /// `name=<path`: the file's content as a field value, without a file name.
    Content(PathBuf),
}

impl FormValue {
    /// The file it reads, if any (`-` for standard input).
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            FormValue::Text(_) => None,
            FormValue::File(path) | FormValue::Content(path) => Some(path),
        }
    }
}

/// Reads a `-F` argument with curl's syntax: `name=value`, `name=@file`, `name=<file`, a
/// value in double quotes (`\\` and `\"` inside), then `;type=` and `;filename=`. Unlike
/// curl, an unknown `;param` is refused rather than dropped with the rest of the value.
pub fn parse_form(arg: &str) -> Result<FormArg, String> {
    let (name, rest) = arg
        .split_once('=')
        .ok_or_else(|| format!("-F {arg:?} is not of the form 'name=value'"))?;
    let (kind, rest) = match rest.as_bytes().first() {
        Some(b'@') => (Some(b'@'), &rest[1..]),
        Some(b'<') => (Some(b'<'), &rest[1..]),
        _ => (None, rest),
    };
    let (word, mut rest) = form_word(rest).map_err(|why| format!("-F {arg:?}: {why}"))?;
    let value = match kind {
        Some(b'@') if word.is_empty() => return Err(format!("-F {arg:?}: no file name after @")),
        Some(b'<') if word.is_empty() => return Err(format!("-F {arg:?}: no file name after <")),
        Some(b'@') => FormValue::File(word.into()),
        Some(_) => FormValue::Content(word.into()),
        None => FormValue::Text(word),
    };
    let mut form = FormArg {
        name: name.to_owned(),
        value,
        content_type: None,
        file_name: None,
    };
    while let Some(params) = rest.strip_prefix(';') {
        let params = params.trim_start();
        let (key, value, has_value) = match params.split_once('=') {
            Some((key, value)) => (key, value, true),
            None => (params, "", false),
        };
        let (word, after) = form_word(value).map_err(|why| format!("-F {arg:?}: {why}"))?;
        // A known parameter without its value is a typo, not a request for an empty one:
        // `;filename` would send filename="" (to servers, "no file chosen") and `;type` drop
        // the part's Content-Type. curl refuses an empty type too.
        match key.trim().to_ascii_lowercase().as_str() {
            "type" if word.trim().is_empty() => {
                return Err(format!(
                    "-F {arg:?}: ;type needs a type, as in ;type=text/plain"
                ));
            }
            "filename" if !has_value => {
                return Err(format!(
                    "-F {arg:?}: ;filename needs a value, as in ;filename=NAME \
                     (;filename= sends an empty one)"
                ));
            }
            "type" => form.content_type = Some(word),
            "filename" => form.file_name = Some(word),
            "headers" | "encoder" => {
                return Err(format!("-F {arg:?}: ;{} is not supported", key.trim()));
            }
            _ => {
                return Err(format!(
                    "-F {arg:?}: unknown parameter {:?} after ';' (quote a value that holds \
                     ';' as name=\"a;b\", or use --form-string)",
                    params.split(';').next().unwrap_or(params)
                ));
            }
        }
        rest = after;
    }
    Ok(form)
}

/// A value up to the next `;`, or in double quotes; the rest after it.
fn form_word(text: &str) -> Result<(String, &str), &'static str> {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find(';').unwrap_or(text.len());
        return Ok((text[..end].to_owned(), &text[end..]));
    };
    let mut word = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => word.push(escaped),
                None => return Err("a quoted value ends in a backslash"),
            },
            '"' => {
                let rest = &quoted[i + 1..];
                if !rest.is_empty() && !rest.starts_with(';') {
                    return Err("a closing quote must be followed by ';' or the end");
                }
                return Ok((word, rest));
            }
            other => word.push(other),
        }
    }
    Err("a quoted value has no closing quote")
}

/// The proxy options, with curl's names.
#[derive(Debug, Default)]
pub struct ProxyArgs {
    /// `-x`: `[scheme://][user:password@]host[:port]`.
    pub proxy: Option<String>,
    /// `--noproxy`: hosts reached directly, in place of `no_proxy`.
    pub noproxy: Option<String>,
    /// `-U user:password`.
    pub user: Option<String>,
    /// `-p`: CONNECT for http:// targets too.
    pub tunnel: bool,
    /// `--proxy-header`, repeatable.
    pub headers: Vec<String>,
    /// `--proxy-cacert`.
    pub cacert: Option<PathBuf>,
    /// `--proxy-trailers tunnel|refuse|send`.
    pub trailers: chunkwire::ProxyTrailers,
}

#[derive(Debug)]
pub struct SinkArgs {
    pub listen: String,
    pub max_connections: usize,
    /// `--max-body`: longer bodies are refused with a 413.
    pub max_body: Option<u64>,
    pub tls: bool,
    pub ca_out: PathBuf,
    pub trace: TraceArgs,
}

/// `chunkwire walkthrough`: where the document goes (`None`: standard output).
#[derive(Debug)]
pub struct WalkthroughArgs {
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
pub struct DemoArgs {
    pub size_mib: u64,
    pub chunk_size: Option<usize>,
    pub tls: bool,
}

/// Where the wire trace goes and in which form; at most one form at a time.
#[derive(Debug, Default)]
pub struct TraceArgs {
    pub destination: Option<(String, TraceForm)>,
    pub data_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceForm {
    Ascii,
    Hex,
    Json,
}

impl TraceForm {
    pub fn option(self) -> &'static str {
        match self {
            TraceForm::Ascii => "--trace-ascii",
            TraceForm::Hex => "--trace",
            TraceForm::Json => "--trace-json",
        }
    }
}

const DEFAULT_TRACE_DATA_BYTES: usize = 64;

impl TraceArgs {
    fn new() -> Self {
        TraceArgs {
            destination: None,
            data_bytes: DEFAULT_TRACE_DATA_BYTES,
        }
    }

    /// The trace option `arg` names, if it is one.
    fn option(arg: &Arg<'_>) -> Option<TraceOption> {
        Some(match arg {
            Long("trace-ascii") => TraceOption::Form(TraceForm::Ascii),
            Long("trace") => TraceOption::Form(TraceForm::Hex),
            Long("trace-json") => TraceOption::Form(TraceForm::Json),
            Long("trace-data-bytes") => TraceOption::DataBytes,
            _ => return None,
        })
    }

    /// Takes the value of a trace option.
    fn take(
        &mut self,
        option: TraceOption,
        parser: &mut lexopt::Parser,
    ) -> Result<(), lexopt::Error> {
        let form = match option {
            TraceOption::DataBytes => {
                self.data_bytes = parser.value()?.parse()?;
                return Ok(());
            }
            TraceOption::Form(form) => form,
        };
        let path = parser.value()?.string()?;
        if let Some((_, earlier)) = &self.destination {
            return Err(format!(
                "{} cannot be used with {}: one trace at a time",
                form.option(),
                earlier.option()
            )
            .into());
        }
        self.destination = Some((path, form));
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum TraceOption {
    Form(TraceForm),
    DataBytes,
}

pub const VERSION: &str = concat!("chunkwire ", env!("CARGO_PKG_VERSION"), "\n");

const MAIN_HELP: &str = "\
HTTP/1.1 streaming uploads in constant memory

Usage: chunkwire <COMMAND> [OPTIONS]

Commands:
  upload  Upload FILE (or standard input, `-`) to URL, chunked unless --content-length;
          or a multipart form (-F), with a Content-Length when every size is known
  sink    Run a loopback upload server that answers each request with a JSON report
  demo    Upload a generated stream to a built-in sink on loopback and show what happened
  walkthrough
          Run the exchanges of the wire walkthrough on loopback and write it as Markdown
          (docs/wire-walkthrough.md)
  help    Print this text, or a command's (`chunkwire help upload`)

Options:
  -h, --help     Print help
  -V, --version  Print version
";

const UPLOAD_HELP: &str = "\
Upload FILE (or standard input, `-`) to URL, chunked unless --content-length

Usage: chunkwire upload [OPTIONS] <URL> <FILE>...
       chunkwire upload [OPTIONS] <URL> -F <name=value>...

Arguments:
  <URL>      The http:// or https:// URL to upload to. With several files and a URL that
             ends in `/`, each file goes to the URL followed by its name.
  <FILE>...  The files to upload, or `-` for standard input; several go one after another
             over one kept-alive connection, or at once with -Z.

Request:
  -X, --request <METHOD>          Request method [default: PUT] (alias --method)
  -H, --header <'Name: value'>    Extra header (repeatable)
      --trailer <'Name: value'>   Trailer field sent after the last chunk (repeatable)
      --chunk-size <SIZE>         Chunk payload size in bytes (k and M suffixes allowed)
      --content-length            Send Content-Length (the file's size) instead of chunked
      --expect-continue           Send `Expect: 100-continue` and hold the body until the
                                  server says go (or --expect100-timeout passes). Also set
                                  by -H 'Expect: 100-continue'.
      --expect100-timeout <SECS>  Seconds to wait for `100 Continue` [default: 1]
      --checksum <ALGORITHM>      Checksum the body while it streams and send it as a
                                  `Content-Digest` trailer: sha256 or crc32c
  -L, --location                  Follow redirects: 307/308 send the file again, 303 (and
                                  301/302 after POST) become GET
      --max-redirs <N>            The most redirects -L follows [default: 50]
      --limit-rate <RATE>         Write at most RATE bytes a second (k, M, G suffixes)

Form (multipart/form-data, curl's syntax; no FILE argument, method POST unless -X):
  -F, --form <name=value>         A text field (repeatable). `name=@path` sends a file
                                  part, `name=@-` standard input (a pipe is streamed,
                                  chunked), `name=<path` a file's content as a field
                                  value. Add `;type=TYPE` and `;filename=NAME`; quote a
                                  value that holds `;` (name=@\"a;b.txt\"). With every
                                  size known the form has a Content-Length;
                                  --content-length requires it.
      --form-string <name=value>  A text field taken as it is: no @, < or ; meaning

Connection:
      --connect-timeout <SECS>    Seconds the connection may take to open
  -m, --max-time <SECS>           Seconds the whole exchange may take
      --cacert <FILE>             Also trust the CA certificates in this PEM file (https)
      --cert <FILE>               Client certificate chain, PEM (https; needs --key)
      --key <FILE>                Private key of --cert, PEM
  -Z, --parallel                  Upload the files at once, on one thread, each with a
                                  result line on stderr; exit 0 only if all succeeded,
                                  else the exit code of the first failed FILE
      --parallel-max <N>          The most uploads -Z runs at once [default: 50]

Proxy (the environment's https_proxy, http_proxy, all_proxy and no_proxy are read by
curl's rules unless -x or --noproxy replace them):
  -x, --proxy <[scheme://][user:password@]host[:port]>
                                  Upload through this HTTP proxy (http:// or https://;
                                  port 1080 if none, 443 for https://; `''`: no proxy)
      --noproxy <LIST>            Hosts reached directly: comma-separated names (and
                                  their subdomains), addresses, CIDR ranges, `*` for all
  -U, --proxy-user <USER:PASSWORD>
                                  Basic authentication to the proxy (only to the proxy)
  -p, --proxytunnel               A CONNECT tunnel for http:// targets too
      --proxy-header <'Name: value'>
                                  Header for the proxy only (repeatable)
      --proxy-cacert <FILE>       Also trust these CA certificates for an https:// proxy
      --proxy-trailers <MODE>     An upload with trailers that would go to the proxy in
                                  absolute form (where proxies drop them): tunnel (through
                                  CONNECT), refuse, or send (anyway) [default: tunnel]

Output:
  -o, --output <FILE>             Write the response body here instead of standard output
  -f, --fail                      Exit with code 22 when the status is 400 or above
  -w, --write-out <FORMAT>        After each upload, write FORMAT with curl's variables:
                                  %{http_code} %{size_upload} %{time_total} %{json} ...
                                  (see the README); `\\n`, %{stderr}, %{stdout};
                                  @FILE reads FORMAT from FILE (@-: standard input)
  -v, --verbose                   Print the response status line and headers on stderr
  -#, --progress-bar              Show a progress bar on stderr (the default on a terminal)
  -s, --silent                    No progress bar
      --trace-pcap <FILE>         Write a packet capture (pcapng) of the connections to
                                  FILE for Wireshark; over TLS it holds the session keys
                                  (`-`: standard output, with -o for the body)
  -h, --help                      Print help

Environment:
  SSLKEYLOGFILE                   Append the TLS secrets of the connections to this file
                                  (NSS key log format), to decrypt a capture of them
";

const TRACE_HELP: &str = "
Wire trace:
      --trace-ascii <FILE>        Trace every byte sent and received, labelled, to FILE
                                  (`-`: standard output)
      --trace <FILE>              Like --trace-ascii, with every byte as a hex dump
      --trace-json <FILE>         Like --trace, one JSON object a line (bytes in hex)
      --trace-data-bytes <N>      Payload bytes shown per chunk by --trace-ascii before
                                  the rest is summarised [default: 64]
";

const SINK_HELP: &str = "\
Run a loopback upload server that answers each request with a JSON report

Usage: chunkwire sink [OPTIONS]

Options:
      --listen <ADDR>             Address to listen on [default: 127.0.0.1:8080]
      --max-connections <N>       Connections served at once; more are answered 503
                                  [default: 1024]
      --max-body <SIZE>           Answer 413 to a body longer than SIZE (k and M suffixes
                                  allowed): at once for a longer Content-Length (instead
                                  of 100 Continue), else when the chunks pass SIZE
      --tls                       Serve https with a new self-signed CA; its certificate is
                                  written to --ca-out
      --ca-out <FILE>             Where --tls writes the CA certificate (PEM) for clients
                                  to trust [default: chunkwire-sink-ca.pem]
  -h, --help                      Print help
";

const WALKTHROUGH_HELP: &str = "\
Run the exchanges of the wire walkthrough on loopback and write it as Markdown

Each exchange (a chunked upload, 100-continue answered and refused, an early 413, a
checksum trailer, a multipart form, a CONNECT tunnel and trailers through a proxy) is run
with the chunkwire command shown for it, against a sink (and a CONNECT proxy) this command
starts on loopback, and its --trace-ascii output goes into the document with the ports
shown as 18081 (and 3128), with the capture command for Wireshark (--trace-pcap).
docs/wire-walkthrough.md is its output.

Usage: chunkwire walkthrough [OPTIONS]

Options:
  -o, --output <FILE>             Write the document here instead of standard output
  -h, --help                      Print help
";

const DEMO_HELP: &str = "\
Upload a generated stream to a built-in sink on loopback and show what happened

Usage: chunkwire demo [OPTIONS]

Options:
      --size-mib <MIB>            MiB to upload [default: 512]
      --chunk-size <SIZE>         Chunk payload size in bytes (k and M suffixes allowed)
      --tls                       Upload over TLS (the sink gets a throwaway CA that the
                                  client trusts)
  -h, --help                      Print help
";

/// Parses the arguments after the program name. An error is one line for standard error,
/// ending in a pointer to `--help`.
pub fn parse<I>(args: I) -> Result<Command, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    parse_command(&mut parser).map_err(|(err, help)| format!("{err}\n\nFor more, try '{help}'"))
}

type Failed = (lexopt::Error, &'static str);

fn parse_command(parser: &mut lexopt::Parser) -> Result<Command, Failed> {
    let top = |err| (err, "chunkwire --help");
    let command = match parser.next().map_err(top)? {
        Some(Value(command)) => command.string().map_err(top)?,
        Some(Short('h') | Long("help")) => return Ok(Command::Print(MAIN_HELP.into())),
        Some(Short('V') | Long("version")) => return Ok(Command::Print(VERSION.into())),
        Some(other) => return Err(top(other.unexpected())),
        None => {
            return Err(top(
                "a command is needed: upload, sink, demo or walkthrough".into(),
            ));
        }
    };
    match command.as_str() {
        "upload" => parse_upload(parser).map_err(|e| (e, "chunkwire upload --help")),
        "sink" => parse_sink(parser).map_err(|e| (e, "chunkwire sink --help")),
        "demo" => parse_demo(parser).map_err(|e| (e, "chunkwire demo --help")),
        "walkthrough" => parse_walkthrough(parser).map_err(|e| (e, "chunkwire walkthrough --help")),
        "help" => {
            let topic = parser.next().map_err(top)?;
            Ok(Command::Print(match topic {
                Some(Value(name)) if name == "upload" => format!("{UPLOAD_HELP}{TRACE_HELP}"),
                Some(Value(name)) if name == "sink" => format!("{SINK_HELP}{TRACE_HELP}"),
                Some(Value(name)) if name == "demo" => DEMO_HELP.into(),
                Some(Value(name)) if name == "walkthrough" => WALKTHROUGH_HELP.into(),
                None => MAIN_HELP.into(),
                Some(other) => return Err(top(other.unexpected())),
            }))
        }
        other => Err(top(format!(
            "unknown command {other:?}: the commands are upload, sink, demo and walkthrough"
        )
        .into())),
    }
}

fn parse_upload(parser: &mut lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut url = None;
    let mut args = UploadArgs {
        url: String::new(),
        files: Vec::new(),
        method: "PUT".into(),
        headers: Vec::new(),
        trailers: Vec::new(),
        chunk_size: None,
        content_length: false,
        expect_continue: false,
        checksum: None,
        location: false,
        max_redirs: 50,
        limit_rate: None,
        progress_bar: false,
        silent: false,
        expect100_timeout: Duration::from_secs(1),
        output: None,
        fail: false,
        connect_timeout: None,
        max_time: None,
        verbose: false,
        cacert: None,
        cert: None,
        key: None,
        trace: TraceArgs::new(),
        trace_pcap: None,
        parallel: false,
        parallel_max: chunkwire::DEFAULT_MAX_ACTIVE,
        proxy: ProxyArgs::default(),
        write_out: None,
        form: Vec::new(),
    };
    let mut method_given = false;
    while let Some(arg) = parser.next()? {
        if let Some(option) = TraceArgs::option(&arg) {
            args.trace.take(option, parser)?;
            continue;
        }
        match arg {
            Short('Z') | Long("parallel") => args.parallel = true,
            Long("trace-pcap") => args.trace_pcap = Some(parser.value()?.into()),
            Long("parallel-max") => {
                args.parallel_max = parser.value()?.parse()?;
                if args.parallel_max == 0 {
                    return Err("--parallel-max must be at least 1".into());
                }
            }
            Short('X') | Long("request" | "method") => {
                args.method = parser.value()?.string()?;
                method_given = true;
            }
            Short('F') | Long("form") => args.form.push(parse_form(&parser.value()?.string()?)?),
            Long("form-string") => {
                let arg = parser.value()?.string()?;
                let (name, value) = arg.split_once('=').ok_or_else(|| {
                    format!("--form-string {arg:?} is not of the form 'name=value'")
                })?;
                args.form.push(FormArg {
                    name: name.to_owned(),
                    value: FormValue::Text(value.to_owned()),
                    content_type: None,
                    file_name: None,
                });
            }
            Short('H') | Long("header") => args.headers.push(parser.value()?.string()?),
            Long("trailer") => args.trailers.push(parser.value()?.string()?),
            Long("chunk-size") => args.chunk_size = Some(parser.value()?.parse_with(parse_size)?),
            Long("content-length") => args.content_length = true,
            Long("expect-continue") => args.expect_continue = true,
            Long("expect100-timeout") => {
                args.expect100_timeout = parser.value()?.parse_with(parse_seconds)?
            }
            Long("checksum") => args.checksum = Some(parser.value()?.parse()?),
            Short('L') | Long("location") => args.location = true,
            Long("max-redirs") => args.max_redirs = parser.value()?.parse()?,
            Long("limit-rate") => args.limit_rate = Some(parser.value()?.parse_with(parse_rate)?),
            Short('#') | Long("progress-bar") => args.progress_bar = true,
            Short('s') | Long("silent") => args.silent = true,
            Short('o') | Long("output") => args.output = Some(parser.value()?.into()),
            Short('f') | Long("fail") => args.fail = true,
            Short('w') | Long("write-out") => args.write_out = Some(parser.value()?.string()?),
            Long("connect-timeout") => {
                args.connect_timeout = Some(parser.value()?.parse_with(parse_seconds)?)
            }
            Short('m') | Long("max-time") => {
                args.max_time = Some(parser.value()?.parse_with(parse_seconds)?)
            }
            Short('v') | Long("verbose") => args.verbose = true,
            Short('x') | Long("proxy") => args.proxy.proxy = Some(parser.value()?.string()?),
            Long("noproxy") => args.proxy.noproxy = Some(parser.value()?.string()?),
            Short('U') | Long("proxy-user") => args.proxy.user = Some(parser.value()?.string()?),
            Short('p') | Long("proxytunnel") => args.proxy.tunnel = true,
            Long("proxy-header") => args.proxy.headers.push(parser.value()?.string()?),
            Long("proxy-cacert") => args.proxy.cacert = Some(parser.value()?.into()),
            Long("proxy-trailers") => {
                args.proxy.trailers = match parser.value()?.string()?.as_str() {
                    "tunnel" => chunkwire::ProxyTrailers::Tunnel,
                    "refuse" => chunkwire::ProxyTrailers::Refuse,
                    "send" => chunkwire::ProxyTrailers::SendAnyway,
                    other => {
                        return Err(format!(
                            "--proxy-trailers {other:?}: expected tunnel, refuse or send"
                        )
                        .into());
                    }
                }
            }
            Long("cacert") => args.cacert = Some(parser.value()?.into()),
            Long("cert") => args.cert = Some(parser.value()?.into()),
            Long("key") => args.key = Some(parser.value()?.into()),
            Short('h') | Long("help") => {
                return Ok(Command::Print(format!("{UPLOAD_HELP}{TRACE_HELP}")));
            }
            Value(value) if url.is_none() => url = Some(value.string()?),
            Value(value) => args.files.push(PathBuf::from(value)),
            other => return Err(other.unexpected()),
        }
    }
    args.url = url.ok_or("the URL to upload to is missing")?;
    if !args.form.is_empty() {
        check_form_args(&args)?;
        if !method_given {
            args.method = "POST".into();
        }
    } else if args.files.is_empty() {
        return Err("a FILE to upload (or `-` for standard input) is missing".into());
    }
    if args.silent && args.progress_bar {
        return Err("--silent and --progress-bar ask for opposite things".into());
    }
    if args.parallel && args.trace.destination.is_some() {
        return Err(
            "a wire trace of uploads run at once (-Z) is not supported: their lines would interleave"
                .into(),
        );
    }
    match (&args.cert, &args.key) {
        (Some(_), None) => return Err("--cert needs --key (the certificate's private key)".into()),
        (None, Some(_)) => return Err("--key needs --cert (the certificate it belongs to)".into()),
        _ => {}
    }
    Ok(Command::Upload(Box::new(args)))
}

/// What cannot go with a form: a FILE argument, -Z, standard input twice. (A required
/// length with standard input is judged when it is opened: a file redirected to it has one.)
fn check_form_args(args: &UploadArgs) -> Result<(), lexopt::Error> {
    if let Some(file) = args.files.first() {
        return Err(format!(
            "with -F the body is the form: there is no FILE argument ({} was given; \
             use -F 'name=@{}' to send it as a part)",
            file.display(),
            file.display()
        )
        .into());
    }
    if args.parallel {
        return Err("-Z uploads FILE arguments at once; it does not go with -F".into());
    }
    let stdin_parts: Vec<&FormArg> = args
        .form
        .iter()
        .filter(|part| part.value.path().is_some_and(|p| p.as_os_str() == "-"))
        .collect();
    if stdin_parts.len() > 1 {
        return Err("standard input (-) can be read by only one -F part".into());
    }
    Ok(())
}

fn parse_sink(parser: &mut lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut args = SinkArgs {
        listen: "127.0.0.1:8080".into(),
        max_connections: chunkwire::sink::DEFAULT_MAX_CONNECTIONS,
        max_body: None,
        tls: false,
        ca_out: "chunkwire-sink-ca.pem".into(),
        trace: TraceArgs::new(),
    };
    while let Some(arg) = parser.next()? {
        if let Some(option) = TraceArgs::option(&arg) {
            args.trace.take(option, parser)?;
            continue;
        }
        match arg {
            Long("listen") => args.listen = parser.value()?.string()?,
            Long("max-connections") => args.max_connections = parser.value()?.parse()?,
            Long("max-body") => {
                args.max_body = Some(parser.value()?.parse_with(parse_size)? as u64)
            }
            Long("tls") => args.tls = true,
            Long("ca-out") => args.ca_out = parser.value()?.into(),
            Short('h') | Long("help") => {
                return Ok(Command::Print(format!("{SINK_HELP}{TRACE_HELP}")));
            }
            other => return Err(other.unexpected()),
        }
    }
    Ok(Command::Sink(args))
}

fn parse_walkthrough(parser: &mut lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut args = WalkthroughArgs { output: None };
    while let Some(arg) = parser.next()? {
        match arg {
            Short('o') | Long("output") => args.output = Some(parser.value()?.into()),
            Short('h') | Long("help") => return Ok(Command::Print(WALKTHROUGH_HELP.into())),
            other => return Err(other.unexpected()),
        }
    }
    Ok(Command::Walkthrough(args))
}

fn parse_demo(parser: &mut lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut args = DemoArgs {
        size_mib: 512,
        chunk_size: None,
        tls: false,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("size-mib") => args.size_mib = parser.value()?.parse()?,
            Long("chunk-size") => args.chunk_size = Some(parser.value()?.parse_with(parse_size)?),
            Long("tls") => args.tls = true,
            Short('h') | Long("help") => return Ok(Command::Print(DEMO_HELP.into())),
            other => return Err(other.unexpected()),
        }
    }
    Ok(Command::Demo(args))
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a usable duration"))
}

fn parse_rate(text: &str) -> Result<u64, String> {
    let (digits, scale) = match text.as_bytes().last() {
        Some(b'g' | b'G') => (&text[..text.len() - 1], 1u64 << 30),
        _ => (text, 1),
    };
    let base = parse_size(digits)? as u64;
    base.checked_mul(scale)
        .filter(|&rate| rate > 0)
        .ok_or_else(|| format!("{text:?} is not a rate (such as 500k, 2M or 1G bytes a second)"))
}

fn parse_size(text: &str) -> Result<usize, String> {
    let (digits, scale) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1024),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a size (such as 65536, 64k or 1M)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(args: &[&str]) -> UploadArgs {
        match parse(["upload"].iter().chain(args)) {
            Ok(Command::Upload(args)) => *args,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn refused(args: &[&str]) -> String {
        match parse(args) {
            Err(message) => message,
            Ok(command) => panic!("{args:?} was accepted as {command:?}"),
        }
    }

    #[test]
    fn options_take_values_in_every_spelling() {
        let args = upload(&[
            "-XPOST",
            "--header=A: 1",
            "-H",
            "B: 2",
            "--chunk-size",
            "16k",
            "-sfL",
            "--max-redirs",
            "3",
            "--limit-rate=2M",
            "-m",
            "1.5",
            "--trace-ascii",
            "-",
            "--trace-data-bytes",
            "8",
            "http://h/",
            "a",
            "-",
            "--",
            "--odd-name",
        ]);
        assert_eq!(args.method, "POST");
        assert_eq!(args.headers, ["A: 1", "B: 2"]);
        assert_eq!(args.chunk_size, Some(16 * 1024));
        assert!(args.silent && args.fail && args.location && !args.progress_bar);
        assert_eq!(args.max_redirs, 3);
        assert_eq!(args.limit_rate, Some(2 * 1024 * 1024));
        assert_eq!(args.max_time, Some(Duration::from_millis(1500)));
        assert_eq!(args.trace.destination, Some(("-".into(), TraceForm::Ascii)));
        assert_eq!(args.trace.data_bytes, 8);
        assert_eq!(args.url, "http://h/");
        assert_eq!(
            args.files,
            [PathBuf::from("a"), "-".into(), "--odd-name".into()]
        );
    }

    #[test]
    fn proxy_options_take_curls_names() {
        let args = upload(&[
            "-x",
            "http://u:p@proxy:3128",
            "--noproxy",
            "localhost,.corp",
            "-U",
            "alice:pw",
            "-p",
            "--proxy-header",
            "X-A: 1",
            "--proxy-header=X-B: 2",
            "--proxy-cacert",
            "ca.pem",
            "--proxy-trailers",
            "refuse",
            "http://h/",
            "f",
        ]);
        assert_eq!(args.proxy.proxy.as_deref(), Some("http://u:p@proxy:3128"));
        assert_eq!(args.proxy.noproxy.as_deref(), Some("localhost,.corp"));
        assert_eq!(args.proxy.user.as_deref(), Some("alice:pw"));
        assert!(args.proxy.tunnel);
        assert_eq!(args.proxy.headers, ["X-A: 1", "X-B: 2"]);
        assert_eq!(args.proxy.cacert, Some(PathBuf::from("ca.pem")));
        assert_eq!(args.proxy.trailers, chunkwire::ProxyTrailers::Refuse);
        let defaults = upload(&["http://h/", "f"]);
        assert_eq!(defaults.proxy.trailers, chunkwire::ProxyTrailers::Tunnel);
        assert!(
            refused(&["upload", "--proxy-trailers", "drop", "http://h/", "f"])
                .contains("tunnel, refuse or send")
        );
    }

    #[test]
    fn defaults_match_the_help_text() {
        let args = upload(&["http://h/", "f"]);
        assert_eq!(args.method, "PUT");
        assert_eq!(args.max_redirs, 50);
        assert_eq!(args.expect100_timeout, Duration::from_secs(1));
        assert_eq!(args.trace.data_bytes, 64);
        assert!(UPLOAD_HELP.contains("[default: PUT]") && UPLOAD_HELP.contains("[default: 50]"));
        match parse(["sink"]) {
            Ok(Command::Sink(sink)) => {
                assert_eq!(sink.listen, "127.0.0.1:8080");
                assert!(SINK_HELP.contains("[default: 127.0.0.1:8080]"));
                let max = sink.max_connections;
                assert!(SINK_HELP.contains(&format!("[default: {max}]")));
            }
            other => panic!("{other:?}"),
        }
        match parse(["demo"]) {
            Ok(Command::Demo(demo)) => assert_eq!(demo.size_mib, 512),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_command_lines_are_refused_with_a_pointer_to_help() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "a command is needed"),
            (&["fly"], "unknown command \"fly\""),
            (&["upload", "http://h/"], "FILE to upload"),
            (&["upload"], "URL to upload to is missing"),
            (&["upload", "--nope", "u", "f"], "invalid option '--nope'"),
            (&["upload", "-X"], "missing argument for option '-X'"),
            (
                &["upload", "--chunk-size", "lots", "u", "f"],
                "is not a size",
            ),
            (&["upload", "--limit-rate", "0", "u", "f"], "is not a rate"),
            (&["upload", "-m", "-1", "u", "f"], "not a usable duration"),
            (&["upload", "--checksum", "md5", "u", "f"], "not a checksum"),
            (&["upload", "-s", "-#", "u", "f"], "opposite things"),
            (&["upload", "--cert", "c", "u", "f"], "--cert needs --key"),
            (
                &["upload", "--trace", "a", "--trace-json", "b", "u", "f"],
                "--trace-json cannot be used with --trace",
            ),
            (&["sink", "extra"], "unexpected argument"),
            (&["demo", "--size-mib", "x"], "cannot parse argument"),
            (&["walkthrough", "extra"], "unexpected argument"),
            (&["sink", "--max-body", "lots"], "is not a size"),
        ];
        for (args, expected) in cases {
            let message = refused(args);
            assert!(message.contains(expected), "{args:?}: {message}");
            assert!(message.contains("--help'"), "{args:?}: {message}");
        }
    }

    #[test]
    fn form_arguments_are_read_with_curls_syntax() {
        let file = |path: &str| FormValue::File(path.into());
        // The argument, then the name, value, type and file name it gives.
        type Case<'a> = (
            &'a str,
            &'a str,
            FormValue,
            Option<&'a str>,
            Option<&'a str>,
        );
        let table: &[Case<'_>] = &[
            ("a=1", "a", FormValue::Text("1".into()), None, None),
            ("a=", "a", FormValue::Text(String::new()), None, None),
            ("a=x=y", "a", FormValue::Text("x=y".into()), None, None),
            ("a=\"x;y\"", "a", FormValue::Text("x;y".into()), None, None),
            (
                "a=hi;type=text/html",
                "a",
                FormValue::Text("hi".into()),
                Some("text/html"),
                None,
            ),
            ("f=@p.txt", "f", file("p.txt"), None, None),
            ("f=@-", "f", file("-"), None, None),
            ("f=@\"a;b.txt\"", "f", file("a;b.txt"), None, None),
            ("f=@\"q\\\"t\\\\.txt\"", "f", file("q\"t\\.txt"), None, None),
            (
                "f=@p;type=image/png;filename=n.png",
                "f",
                file("p"),
                Some("image/png"),
                Some("n.png"),
            ),
            ("f=@p; filename=\"a;b\"", "f", file("p"), None, Some("a;b")),
            ("f=@p;FILENAME=x", "f", file("p"), None, Some("x")),
            (
                "c=<p.txt",
                "c",
                FormValue::Content("p.txt".into()),
                None,
                None,
            ),
            (
                "we\"ird=1",
                "we\"ird",
                FormValue::Text("1".into()),
                None,
                None,
            ),
        ];
        for (arg, name, value, content_type, file_name) in table {
            let form = parse_form(arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
            assert_eq!(form.name, *name, "{arg}");
            assert_eq!(form.value, *value, "{arg}");
            assert_eq!(form.content_type.as_deref(), *content_type, "{arg}");
            assert_eq!(form.file_name.as_deref(), *file_name, "{arg}");
        }
        for (arg, why) in [
            ("novalue", "not of the form"),
            ("a=x;b", "unknown parameter \"b\""),
            ("a=\"open", "no closing quote"),
            ("a=\"x\"y", "closing quote must be followed"),
            ("f=@", "no file name after @"),
            ("f=<", "no file name after <"),
            ("f=@p;encoder=base64", ";encoder is not supported"),
            ("f=@p;filename", ";filename needs a value"),
            ("f=@p;type", ";type needs a type"),
            ("f=@p;type=", ";type needs a type"),
            ("f=@p; type = ", ";type needs a type"),
        ] {
            let err = parse_form(arg).unwrap_err();
            assert!(err.contains(why), "{arg}: {err}");
        }
    }

    #[test]
    fn a_form_means_post_and_no_file_argument() {
        let args = upload(&["-F", "a=1", "--form-string", "b=@x;y", "http://h/"]);
        assert_eq!(args.method, "POST");
        assert_eq!(args.form.len(), 2);
        assert_eq!(args.form[1].value, FormValue::Text("@x;y".into()));
        assert_eq!(
            upload(&["-F", "a=1", "-X", "PATCH", "http://h/"]).method,
            "PATCH"
        );
        assert_eq!(upload(&["-XPUT", "-F", "a=1", "http://h/"]).method, "PUT");
        assert!(refused(&["upload", "-F", "a=1", "http://h/", "f"]).contains("no FILE argument"));
        assert!(
            refused(&["upload", "--form-string", "novalue", "http://h/"])
                .contains("not of the form")
        );
    }

    #[test]
    fn help_and_version_are_printed_not_refused() {
        for args in [
            &["--help"][..],
            &["help"],
            &["-V"],
            &["upload", "-h"],
            &["help", "sink"],
            &["help", "walkthrough"],
            &["walkthrough", "-h"],
        ] {
            assert!(matches!(parse(args), Ok(Command::Print(_))), "{args:?}");
        }
        match parse(["upload", "--help"]) {
            Ok(Command::Print(text)) => assert!(text.contains("--trace-ascii <FILE>")),
            other => panic!("{other:?}"),
        }
    }
}
