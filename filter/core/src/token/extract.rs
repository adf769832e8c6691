//! Finding the one bearer token in a request's headers.
//!
//! The rules are strict on purpose: a request may carry no token (the policy
//! then decides), or exactly one. Two `Authorization` headers, or one value
//! holding two tokens, is an invalid token — never "take the first".

use crate::request::Headers;
use crate::token::TokenError;

/// A header location a provider reads tokens from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSource {
    /// Lowercase header name.
    pub name: String,
    /// Auth scheme word (e.g. `Bearer`), matched case-insensitively (RFC 7235),
    /// followed by one or more spaces. `None` means the whole value is the token.
    pub scheme: Option<String>,
    /// A literal prefix that is not a scheme word (no trailing space), matched exactly.
    pub literal_prefix: String,
}

impl HeaderSource {
    /// Builds a source from the config's `name` and `value_prefix`.
    /// A prefix ending in a space (`"Bearer "`) is an auth scheme.
    pub fn new(name: &str, value_prefix: &str) -> Self {
        let name = name.to_ascii_lowercase();
        match value_prefix.strip_suffix(' ') {
            Some(scheme) if !scheme.trim().is_empty() => HeaderSource {
                name,
                scheme: Some(scheme.trim().to_owned()),
                literal_prefix: String::new(),
            },
            _ => HeaderSource {
                name,
                scheme: None,
                literal_prefix: value_prefix.to_owned(),
            },
        }
    }

    /// The token in one header value: `Ok(None)` when the value is not for this
    /// source (e.g. `Basic ...` where `Bearer` is expected).
    fn token_in<'a>(&self, value: &'a [u8]) -> Result<Option<&'a [u8]>, TokenError> {
        let value = trim_spaces(value);
        let rest = match &self.scheme {
            Some(scheme) => {
                let word_len = value
                    .iter()
                    .position(|b| matches!(b, b' ' | b'\t'))
                    .unwrap_or(value.len());
                let (word, rest) = value.split_at(word_len);
                if !word.eq_ignore_ascii_case(scheme.as_bytes()) {
                    return Ok(None);
                }
                trim_spaces(rest)
            }
            None => match value.strip_prefix(self.literal_prefix.as_bytes()) {
                Some(rest) => trim_spaces(rest),
                None => return Ok(None),
            },
        };
        if rest.is_empty() {
            return Err(TokenError::Malformed("empty token"));
        }
        if rest.first() == Some(&b'{') {
            return Err(TokenError::Unsupported); // JWS JSON serialization
        }
        if rest.iter().any(|b| matches!(b, b' ' | b'\t' | b',')) {
            return Err(TokenError::Multiple);
        }
        Ok(Some(rest))
    }
}

fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// A token found in the request, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken<'a> {
    pub header: &'a str,
    pub token: &'a [u8],
}

/// Scans `headers` for tokens at any of `sources`. Returns `Ok(None)` when no
/// token is present, and [`TokenError::Multiple`] when more than one is.
///
/// A configured header is read strictly: it may occur once, and its value may
/// not hold a comma-joined list (`Basic x, Bearer y`). Otherwise an upstream
/// could act on a credential Palisade did not verify, such as the first of
/// two `Authorization` headers.
pub fn find_token<'h, 's>(
    headers: &'h Headers,
    sources: impl IntoIterator<Item = &'s HeaderSource>,
) -> Result<Option<FoundToken<'h>>, TokenError> {
    let mut found: Option<FoundToken<'h>> = None;
    let mut seen_headers: Vec<&str> = Vec::new();
    for source in sources {
        if seen_headers.contains(&source.name.as_str()) {
            continue;
        }
        seen_headers.push(&source.name);
        let mut occurrences = headers.get_all(&source.name);
        let Some((name, value)) = occurrences.next() else {
            continue;
        };
        if occurrences.next().is_some() {
            return Err(TokenError::Multiple);
        }
        let token = source.token_in(value);
        // A JSON-serialized JWS holds commas, but it is one token of a
        // kind Palisade does not accept: say so.
        if token == Err(TokenError::Unsupported) {
            return Err(TokenError::Unsupported);
        }
        if value.contains(&b',') {
            return Err(TokenError::Multiple);
        }
        if let Some(token) = token? {
            if found.is_some() {
                return Err(TokenError::Multiple);
            }
            found = Some(FoundToken {
                header: name,
                token,
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer() -> HeaderSource {
        HeaderSource::new("Authorization", "Bearer ")
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
        )
    }

    fn find(pairs: &[(&str, &str)]) -> Result<Option<Vec<u8>>, TokenError> {
        let h = headers(pairs);
        find_token(&h, [&bearer()]).map(|f| f.map(|t| t.token.to_vec()))
    }

    #[test]
    fn finds_bearer_token() {
        assert_eq!(
            find(&[("authorization", "Bearer abc.def.ghi")]),
            Ok(Some(b"abc.def.ghi".to_vec()))
        );
    }

    #[test]
    fn scheme_is_case_insensitive_and_allows_extra_spaces() {
        for v in [
            "bearer a.b.c",
            "BEARER a.b.c",
            "BeArEr   a.b.c",
            "Bearer a.b.c  ",
        ] {
            assert_eq!(
                find(&[("authorization", v)]),
                Ok(Some(b"a.b.c".to_vec())),
                "{v}"
            );
        }
    }

    #[test]
    fn no_header_or_other_scheme_is_no_token() {
        assert_eq!(find(&[]), Ok(None));
        assert_eq!(find(&[("authorization", "Basic dXNlcjpwdw==")]), Ok(None));
        assert_eq!(find(&[("authorization", "Bearerx a.b.c")]), Ok(None));
    }

    #[test]
    fn two_authorization_headers_are_invalid() {
        assert_eq!(
            find(&[
                ("authorization", "Bearer a.b.c"),
                ("Authorization", "Bearer d.e.f")
            ]),
            Err(TokenError::Multiple)
        );
    }

    #[test]
    fn two_tokens_in_one_value_are_invalid() {
        assert_eq!(
            find(&[("authorization", "Bearer a.b.c d.e.f")]),
            Err(TokenError::Multiple)
        );
        assert_eq!(
            find(&[("authorization", "Bearer a.b.c,Bearer d.e.f")]),
            Err(TokenError::Multiple)
        );
    }

    #[test]
    fn a_second_authorization_header_of_any_scheme_is_invalid() {
        assert_eq!(
            find(&[
                ("authorization", "Basic Ym9iOnB3"),
                ("authorization", "Bearer a.b.c")
            ]),
            Err(TokenError::Multiple)
        );
        assert_eq!(
            find(&[
                ("authorization", "Basic Ym9iOnB3"),
                ("authorization", "Basic eDp5")
            ]),
            Err(TokenError::Multiple)
        );
    }

    #[test]
    fn comma_joined_credentials_are_invalid_whatever_the_scheme() {
        assert_eq!(
            find(&[("authorization", "Basic eDp5, Bearer a.b.c")]),
            Err(TokenError::Multiple)
        );
    }

    #[test]
    fn a_json_serialized_jws_is_unsupported_not_mistaken_for_a_list() {
        assert_eq!(
            find(&[(
                "authorization",
                r#"Bearer {"payload":"e30","signatures":[{"signature":"AA"}]}"#
            )]),
            Err(TokenError::Unsupported)
        );
        // Still refused as a list when the token itself is compact.
        assert_eq!(
            find(&[("authorization", "Bearer a.b.c, {\"x\":1}")]),
            Err(TokenError::Multiple)
        );
    }

    #[test]
    fn tabs_and_leading_spaces_do_not_hide_a_token() {
        assert_eq!(
            find(&[("authorization", "Bearer\ta.b.c")]),
            Ok(Some(b"a.b.c".to_vec()))
        );
        assert_eq!(
            find(&[("authorization", "  Bearer a.b.c")]),
            Ok(Some(b"a.b.c".to_vec()))
        );
    }

    #[test]
    fn empty_bearer_is_invalid() {
        assert!(matches!(
            find(&[("authorization", "Bearer ")]),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            find(&[("authorization", "Bearer")]),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn custom_header_without_prefix() {
        let h = headers(&[("x-jwt", "a.b.c")]);
        let src = HeaderSource::new("X-JWT", "");
        assert_eq!(find_token(&h, [&src]).unwrap().unwrap().token, b"a.b.c");
    }

    #[test]
    fn same_header_shared_by_two_providers_is_one_token() {
        let h = headers(&[("authorization", "Bearer a.b.c")]);
        let (a, b) = (bearer(), bearer());
        assert!(find_token(&h, [&a, &b]).unwrap().is_some());
    }

    #[test]
    fn tokens_in_two_configured_headers_are_invalid() {
        let h = headers(&[("authorization", "Bearer a.b.c"), ("x-jwt", "d.e.f")]);
        let other = HeaderSource::new("x-jwt", "");
        assert_eq!(
            find_token(&h, [&bearer(), &other]),
            Err(TokenError::Multiple)
        );
    }
}
