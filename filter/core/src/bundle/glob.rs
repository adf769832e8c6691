//! The glob patterns of `file_rego_versions`, as OPA compiles them
//! (`github.com/gobwas/glob`, no separators): `*` matches any run of
//! characters, `/` included; `?` one character; `[abc]`, `[a-z]` and
//! `[!abc]` a class; `{a,b}` alternatives; `\` escapes the next character.
//!
//! Alternatives are expanded up front (at most [`MAX_ALTERNATIVES`]) and
//! each flat pattern is matched by dynamic programming, so no pattern can
//! make matching slow.

/// Longest pattern accepted, in characters.
const MAX_PATTERN_CHARS: usize = 1024;
/// Most flat patterns one `{a,b}` pattern may expand to.
const MAX_ALTERNATIVES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*` (and `**`)
    Any,
    /// `[...]`: negated, inclusive ranges.
    Class(bool, Vec<(char, char)>),
}

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pattern: String,
    flat: Vec<Vec<Token>>,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.chars().count() > MAX_PATTERN_CHARS {
            return Err(format!(
                "pattern longer than {MAX_PATTERN_CHARS} characters"
            ));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut at = 0;
        let flat = parse_seq(&chars, &mut at, false)?;
        Ok(Glob {
            pattern: pattern.to_owned(),
            flat,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        self.flat.iter().any(|tokens| matches_flat(tokens, &text))
    }
}

/// Parses up to the end, or (inside braces) up to an unescaped `,` or `}`,
/// returning every flat expansion.
fn parse_seq(chars: &[char], at: &mut usize, in_braces: bool) -> Result<Vec<Vec<Token>>, String> {
    let mut out: Vec<Vec<Token>> = vec![Vec::new()];
    while let Some(&c) = chars.get(*at) {
        let piece: Vec<Vec<Token>> = match c {
            ',' | '}' if in_braces => break,
            '\\' => {
                *at += 1;
                let escaped = *chars.get(*at).ok_or("pattern ends with `\\`")?;
                *at += 1;
                vec![vec![Token::Char(escaped)]]
            }
            '*' => {
                while chars.get(*at) == Some(&'*') {
                    *at += 1;
                }
                vec![vec![Token::Any]]
            }
            '?' => {
                *at += 1;
                vec![vec![Token::One]]
            }
            '[' => {
                *at += 1;
                vec![vec![parse_class(chars, at)?]]
            }
            '{' => {
                *at += 1;
                let mut alternatives = Vec::new();
                loop {
                    alternatives.extend(parse_seq(chars, at, true)?);
                    match chars.get(*at) {
                        Some(',') => *at += 1,
                        Some('}') => {
                            *at += 1;
                            break;
                        }
                        _ => return Err("unclosed `{`".into()),
                    }
                }
                alternatives
            }
            _ => {
                *at += 1;
                vec![vec![Token::Char(c)]]
            }
        };
        if out.len().saturating_mul(piece.len()) > MAX_ALTERNATIVES {
            return Err(format!("more than {MAX_ALTERNATIVES} alternatives"));
        }
        out = out
            .iter()
            .flat_map(|prefix| {
                piece.iter().map(move |tail| {
                    let mut joined = prefix.clone();
                    joined.extend(tail.iter().cloned());
                    joined
                })
            })
            .collect();
    }
    Ok(out)
}

/// After `[`: items up to `]`.
fn parse_class(chars: &[char], at: &mut usize) -> Result<Token, String> {
    let negated = chars.get(*at) == Some(&'!');
    if negated {
        *at += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let c = *chars.get(*at).ok_or("unclosed `[`")?;
        *at += 1;
        match c {
            ']' if !ranges.is_empty() => return Ok(Token::Class(negated, ranges)),
            ']' => return Err("empty `[]`".into()),
            _ => {
                let low = if c == '\\' {
                    let escaped = *chars.get(*at).ok_or("unclosed `[`")?;
                    *at += 1;
                    escaped
                } else {
                    c
                };
                if chars.get(*at) == Some(&'-') && chars.get(*at + 1).is_some_and(|n| *n != ']') {
                    let high = *chars.get(*at + 1).ok_or("unclosed `[`")?;
                    *at += 2;
                    if high < low {
                        return Err(format!("range `{low}-{high}` is reversed"));
                    }
                    ranges.push((low, high));
                } else {
                    ranges.push((low, low));
                }
            }
        }
    }
}

/// `matched[i][j]`: the first `i` tokens match the first `j` characters.
fn matches_flat(tokens: &[Token], text: &[char]) -> bool {
    let width = text.len() + 1;
    let mut row = vec![false; width];
    row[0] = true;
    for token in tokens {
        let mut next = vec![false; width];
        for j in 0..width {
            next[j] = match token {
                // Any run: extend from this row at j, or from next at j - 1.
                Token::Any => row[j] || (j > 0 && next[j - 1]),
                _ => j > 0 && row[j - 1] && one(token, text[j - 1]),
            };
        }
        row = next;
    }
    row[text.len()]
}

fn one(token: &Token, c: char) -> bool {
    match token {
        Token::Char(expected) => *expected == c,
        Token::One => true,
        Token::Any => true,
        Token::Class(negated, ranges) => {
            ranges.iter().any(|(l, h)| (*l..=*h).contains(&c)) != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::new(pattern).unwrap().matches(text)
    }

    #[test]
    fn star_crosses_slashes_as_in_gobwas_without_separators() {
        assert!(m("*.rego", "a/b/c.rego"));
        assert!(m("/policy/*", "/policy/x/y.rego"));
        assert!(!m("*.rego", "a/b/c.json"));
        assert!(m("**", ""));
    }

    #[test]
    fn exact_one_class_and_alternatives() {
        assert!(m("/a/legacy.rego", "/a/legacy.rego"));
        assert!(!m("/a/legacy.rego", "/a/legacy.regox"));
        assert!(m("v?.rego", "v0.rego"));
        assert!(!m("v?.rego", "v10.rego"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("{old,legacy}/*.rego", "legacy/p.rego"));
        assert!(!m("{old,legacy}/*.rego", "new/p.rego"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
    }

    #[test]
    fn malformed_and_explosive_patterns_are_refused() {
        for bad in ["[", "[]", "{a,b", "x\\", "[z-a]"] {
            assert!(Glob::new(bad).is_err(), "{bad}");
        }
        let explosive = "{a,b}".repeat(9); // 512 alternatives
        assert!(Glob::new(&explosive).unwrap_err().contains("alternatives"));
        assert!(Glob::new(&"a".repeat(MAX_PATTERN_CHARS + 1)).is_err());
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(50) + "b";
        let text = "a".repeat(1000);
        assert!(!m(&pattern, &text));
    }
}
