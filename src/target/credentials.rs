//! User name and password from a URL's userinfo, sent as HTTP Basic authentication
//! (RFC 7617), and the masking that keeps the password out of messages and `Debug`.

use std::fmt;

use super::percent;

/// What stands in for a password wherever one would be shown.
pub(super) const MASK: &str = "***";

/// The user name and password a URL carried (`http://user:password@host/`),
/// percent-decoded. `Debug` shows the user name and masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name, percent-decoded.
    pub user: String,
    /// The password, percent-decoded; empty when the URL had none (`http://user@host/`).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &MASK)
            .finish()
    }
}

const USER_HOLDS_COLON: &str = "the user name holds ':' once percent-decoded, which Basic \
     authentication cannot carry (it splits user and password at the first ':')";
const NOT_UTF8: &str = "the user name or password is not UTF-8 once percent-decoded";
const HOLDS_CONTROL: &str =
    "the user name or password holds a control character once percent-decoded";

impl Credentials {
    /// Reads a userinfo (the part before `@`): user, then `:` and password. `Ok(None)`
    /// when both are empty (`http://@host/`, `http://:@host/`): there is nothing to send.
    pub(super) fn from_userinfo(userinfo: &str) -> Result<Option<Credentials>, &'static str> {
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        if user.is_empty() && password.is_empty() {
            return Ok(None);
        }
        let decode = |text: &str| String::from_utf8(percent::decode(text)).map_err(|_| NOT_UTF8);
        let credentials = Credentials {
            user: decode(user)?,
            password: decode(password)?,
        };
        // RFC 7617 section 2: "The user-id and password MUST NOT contain any control
        // characters", and a colon in the user-id cannot be told from the separator.
        if credentials.user.contains(':') {
            return Err(USER_HOLDS_COLON);
        }
        if (credentials.user.chars())
            .chain(credentials.password.chars())
            .any(char::is_control)
        {
            return Err(HOLDS_CONTROL);
        }
        Ok(Some(credentials))
    }

    /// The `Authorization` field value: `Basic ` and base64 of `user:password` in UTF-8
    /// (RFC 7617 section 2, with the `charset="UTF-8"` of section 2.1).
    pub fn basic_authorization(&self) -> String {
        let user_pass = format!("{}:{}", self.user, self.password);
        format!("Basic {}", base64(user_pass.as_bytes()))
    }
}

/// RFC 4648 section 4: base64 with the standard alphabet and `=` padding. Written here
/// because it is twenty lines and the only use is one header value per request.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let byte = |i: usize| u32::from(group.get(i).copied().unwrap_or(0));
        let bits = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        // n input bytes give n + 1 significant sextets; the rest of the quantum is padding.
        for sextet in 0..4 {
            if sextet <= group.len() {
                let index = (bits >> (18 - 6 * sextet)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The URL with its password replaced by `***`, for messages: `http://user:***@host/`.
///
/// The user name stays, because it tells which account was tried and is rarely the
/// secret; `***` stays, so a reader can see that a password was given. The function works
/// on any string, parsable or not, since it runs on URLs that were just refused, and errs
/// towards hiding: everything from the first `:` after `//` (or after the start, when
/// there is no `//`) up to the *last* `@` is masked, so a password holding a raw `/`, `?`
/// or `#` is still hidden, at the cost of sometimes masking a port or path in a message.
pub fn redact_userinfo(url: &str) -> String {
    let authority_start = match url.find("//") {
        Some(slashes) if !url[..slashes].contains(['/', '?', '#']) => slashes + 2,
        _ => 0,
    };
    let rest = &url[authority_start..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return url.to_owned();
    };
    if colon + 1 == at {
        return url.to_owned(); // `user:@host`: no password to hide
    }
    let (before_password, after_password) = (
        &url[..authority_start + colon + 1],
        &url[authority_start + at..],
    );
    format!("{before_password}{MASK}{after_password}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_and_7617_vectors() {
        let cases: [(&[u8], &str); 9] = [
            // RFC 4648 section 10.
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            // RFC 7617 sections 2 and 2.1.
            (b"Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            ("test:123\u{a3}".as_bytes(), "dGVzdDoxMjPCow=="),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input), expected, "{input:?}");
        }
        let all_bytes: Vec<u8> = (0..=255).collect();
        assert!(base64(&all_bytes).ends_with("+/w=="));
    }

    fn credentials(user: &str, password: &str) -> Option<Credentials> {
        Some(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    #[test]
    fn userinfo_is_decoded_and_checked() {
        let cases = [
            ("user:pass", Ok(credentials("user", "pass"))),
            ("user", Ok(credentials("user", ""))),
            (":pass", Ok(credentials("", "pass"))),
            ("", Ok(None)),
            (":", Ok(None)),
            ("us%65r:p%40ss%3Aword", Ok(credentials("user", "p@ss:word"))),
            (
                "caf%C3%A9:%E2%82%AC",
                Ok(credentials("caf\u{e9}", "\u{20ac}")),
            ),
            ("a%3Ab:pw", Err(USER_HOLDS_COLON)),
            ("user:%0D%0A", Err(HOLDS_CONTROL)),
            ("u:%FF", Err(NOT_UTF8)),
        ];
        for (userinfo, expected) in cases {
            assert_eq!(Credentials::from_userinfo(userinfo), expected, "{userinfo}");
        }
    }

    #[test]
    fn debug_and_authorization() {
        let credentials = Credentials {
            user: "Aladdin".to_owned(),
            password: "open sesame".to_owned(),
        };
        let debug = format!("{credentials:?}");
        assert!(!debug.contains("sesame"), "{debug}");
        assert!(debug.contains("Aladdin") && debug.contains(MASK), "{debug}");
        assert_eq!(
            credentials.basic_authorization(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn redaction() {
        let cases = [
            ("http://user:secret@h/x", "http://user:***@h/x"),
            ("https://:secret@h", "https://:***@h"),
            ("http://user@h/", "http://user@h/"),
            ("http://user:@h/", "http://user:@h/"),
            ("http://h:8080/x", "http://h:8080/x"),
            ("http://h/a@b", "http://h/a@b"),
            // Raw '/', '#', '@' in the password: still hidden.
            ("http://u:pa/ss@h/", "http://u:***@h/"),
            ("http://u:p#w@h/", "http://u:***@h/"),
            ("http://u:p@ss@h/", "http://u:***@h/"),
            // No scheme, or not a URL at all.
            ("//u:pw@h/", "//u:***@h/"),
            ("u:pw@h/x", "u:***@h/x"),
            ("us er:pw@h", "us er:***@h"),
            ("", ""),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_userinfo(url), expected, "{url}");
        }
    }
}
