//! The API token: where it comes from, how it is sent, and how it is kept out of
//! everything the tool writes.

use std::fmt;
use std::path::Path;

use reqwest::header::HeaderValue;

use crate::error::Fatal;

/// The Gcore API token. `Debug` and `Display` print `***`, so a token can never
/// reach a log line or an error message by accident.
#[derive(Clone)]
pub struct ApiToken(String);

/// A token file that group or others can read is named in a warning: the
/// token changes every account the key can reach.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o044 != 0
    {
        tracing::warn!(
            "the API key file {} can be read by group or others (mode {:o}): chmod 600 {}",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        );
    }
}

impl ApiToken {
    /// Reads the token from `--api-key-file` (its first line) or, failing that,
    /// from `GCORE_API_KEY`. `Ok(None)` when neither is set.
    pub fn load(file: Option<&Path>, env_value: Option<String>) -> Result<Option<ApiToken>, Fatal> {
        let (raw, source) = match file {
            Some(path) => {
                warn_if_readable_by_others(path);
                let bytes = std::fs::read(path).map_err(|e| {
                    Fatal::Usage(format!(
                        "cannot read the API key file {}: {e}",
                        path.display()
                    ))
                })?;
                let source = format!("the API key file {}", path.display());
                (first_line(&bytes, &source)?, source)
            }
            None => match env_value {
                Some(v) if !v.trim().is_empty() => {
                    (v.trim().to_string(), "GCORE_API_KEY".to_string())
                }
                _ => return Ok(None),
            },
        };
        ApiToken::new(raw).map(Some).map_err(|_| {
            Fatal::Usage(format!(
                "the API token in {source} contains characters that cannot be sent in an HTTP \
                 header: it must be printable ASCII on one line; check {source}"
            ))
        })
    }

    /// Wraps a token, refusing one that cannot travel in an HTTP header.
    pub fn new(raw: String) -> Result<ApiToken, Fatal> {
        if raw.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(Fatal::Usage(
                "the API token contains characters that cannot be sent in an HTTP header \
                 (it must be printable ASCII on one line)"
                    .into(),
            ));
        }
        Ok(ApiToken(raw))
    }

    /// The `Authorization` header value: `APIKey <token>`, or the value as given
    /// when it already names its scheme (`APIKey ` or `Bearer `, any case).
    /// Marked sensitive so HTTP-level trace logs print it as `Sensitive`.
    pub fn header_value(&self) -> HeaderValue {
        let lower = self.0.to_ascii_lowercase();
        let value = if lower.starts_with("apikey ") || lower.starts_with("bearer ") {
            self.0.clone()
        } else {
            format!("APIKey {}", self.0)
        };
        let mut header =
            HeaderValue::from_str(&value).expect("checked in ApiToken::new: printable ASCII only");
        header.set_sensitive(true);
        header
    }

    /// Replaces every stretch of `text` that repeats six or more characters of the
    /// token with `***`. Servers sometimes echo part of a rejected token in their
    /// error message; this keeps it out of results and logs.
    pub fn mask(&self, text: &str) -> String {
        mask_secret(text, self.secret())
    }

    /// The token without a scheme prefix.
    fn secret(&self) -> &str {
        let lower = self.0.to_ascii_lowercase();
        for scheme in ["apikey ", "bearer "] {
            if lower.starts_with(scheme) {
                return self.0[scheme.len()..].trim_start();
            }
        }
        &self.0
    }
}

/// The token on the first line of a key file. A byte-order mark (Windows
/// editors write one) is not part of it. A blank first line is refused
/// rather than skipped: the token is documented to be on line 1, and a file
/// laid out otherwise may hold something else first.
fn first_line(bytes: &[u8], source: &str) -> Result<String, Fatal> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let first = text.lines().next().unwrap_or("").trim();
    if !first.is_empty() {
        return Ok(first.to_string());
    }
    Err(Fatal::Usage(
        match text.lines().position(|line| !line.trim().is_empty()) {
            Some(i) => format!(
                "the first line of {source} is blank, and the token must be on it (line {} is \
                 the first with text): remove the blank lines above the token",
                i + 1
            ),
            None => format!("{source} is empty: put the token on its first line"),
        },
    ))
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The shortest echo of the token that is masked: long enough not to eat
/// ordinary words and numbers, short enough to catch a truncated token.
const MIN_ECHO: usize = 6;

fn mask_secret(text: &str, secret: &str) -> String {
    let (text_bytes, secret) = (text.as_bytes(), secret.as_bytes());
    if secret.is_empty() {
        return text.to_string();
    }
    let min = MIN_ECHO.min(secret.len());
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied) = (0, 0);
    while i < text_bytes.len() {
        let echo = longest_echo_at(&text_bytes[i..], secret);
        if echo >= min {
            // The token is ASCII, so a matched stretch never splits a character.
            out.push_str(&text[copied..i]);
            out.push_str("***");
            i += echo;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Length of the longest prefix of `text` that occurs somewhere in `secret`.
fn longest_echo_at(text: &[u8], secret: &[u8]) -> usize {
    (0..secret.len())
        .map(|j| {
            text.iter()
                .zip(&secret[j..])
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_token() {
        let token = ApiToken::new("1234$abcdefsecret".into()).unwrap();
        assert_eq!(format!("{token:?}"), "***");
        assert_eq!(format!("{token}"), "***");
        assert_eq!(format!("{:?}", Some(token)), "Some(***)");
    }

    #[test]
    fn header_adds_the_scheme_unless_given() {
        let plain = ApiToken::new("1234_abc".into()).unwrap();
        assert_eq!(plain.header_value().to_str().unwrap(), "APIKey 1234_abc");
        assert!(plain.header_value().is_sensitive());
        let given = ApiToken::new("apikey 1234$abc".into()).unwrap();
        assert_eq!(given.header_value().to_str().unwrap(), "apikey 1234$abc");
        let bearer = ApiToken::new("Bearer eyJ.x.y".into()).unwrap();
        assert_eq!(bearer.header_value().to_str().unwrap(), "Bearer eyJ.x.y");
    }

    #[test]
    fn refuses_tokens_that_cannot_be_a_header() {
        assert!(ApiToken::new("abc\ndef".into()).is_err());
        assert!(ApiToken::new("abcé".into()).is_err());
    }

    #[test]
    fn masks_whole_and_partial_echoes() {
        let token = ApiToken::new("APIKey 1234$abcdefghijkl".into()).unwrap();
        assert_eq!(
            token.mask("Invalid token 1234$abcdefghijkl."),
            "Invalid token ***."
        );
        assert_eq!(
            token.mask("token starting abcdefg rejected"),
            "token starting *** rejected"
        );
        assert_eq!(token.mask("client 1234 not found"), "client 1234 not found");
        assert_eq!(token.mask("ünïcode ok"), "ünïcode ok");
    }

    #[test]
    fn loads_from_file_first_line_or_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  from-file \nsecond line\n").unwrap();
        let token = ApiToken::load(Some(&path), Some("from-env".into()))
            .unwrap()
            .unwrap();
        assert_eq!(token.secret(), "from-file");
        let token = ApiToken::load(None, Some("from-env".into()))
            .unwrap()
            .unwrap();
        assert_eq!(token.secret(), "from-env");
        assert!(ApiToken::load(None, None).unwrap().is_none());
        assert!(ApiToken::load(None, Some("  ".into())).unwrap().is_none());
        std::fs::write(&path, "\n").unwrap();
        let e = ApiToken::load(Some(&path), None).unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
        std::fs::write(&path, "\u{feff}with-mark\r\n").unwrap();
        let token = ApiToken::load(Some(&path), None).unwrap().unwrap();
        assert_eq!(token.secret(), "with-mark");
        std::fs::write(&path, "\n \t\nlate-token\n").unwrap();
        let e = ApiToken::load(Some(&path), None).unwrap_err().to_string();
        assert!(
            e.contains("is blank") && e.contains("line 3 is the first with text"),
            "{e}"
        );
        assert!(!e.contains("late-token"), "{e}");
        std::fs::write(&path, "tok\u{e9}n\n").unwrap();
        let e = ApiToken::load(Some(&path), None).unwrap_err().to_string();
        assert!(e.contains("printable ASCII") && e.contains("key"), "{e}");
    }
}
