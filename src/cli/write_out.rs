//! `-w/--write-out FORMAT`: curl's format language, with curl's variables and meanings, so
//! that a script written for `curl -w` reads chunkwire's output unchanged.
//!
//! `%{name}` is a variable (names match in any case, as in curl), `%%` a `%`, `\n`, `\r`
//! and `\t` the control characters; any other `%` or `\` sequence is written as it is, as
//! curl 7.88 writes it. `%{stdout}` and `%{stderr}` switch the stream the rest goes to,
//! `%{onerror}` ends the output of an upload that succeeded, `%header{name}` writes a
//! field of the last response, `%{json}` writes every
//! variable as one JSON object, with curl's key names. An unknown variable writes nothing
//! and a warning on standard error, as curl does.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use chunkwire::{Timings, Transfer, redact_userinfo};

/// What one upload came to, in the terms of curl's variables.
#[derive(Debug, Clone, Default)]
pub struct Values {
    /// The status of the last response; `None` (written `000`) when none came.
    pub http_code: Option<u16>,
    /// Bytes sent after the request head (curl's `size_upload`: chunk framing included).
    pub size_upload: u64,
    /// Response body bytes written out.
    pub size_download: u64,
    /// Bytes of request heads sent.
    pub size_request: u64,
    pub timings: Timings,
    pub num_connects: u32,
    pub num_redirects: u32,
    pub url: String,
    pub url_effective: String,
    pub remote: Option<SocketAddr>,
    pub method: String,
    /// The exit code this upload gives (0: success).
    pub exitcode: u8,
    /// The error message; `None` on success.
    pub errormsg: Option<String>,
    /// The last response's header fields, for `%header{name}`.
    pub headers: http::HeaderMap,
}

impl Values {
    /// An upload of `method` to `url` that got nowhere yet.
    pub fn new(url: &str, method: &str) -> Values {
        let url = redact_userinfo(url);
        Values {
            url_effective: url.clone(),
            url,
            method: method.to_owned(),
            ..Values::default()
        }
    }

    /// The last response's header fields.
    pub fn take_headers(&mut self, headers: &http::HeaderMap) {
        self.headers.clone_from(headers);
    }

    /// What the upload took, as the library tells it.
    pub fn take(&mut self, transfer: &Transfer) {
        self.http_code = transfer.status;
        self.size_upload = transfer.upload_bytes;
        self.size_request = transfer.request_bytes;
        self.timings = transfer.timings;
        self.num_connects = transfer.new_connections;
        self.num_redirects = transfer.redirects;
        self.url_effective.clone_from(&transfer.url);
        self.remote = transfer.remote_addr;
    }

    /// How it ended: `Some((exit code, message))` for a failure.
    pub fn end(&mut self, failure: Option<(u8, &str)>) {
        (self.exitcode, self.errormsg) = match failure {
            Some((code, message)) => (code, Some(message.to_owned())),
            None => (0, None),
        };
    }

    /// Body bytes a second over the whole upload, as a whole number, as curl writes it.
    fn speed_upload(&self) -> u64 {
        let seconds = self.timings.total.as_secs_f64();
        if seconds > 0.0 {
            (self.size_upload as f64 / seconds) as u64
        } else {
            0
        }
    }
}

/// Which variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    ErrorMsg,
    ExitCode,
    HttpCode,
    Method,
    NumConnects,
    NumRedirects,
    RemoteIp,
    RemotePort,
    ResponseCode,
    SizeDownload,
    SizeRequest,
    SizeUpload,
    SpeedUpload,
    TimeAppconnect,
    TimeConnect,
    TimeNamelookup,
    TimePretransfer,
    TimeStarttransfer,
    TimeTotal,
    Url,
    UrlEffective,
}

/// Every variable by its curl name, in curl's (alphabetical) order, which `%{json}` keeps.
const VARIABLES: &[(&str, Var)] = &[
    ("errormsg", Var::ErrorMsg),
    ("exitcode", Var::ExitCode),
    ("http_code", Var::HttpCode),
    ("method", Var::Method),
    ("num_connects", Var::NumConnects),
    ("num_redirects", Var::NumRedirects),
    ("remote_ip", Var::RemoteIp),
    ("remote_port", Var::RemotePort),
    ("response_code", Var::ResponseCode),
    ("size_download", Var::SizeDownload),
    ("size_request", Var::SizeRequest),
    ("size_upload", Var::SizeUpload),
    ("speed_upload", Var::SpeedUpload),
    ("time_appconnect", Var::TimeAppconnect),
    ("time_connect", Var::TimeConnect),
    ("time_namelookup", Var::TimeNamelookup),
    ("time_pretransfer", Var::TimePretransfer),
    ("time_starttransfer", Var::TimeStarttransfer),
    ("time_total", Var::TimeTotal),
    ("url", Var::Url),
    ("url_effective", Var::UrlEffective),
];

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
    Json,
    Stdout,
    Stderr,
    OnError,
    /// A `%{name}` chunkwire does not know: a warning when written.
    Unknown(String),
    /// `%header{name}`: the last response's field of that name.
    Header(String),
}

/// A parsed `-w` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOut {
    pieces: Vec<Piece>,
}

impl WriteOut {
    /// Parses `format` as curl reads it; nothing in it is an error.
    pub fn parse(format: &str) -> WriteOut {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(c) = rest.chars().next() {
            let next = rest[c.len_utf8()..].chars().next();
            match (c, next) {
                ('%', Some('%')) => {
                    text.push('%');
                    rest = &rest[2..];
                }
                ('%', Some('{')) => {
                    let Some(end) = rest.find('}') else {
                        // No end: the two characters as they are, as curl writes them.
                        text.push_str("%{");
                        rest = &rest[2..];
                        continue;
                    };
                    let name = &rest[2..end];
                    rest = &rest[end + 1..];
                    let piece = match name.to_ascii_lowercase().as_str() {
                        "json" => Piece::Json,
                        "stdout" => Piece::Stdout,
                        "stderr" => Piece::Stderr,
                        "onerror" => Piece::OnError,
                        lower => match VARIABLES.iter().find(|(n, _)| *n == lower) {
                            Some(&(_, var)) => Piece::Var(var),
                            None => Piece::Unknown(name.to_owned()),
                        },
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                }
                ('%', Some('h')) if rest[1..].starts_with("header{") && rest.contains('}') => {
                    let end = rest.find('}').expect("checked");
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Header(rest["%header{".len()..end].to_owned()));
                    rest = &rest[end + 1..];
                }
                ('\\', Some(escaped @ ('n' | 'r' | 't'))) => {
                    text.push(match escaped {
                        'n' => '\n',
                        'r' => '\r',
                        _ => '\t',
                    });
                    rest = &rest[2..];
                }
                ('%' | '\\', Some(other)) => {
                    // Not a sequence curl knows: both characters as they are.
                    text.push(c);
                    text.push(other);
                    rest = &rest[1 + other.len_utf8()..];
                }
                (c, _) => {
                    text.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        WriteOut { pieces }
    }

    /// Whether any of the format's output goes to standard output: what comes before a
    /// `%{stderr}` or after a `%{stdout}` (unknown variables count, as their text may).
    pub fn writes_to_stdout(&self) -> bool {
        let mut to_stderr = false;
        self.pieces.iter().any(|piece| match piece {
            Piece::Stdout | Piece::Stderr => {
                to_stderr = *piece == Piece::Stderr;
                false
            }
            Piece::OnError => false,
            Piece::Text(text) => !to_stderr && !text.is_empty(),
            _ => !to_stderr,
        })
    }

    /// Writes the format for `values`, starting on `stdout`; unknown variables are warned
    /// about on `stderr`.
    pub fn write(
        &self,
        values: &Values,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> io::Result<()> {
        let mut to_stderr = false;
        let mut line = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => line.push_str(text),
                Piece::Var(var) => push_var(&mut line, *var, values),
                Piece::Json => push_json(&mut line, values),
                Piece::Stdout | Piece::Stderr => {
                    let out: &mut dyn Write = if to_stderr { stderr } else { stdout };
                    out.write_all(line.as_bytes())?;
                    line.clear();
                    to_stderr = *piece == Piece::Stderr;
                }
                Piece::Header(name) => push_header(&mut line, name, &values.headers),
                Piece::OnError if values.errormsg.is_none() => break,
                Piece::OnError => {}
                Piece::Unknown(name) => {
                    // What came before goes first, as curl writes as it goes.
                    let out: &mut dyn Write = if to_stderr { stderr } else { stdout };
                    out.write_all(line.as_bytes())?;
                    line.clear();
                    writeln!(stderr, "chunkwire: unknown --write-out variable: '{name}'")?;
                }
            }
        }
        let out: &mut dyn Write = if to_stderr { stderr } else { stdout };
        out.write_all(line.as_bytes())?;
        out.flush()
    }
}

/// The values of the field `name` (any case), joined with `, ` when there are several, as
/// curl writes them; nothing when there is none.
fn push_header(out: &mut String, name: &str, headers: &http::HeaderMap) {
    for (i, value) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
}

/// Seconds with six decimals, as curl writes times.
fn push_seconds(out: &mut String, duration: Duration) -> std::fmt::Result {
    use std::fmt::Write as _;
    write!(
        out,
        "{}.{:06}",
        duration.as_secs(),
        duration.subsec_micros()
    )
}

/// The value of `var` as `-w` writes it.
fn push_var(out: &mut String, var: Var, values: &Values) {
    use std::fmt::Write as _;
    let t = &values.timings;
    let _ = match var {
        Var::ErrorMsg => out.write_str(values.errormsg.as_deref().unwrap_or("")),
        Var::ExitCode => write!(out, "{}", values.exitcode),
        Var::HttpCode | Var::ResponseCode => write!(out, "{:03}", values.http_code.unwrap_or(0)),
        Var::Method => write!(out, "{}", values.method),
        Var::NumConnects => write!(out, "{}", values.num_connects),
        Var::NumRedirects => write!(out, "{}", values.num_redirects),
        Var::RemoteIp => match values.remote {
            Some(addr) => write!(out, "{}", addr.ip()),
            None => Ok(()),
        },
        Var::RemotePort => write!(out, "{}", values.remote.map_or(0, |a| a.port())),
        Var::SizeDownload => write!(out, "{}", values.size_download),
        Var::SizeRequest => write!(out, "{}", values.size_request),
        Var::SizeUpload => write!(out, "{}", values.size_upload),
        Var::SpeedUpload => write!(out, "{}", values.speed_upload()),
        Var::TimeAppconnect => push_seconds(out, t.appconnect),
        Var::TimeConnect => push_seconds(out, t.connect),
        Var::TimeNamelookup => push_seconds(out, t.namelookup),
        Var::TimePretransfer => push_seconds(out, t.pretransfer),
        Var::TimeStarttransfer => push_seconds(out, t.starttransfer),
        Var::TimeTotal => push_seconds(out, t.total),
        Var::Url => write!(out, "{}", values.url),
        Var::UrlEffective => write!(out, "{}", values.url_effective),
    };
}

/// Every variable as one JSON object, keys as curl names them: numbers as numbers (times
/// in seconds with six decimals), text as strings, `null` for an error message on success.
fn push_json(out: &mut String, values: &Values) {
    use chunkwire::json::push_string;
    out.push('{');
    for (i, &(name, var)) in VARIABLES.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(out, name);
        out.push(':');
        match var {
            Var::ErrorMsg => match &values.errormsg {
                Some(message) => push_string(out, message),
                None => out.push_str("null"),
            },
            Var::HttpCode | Var::ResponseCode => {
                out.push_str(&values.http_code.unwrap_or(0).to_string())
            }
            Var::Method | Var::RemoteIp | Var::Url | Var::UrlEffective => {
                let mut text = String::new();
                push_var(&mut text, var, values);
                push_string(out, &text);
            }
            _ => push_var(out, var, values),
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_stdout_unless_everything_follows_stderr() {
        for (format, expected) in [
            ("%{http_code}", true),
            ("text", true),
            ("%{json}\\n", true),
            ("%{nonexistent}", true),
            ("%{stderr}%{http_code}\\n", false),
            ("%{stderr}a%{stdout}", false),
            ("%{stderr}a%{stdout}b", true),
            ("a%{stderr}b", true),
            ("%{stderr}%{onerror}%{errormsg}", false),
            ("", false),
        ] {
            assert_eq!(
                WriteOut::parse(format).writes_to_stdout(),
                expected,
                "{format:?}"
            );
        }
    }

    fn values() -> Values {
        Values {
            http_code: Some(201),
            size_upload: 1000,
            size_download: 12,
            size_request: 90,
            timings: Timings {
                namelookup: Duration::from_micros(10),
                connect: Duration::from_micros(200),
                appconnect: Duration::ZERO,
                pretransfer: Duration::from_micros(250),
                starttransfer: Duration::from_millis(3),
                total: Duration::from_millis(500),
            },
            num_connects: 1,
            num_redirects: 2,
            url: "http://h:1/a".into(),
            url_effective: "http://h:1/b\"".into(),
            remote: Some("127.0.0.1:8080".parse().unwrap()),
            method: "PUT".into(),
            exitcode: 0,
            errormsg: None,
            headers: [(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            )]
            .into_iter()
            .collect(),
        }
    }

    fn written(format: &str, values: &Values) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        WriteOut::parse(format)
            .write(values, &mut out, &mut err)
            .unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn variables_escapes_and_streams_as_curl_writes_them() {
        let v = values();
        let (out, err) = written(
            "%{http_code} %{SIZE_UPLOAD} %{speed_upload} %{time_total} %{time_appconnect} \
             %{remote_ip}:%{remote_port} %{num_redirects}\\n%% %z \\q \\\\ 100%",
            &v,
        );
        assert_eq!(
            out,
            "201 1000 2000 0.500000 0.000000 127.0.0.1:8080 2\n% %z \\q \\\\ 100%"
        );
        assert_eq!(err, "");
        let (out, err) = written("a%{stderr}b%{bogus}%{stdout}c%{", &v);
        assert_eq!(
            (out.as_str(), err.as_str()),
            (
                "ac%{",
                "bchunkwire: unknown --write-out variable: 'bogus'\n"
            )
        );
        let (out, _) = written("[%header{Content-TYPE}] [%header{none}] %header{x", &v);
        assert_eq!(out, "[text/plain] [] %header{x");
        let (out, _) = written("ok%{onerror}failed: %{errormsg}", &v);
        assert_eq!(out, "ok");
        let failed = Values {
            http_code: None,
            exitcode: 7,
            errormsg: Some("connect failed".into()),
            remote: None,
            ..v
        };
        let (out, _) = written(
            "%{onerror}%{http_code} %{exitcode} %{errormsg} [%{remote_ip}] %{remote_port}",
            &failed,
        );
        assert_eq!(out, "000 7 connect failed [] 0");
    }

    #[test]
    fn json_has_every_variable_under_curls_name() {
        let (out, _) = written("%{json}", &values());
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["http_code"], 201);
        assert_eq!(json["errormsg"], serde_json::Value::Null);
        assert_eq!(json["url_effective"], "http://h:1/b\"");
        assert_eq!(json["time_starttransfer"].as_f64(), Some(0.003));
        assert_eq!(json.as_object().unwrap().len(), VARIABLES.len());
    }
}
