//! The `package` path of a Rego module, read from its first statement, for
//! the roots check. A small reader rather than a parse with regorus: the
//! roots are checked before the module's syntax version matters, and the
//! full parse happens once, when the policy is compiled.
//!
//! Accepted: comments and blank lines, then `package` and a reference of
//! identifiers joined by `.` or written as `["string"]` (double-quoted
//! with JSON escapes, or a backtick raw string), e.g.
//! `package envoy.authz` or `package a["b-c"].d`.

/// The segments of the module's package (`["envoy", "authz"]`).
pub(crate) fn package_path(source: &str) -> Result<Vec<String>, String> {
    let mut rest = source;
    loop {
        rest = rest.trim_start();
        match rest.strip_prefix('#') {
            Some(comment) => rest = comment.split_once('\n').map_or("", |(_, next)| next),
            None => break,
        }
    }
    let after = rest
        .strip_prefix("package")
        .filter(|after| after.starts_with([' ', '\t']))
        .ok_or("the module must start with a `package` declaration")?;
    let mut chars = after.trim_start_matches([' ', '\t']);
    let mut segments = Vec::new();
    let first = identifier(&mut chars).ok_or("the package name must start with an identifier")?;
    segments.push(first);
    loop {
        if let Some(next) = chars.strip_prefix('.') {
            chars = next;
            let name = identifier(&mut chars)
                .ok_or("expected an identifier after `.` in the package name")?;
            segments.push(name);
        } else if let Some(next) = chars.strip_prefix('[') {
            chars = next;
            segments.push(string(&mut chars)?);
            chars = chars
                .strip_prefix(']')
                .ok_or("expected `]` in the package name")?;
        } else {
            break;
        }
    }
    // The declaration ends at a space, a newline, `;`, a comment or the end.
    if !(chars.is_empty() || chars.starts_with([' ', '\t', '\r', '\n', ';', '#'])) {
        return Err("cannot read the package name".into());
    }
    Ok(segments)
}

fn identifier(chars: &mut &str) -> Option<String> {
    let text = *chars;
    let end = text
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_alphabetic() || *c == '_' || (*i > 0 && c.is_ascii_digit())))
        .map_or(text.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let (name, rest) = text.split_at(end);
    *chars = rest;
    Some(name.to_owned())
}

fn string(chars: &mut &str) -> Result<String, String> {
    let text = *chars;
    if let Some(raw) = text.strip_prefix('`') {
        let (value, rest) = raw
            .split_once('`')
            .ok_or("unterminated raw string in the package name")?;
        *chars = rest;
        return Ok(value.to_owned());
    }
    if !text.starts_with('"') {
        return Err("expected a string in `[...]` in the package name".into());
    }
    // The closing quote: the first `"` not escaped by a backslash.
    let mut escaped = false;
    let end = text
        .char_indices()
        .skip(1)
        .find(|(_, c)| {
            let close = *c == '"' && !escaped;
            escaped = *c == '\\' && !escaped;
            close
        })
        .map(|(i, _)| i)
        .ok_or("unterminated string in the package name")?;
    let literal = text.get(..=end).unwrap_or_default();
    let value: String = serde_json::from_str(literal)
        .map_err(|_| format!("bad string {literal} in the package name"))?;
    *chars = text.get(end + 1..).unwrap_or_default();
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dotted_and_bracketed_packages_after_comments() {
        assert_eq!(
            package_path("# METADATA\n# title: x\n\npackage envoy.authz\n\nallow := true").unwrap(),
            ["envoy", "authz"]
        );
        assert_eq!(
            package_path("package a[\"b-c\"].d # c").unwrap(),
            ["a", "b-c", "d"]
        );
        assert_eq!(package_path("package a[`x.y`]\n").unwrap(), ["a", "x.y"]);
        assert_eq!(
            package_path("package a[\"q\\\"t\"]").unwrap(),
            ["a", "q\"t"]
        );
        assert_eq!(package_path("package x").unwrap(), ["x"]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "",
            "allow := true",
            "packagex",
            "package",
            "package 1a",
            "package a.",
            "package a[b]",
            "package a[\"b\"",
            "package a-b",
        ] {
            assert!(package_path(bad).is_err(), "{bad:?}");
        }
    }
}
