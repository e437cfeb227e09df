//! The `Authorization` header check, with the 401 texts Gcore's Django REST
//! Framework authentication answers. The presented token never appears in a
//! message.

use axum::http::HeaderValue;

pub(crate) const NOT_PROVIDED: &str = "Authentication credentials were not provided.";
pub(crate) const INVALID_TOKEN: &str = "Invalid token.";
pub(crate) const NO_CREDENTIALS: &str = "Invalid token header. No credentials provided.";
pub(crate) const HAS_SPACES: &str = "Invalid token header. Token string should not contain spaces.";
pub(crate) const BAD_CHARACTERS: &str =
    "Invalid token header. Token string should not contain invalid characters.";
pub(crate) const NOT_A_JWT: &str = "Given token not valid for any token type";

/// `Ok` when the header is `APIKey <token>` (scheme in any case, one space);
/// otherwise the 401 `detail` text.
pub(crate) fn check_authorization(
    header: Option<&HeaderValue>,
    token: &str,
) -> Result<(), &'static str> {
    let Some(header) = header else {
        return Err(NOT_PROVIDED);
    };
    let Ok(value) = header.to_str() else {
        return Err(BAD_CHARACTERS);
    };
    let (scheme, credentials) = match value.split_once(' ') {
        Some((scheme, rest)) => (scheme, rest),
        None => (value, ""),
    };
    if scheme.eq_ignore_ascii_case("apikey") {
        if credentials.is_empty() {
            Err(NO_CREDENTIALS)
        } else if credentials.contains(' ') {
            Err(HAS_SPACES)
        } else if credentials == token {
            Ok(())
        } else {
            Err(INVALID_TOKEN)
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        // A permanent token is not a JWT, so the JWT authenticator refuses it.
        Err(NOT_A_JWT)
    } else {
        // DRF skips schemes no authenticator claims, so nothing was "provided".
        Err(NOT_PROVIDED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: Option<&str>) -> Result<(), &'static str> {
        let value = header.map(|h| HeaderValue::from_str(h).expect("test header is valid"));
        check_authorization(value.as_ref(), "12$secret")
    }

    #[test]
    fn accepts_the_token_with_any_scheme_case() {
        assert_eq!(check(Some("APIKey 12$secret")), Ok(()));
        assert_eq!(check(Some("apikey 12$secret")), Ok(()));
        assert_eq!(check(Some("APIKEY 12$secret")), Ok(()));
    }

    #[test]
    fn refuses_with_drf_texts() {
        assert_eq!(check(None), Err(NOT_PROVIDED));
        assert_eq!(check(Some("APIKey wrong")), Err(INVALID_TOKEN));
        assert_eq!(check(Some("APIKey")), Err(NO_CREDENTIALS));
        assert_eq!(check(Some("APIKey  12$secret")), Err(HAS_SPACES));
        assert_eq!(check(Some("Bearer 12$secret")), Err(NOT_A_JWT));
        assert_eq!(check(Some("Token 12$secret")), Err(NOT_PROVIDED));
        assert_eq!(check(Some("12$secret")), Err(NOT_PROVIDED));
    }
}
