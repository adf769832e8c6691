//! The path the policy sees must be the path the upstream gets.
//!
//! Envoy normalizes paths before the filter runs, when the listener is set
//! up as the README requires (`normalize_path`, `merge_slashes`,
//! `path_with_escaped_slashes_action: REJECT_REQUEST`). This check is the
//! second wall: anything that still reads two ways — an encoded slash an
//! upstream may decode into a new segment, a double encoding one more
//! decoding turns into `..`, a dot segment, a `;` parameter some frameworks
//! strip and some do not — is refused with a named reason instead of being
//! judged by a policy that reads it one way while the upstream reads it
//! another.

/// Why a path cannot be taken as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// Not `/`-rooted (and not `OPTIONS *`).
    NotAbsolute,
    /// `%2F` or `%5C`: an upstream may decode it into a separator.
    EncodedSlash,
    /// A raw `\`: some servers treat it as `/`.
    Backslash,
    /// `%00`, or a raw control byte.
    ControlByte,
    /// `%25` in the path: a second decoding would change it (`%252e`,
    /// `%25%32%65`).
    DoubleEncoding,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A `.` or `..` segment, plain or percent-encoded.
    DotSegment,
    /// An empty segment (`//`), which `merge_slashes` should have removed.
    EmptySegment,
    /// A `;` path parameter, refused when the config says so.
    Parameter,
    /// A byte outside ASCII.
    NotAscii,
}

impl PathProblem {
    /// Stable reason code, used in the response, the audit record and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            PathProblem::NotAbsolute => "path_not_absolute",
            PathProblem::EncodedSlash => "path_encoded_slash",
            PathProblem::Backslash => "path_backslash",
            PathProblem::ControlByte => "path_control_byte",
            PathProblem::DoubleEncoding => "path_double_encoded",
            PathProblem::BadEscape => "path_bad_escape",
            PathProblem::DotSegment => "path_dot_segment",
            PathProblem::EmptySegment => "path_empty_segment",
            PathProblem::Parameter => "path_parameter",
            PathProblem::NotAscii => "path_not_ascii",
        }
    }

    /// What is wrong, for the client and the log.
    pub fn message(self) -> &'static str {
        match self {
            PathProblem::NotAbsolute => "the path must start with /",
            PathProblem::EncodedSlash => "the path holds an encoded slash or backslash (%2F, %5C)",
            PathProblem::Backslash => "the path holds a backslash",
            PathProblem::ControlByte => "the path holds a NUL or control byte",
            PathProblem::DoubleEncoding => {
                "the path holds an encoded % (%25): it would decode twice"
            }
            PathProblem::BadEscape => "the path holds a % that is not followed by two hex digits",
            PathProblem::DotSegment => "the path holds a . or .. segment",
            PathProblem::EmptySegment => "the path holds an empty segment (//)",
            PathProblem::Parameter => "the path holds a ; parameter (plain or as %3B)",
            PathProblem::NotAscii => "the path holds bytes outside ASCII",
        }
    }
}

/// Checks `:path` (the query included: only the part before `?` is a path,
/// but escapes and control bytes are checked in the query too).
/// `allow_parameters` lets `;` through in path segments.
pub fn check(path: &[u8], method: &[u8], allow_parameters: bool) -> Result<(), PathProblem> {
    if path == b"*" && method == b"OPTIONS" {
        return Ok(());
    }
    let (path_part, query) = match path.iter().position(|&b| b == b'?') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (path, &[][..]),
    };
    if path_part.first() != Some(&b'/') {
        return Err(PathProblem::NotAbsolute);
    }
    check_bytes(path_part, true)?;
    check_bytes(query, false)?;
    if !allow_parameters && (path_part.contains(&b';') || has_escape(path_part, b';')) {
        return Err(PathProblem::Parameter);
    }
    // Segments after the leading `/`; a trailing `/` is fine (`/a/`).
    let body = &path_part[1..];
    let mut segments: Vec<&[u8]> = body.split(|&b| b == b'/').collect();
    if segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop();
    }
    for segment in segments {
        if segment.is_empty() {
            return Err(PathProblem::EmptySegment);
        }
        // A parameter does not hide a dot segment: `..;x` is `..` to Tomcat.
        let name = match segment.iter().position(|&b| b == b';') {
            Some(i) => &segment[..i],
            None => segment,
        };
        if is_dot_segment(name) {
            return Err(PathProblem::DotSegment);
        }
    }
    Ok(())
}

/// Byte-level rules: ASCII, no control bytes, well-formed escapes, no
/// encoded separators or NUL, no double encoding. In a query, escaped
/// slashes are data and are allowed.
fn check_bytes(bytes: &[u8], is_path: bool) -> Result<(), PathProblem> {
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            0..=0x1f | 0x7f => return Err(PathProblem::ControlByte),
            0x80..=0xff => return Err(PathProblem::NotAscii),
            b'\\' if is_path => return Err(PathProblem::Backslash),
            b'%' => {
                let decoded = escape_at(bytes, i).ok_or(PathProblem::BadEscape)?;
                match decoded {
                    0 => return Err(PathProblem::ControlByte),
                    b'/' | b'\\' if is_path => return Err(PathProblem::EncodedSlash),
                    // Any encoded `%` in the path: whatever follows it
                    // (`%252e`, `%25%32%65`) means something else after
                    // one more decoding.
                    b'%' if is_path => return Err(PathProblem::DoubleEncoding),
                    _ => {}
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The byte encoded by `%XX` at `at`, if well formed.
fn escape_at(bytes: &[u8], at: usize) -> Option<u8> {
    if bytes.get(at) != Some(&b'%') {
        return None;
    }
    let hi = hex(*bytes.get(at + 1)?)?;
    let lo = hex(*bytes.get(at + 2)?)?;
    Some(hi << 4 | lo)
}

/// True if `bytes` holds `%XX` encoding `byte`.
fn has_escape(bytes: &[u8], byte: u8) -> bool {
    (0..bytes.len()).any(|i| escape_at(bytes, i) == Some(byte))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `.` or `..`, with any dot written as `%2e`/`%2E`.
fn is_dot_segment(segment: &[u8]) -> bool {
    let mut dots = 0;
    let mut i = 0;
    while i < segment.len() {
        if segment[i] == b'.' {
            i += 1;
        } else if escape_at(segment, i) == Some(b'.') {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Result<(), PathProblem> {
        check(path.as_bytes(), b"GET", false)
    }

    #[test]
    fn canonical_paths_pass() {
        for ok in [
            "/",
            "/api/v1/customers/42",
            "/api/v1/customers/",
            "/api/v1/customers?limit=10&q=a%2Fb",
            "/files/report.v2.csv",
            "/a/...",
            "/a/.hidden",
            "/names/J%C3%BCrgen",
            "/search?q=%25",
            "/search?q=a%3Bb",
        ] {
            assert_eq!(get(ok), Ok(()), "{ok}");
        }
        assert_eq!(check(b"*", b"OPTIONS", false), Ok(()));
        assert_eq!(check(b"/a;v=1/b", b"GET", true), Ok(()));
    }

    #[test]
    fn each_trick_is_refused_with_its_reason() {
        use PathProblem::*;
        for (path, problem) in [
            ("api/v1", NotAbsolute),
            ("*", NotAbsolute),
            ("/api/v1/customers/..%2F..%2Fadmin", EncodedSlash),
            ("/api/v1/customers/%2fadmin", EncodedSlash),
            ("/api/v1/customers/%5C..%5Cadmin", EncodedSlash),
            ("/api/v1\\admin", Backslash),
            ("/api/v1/customers/42%00.json", ControlByte),
            ("/api/v1/customers/42?x=%00", ControlByte),
            ("/api/v1/cu\tstomers", ControlByte),
            ("/api/v1/customers/%252e%252e/admin", DoubleEncoding),
            ("/api/v1/%252F", DoubleEncoding),
            ("/api/v1/customers/42/%25%32%65%25%32%65/43", DoubleEncoding),
            ("/api/v1/customers/%25%32%46admin", DoubleEncoding),
            ("/api/v1/%25", DoubleEncoding),
            ("/api/v1/customers/42%3Bx", Parameter),
            ("/api/v1/customers/..%3bx/43", Parameter),
            ("/api/v1/%zz", BadEscape),
            ("/api/v1/%2", BadEscape),
            ("/api/v1/customers?x=%g1", BadEscape),
            ("/api/v1/customers/../admin", DotSegment),
            ("/api/v1/./customers", DotSegment),
            ("/api/v1/customers/%2e%2e/admin", DotSegment),
            ("/api/v1/customers/.%2E/admin", DotSegment),
            ("/api/v1/customers/..", DotSegment),
            ("/api/v1//customers", EmptySegment),
            ("//api/v1/customers", EmptySegment),
            ("/api/v1/customers;jsessionid=1", Parameter),
            ("/api/v1/customers/é", NotAscii),
        ] {
            assert_eq!(get(path), Err(problem), "{path}");
        }
        // A parameter does not hide a dot segment where parameters are allowed.
        assert_eq!(
            check(b"/api/..;x/admin", b"GET", true),
            Err(PathProblem::DotSegment)
        );
    }

    #[test]
    fn non_utf8_bytes_are_refused_not_crashed_on() {
        assert_eq!(
            check(b"/api/\xff\xfe", b"GET", false),
            Err(PathProblem::NotAscii)
        );
    }
}
