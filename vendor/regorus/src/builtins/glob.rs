// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

#![allow(clippy::pattern_type_mismatch)]

use crate::ast::{Expr, Ref};
use crate::builtins;
use crate::builtins::utils::{ensure_args_count, ensure_string, ensure_string_collection};
use crate::lexer::Span;
use crate::value::Value;
use crate::*;

use anyhow::{bail, Result};

pub fn register(m: &mut builtins::BuiltinsMap<&'static str, builtins::BuiltinFcn>) {
    m.insert("glob.match", (glob_match, 3));
    m.insert("glob.quote_meta", (quote_meta, 1));
}

// OPA implements `glob.match` with github.com/gobwas/glob (v0.2.3), whose
// syntax and semantics are not those of globset: `*` matches any run of
// characters other than the delimiters and `**` any run at all, *anywhere* in
// the pattern (not only as a whole path component); `?` is one character other
// than a delimiter; `[abc]`, `[!abc]`, `[a-z]`, `[!a-z]` are one character,
// delimiter or not; `{a,b}` are alternatives (nestable; `,` and `}` are plain
// text outside braces, and an unclosed `{` runs to the end); `\` escapes the
// next character (a trailing `\` is dropped). The delimiters are `["."]` when
// the array is empty and none at all when it is `null`. So the pattern is
// parsed as gobwas does and matched here with a small NFA (linear time).
// Not reproduced: bugs of gobwas v0.2.3's optimized matchers, e.g. a lone `?`
// or `[!a]` matches "", fixed-length runs slice multi-byte characters (`a?c`
// does not match "aéc"), and `?*` with delimiters `[".", "/"]` rejects only
// the substring "./".

/// A node of a parsed glob, as in gobwas/glob's syntax tree.
#[derive(Debug, Clone, PartialEq)]
enum GlobNode {
    Text(Vec<char>),
    /// `*`
    Any,
    /// `**`
    Super,
    /// `?`
    Single,
    List {
        chars: Vec<char>,
        not: bool,
    },
    Range {
        lo: char,
        hi: char,
        not: bool,
    },
    /// `{a,b,...}`
    AnyOf(Vec<Vec<GlobNode>>),
}

#[derive(Debug, Clone, PartialEq)]
enum GlobToken {
    Text(Vec<char>),
    Any,
    Super,
    Single,
    Not,
    Separator,
    RangeOpen,
    RangeClose,
    RangeLo(char),
    RangeHi(char),
    TermsOpen,
    TermsClose,
}

/// gobwas/glob's lexer (syntax/lexer), including its error cases.
struct GlobLexer {
    chars: Vec<char>,
    pos: usize,
    /// Whether the last `read` consumed a char (so `unread` can step back).
    last_read: bool,
    terms_level: usize,
    tokens: Vec<GlobToken>,
}

impl GlobLexer {
    fn read(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        self.last_read = c.is_some();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn unread(&mut self) {
        if self.last_read {
            self.pos -= 1;
            self.last_read = false;
        }
    }

    fn lex(pattern: &str) -> core::result::Result<Vec<GlobToken>, &'static str> {
        let mut l = GlobLexer {
            chars: pattern.chars().collect(),
            pos: 0,
            last_read: false,
            terms_level: 0,
            tokens: Vec::new(),
        };
        while let Some(c) = l.read() {
            match c {
                '{' => {
                    l.terms_level += 1;
                    l.tokens.push(GlobToken::TermsOpen);
                }
                ',' if l.terms_level > 0 => l.tokens.push(GlobToken::Separator),
                '}' if l.terms_level > 0 => {
                    l.tokens.push(GlobToken::TermsClose);
                    l.terms_level -= 1;
                }
                '[' => {
                    l.tokens.push(GlobToken::RangeOpen);
                    l.fetch_range()?;
                }
                '?' => l.tokens.push(GlobToken::Single),
                '*' => {
                    if l.read() == Some('*') {
                        l.tokens.push(GlobToken::Super);
                    } else {
                        l.unread();
                        l.tokens.push(GlobToken::Any);
                    }
                }
                _ => {
                    l.unread();
                    if l.terms_level > 0 {
                        l.fetch_text(&['?', '*', '[', '{', '}', ',']);
                    } else {
                        l.fetch_text(&['?', '*', '[', '{']);
                    }
                }
            }
        }
        Ok(l.tokens)
    }

    fn fetch_range(&mut self) -> core::result::Result<(), &'static str> {
        let (mut want_hi, mut want_close, mut seen_not) = (false, false, false);
        loop {
            let Some(r) = self.read() else {
                return Err("unexpected end of input");
            };
            if want_close {
                if r != ']' {
                    return Err("expected close range character");
                }
                self.tokens.push(GlobToken::RangeClose);
                return Ok(());
            }
            if want_hi {
                self.tokens.push(GlobToken::RangeHi(r));
                want_close = true;
                continue;
            }
            if !seen_not && r == '!' {
                self.tokens.push(GlobToken::Not);
                seen_not = true;
                continue;
            }
            if self.chars.get(self.pos) == Some(&'-') {
                self.pos += 1;
                self.tokens.push(GlobToken::RangeLo(r));
                want_hi = true;
                continue;
            }
            self.unread();
            self.fetch_text(&[']']);
            want_close = true;
        }
    }

    fn fetch_text(&mut self, breakers: &[char]) {
        let mut data = Vec::new();
        let mut escaped = false;
        while let Some(r) = self.read() {
            if !escaped {
                if r == '\\' {
                    escaped = true;
                    continue;
                }
                if breakers.contains(&r) {
                    self.unread();
                    break;
                }
            }
            escaped = false;
            data.push(r);
        }
        if !data.is_empty() {
            self.tokens.push(GlobToken::Text(data));
        }
    }
}

/// The deepest nesting of `{…}` groups a pattern may have.
const MAX_GLOB_NESTING: usize = 64;

/// gobwas/glob's parser (syntax/ast), including its error cases.
fn parse_glob(pattern: &str) -> core::result::Result<Vec<GlobNode>, String> {
    let tokens = GlobLexer::lex(pattern)?;
    // Open `{` groups: the alternatives closed so far and the one being read.
    let mut groups: Vec<(Vec<Vec<GlobNode>>, Vec<GlobNode>)> = Vec::new();
    let mut current: Vec<GlobNode> = Vec::new();
    let mut tokens = tokens.into_iter();
    while let Some(token) = tokens.next() {
        match token {
            GlobToken::Text(t) => current.push(GlobNode::Text(t)),
            GlobToken::Any => current.push(GlobNode::Any),
            GlobToken::Super => current.push(GlobNode::Super),
            GlobToken::Single => current.push(GlobNode::Single),
            GlobToken::TermsOpen => {
                // Palisade: the matcher recurses once per nested `{`; a
                // pattern from a request must not overflow the Wasm stack.
                // OPA has no such bound; deeper is an error (a denial).
                if groups.len() >= MAX_GLOB_NESTING {
                    return Err(format!("`{{` nested deeper than {MAX_GLOB_NESTING}"));
                }
                groups.push((Vec::new(), core::mem::take(&mut current)));
            }
            GlobToken::Separator => {
                if let Some((alts, _)) = groups.last_mut() {
                    alts.push(core::mem::take(&mut current));
                }
            }
            GlobToken::TermsClose => {
                if let Some((mut alts, outer)) = groups.pop() {
                    alts.push(core::mem::replace(&mut current, outer));
                    current.push(GlobNode::AnyOf(alts));
                }
            }
            GlobToken::RangeOpen => {
                let (mut not, mut lo, mut hi, mut chars) = (false, '\0', '\0', Vec::new());
                loop {
                    match tokens.next() {
                        None => return Err("unexpected end".into()),
                        Some(GlobToken::Not) => not = true,
                        Some(GlobToken::RangeLo(c)) => lo = c,
                        Some(GlobToken::RangeHi(c)) => {
                            hi = c;
                            if hi < lo {
                                return Err(format!(
                                    "hi character '{hi}' should be greater than lo '{lo}'"
                                ));
                            }
                        }
                        Some(GlobToken::Text(t)) => chars = t,
                        Some(GlobToken::RangeClose) => break,
                        Some(t) => return Err(format!("unexpected token: {t:?}")),
                    }
                }
                let is_range = lo != '\0' && hi != '\0';
                let is_chars = !chars.is_empty();
                if is_range == is_chars {
                    return Err("could not parse range".into());
                }
                current.push(if is_range {
                    GlobNode::Range { lo, hi, not }
                } else {
                    GlobNode::List { chars, not }
                });
            }
            t => return Err(format!("unexpected token: {t:?}")),
        }
    }
    // An unclosed `{` holds the rest of the pattern as its last alternative.
    while let Some((mut alts, outer)) = groups.pop() {
        alts.push(core::mem::replace(&mut current, outer));
        current.push(GlobNode::AnyOf(alts));
    }
    Ok(current)
}

#[derive(Debug)]
enum GlobInst {
    Char(char),
    /// Any char; a delimiter too only if `cross_delimiters`.
    AnyChar {
        cross_delimiters: bool,
    },
    List {
        chars: Vec<char>,
        not: bool,
    },
    Range {
        lo: char,
        hi: char,
        not: bool,
    },
    Split(usize, usize),
    Jmp(usize),
    Match,
}

fn compile_glob(nodes: &[GlobNode], prog: &mut Vec<GlobInst>) {
    for node in nodes {
        match node {
            GlobNode::Text(t) => prog.extend(t.iter().map(|c| GlobInst::Char(*c))),
            GlobNode::Any | GlobNode::Super => {
                let start = prog.len();
                prog.push(GlobInst::Split(start + 1, start + 3));
                prog.push(GlobInst::AnyChar {
                    cross_delimiters: matches!(node, GlobNode::Super),
                });
                prog.push(GlobInst::Jmp(start));
            }
            GlobNode::Single => prog.push(GlobInst::AnyChar {
                cross_delimiters: false,
            }),
            GlobNode::List { chars, not } => prog.push(GlobInst::List {
                chars: chars.clone(),
                not: *not,
            }),
            GlobNode::Range { lo, hi, not } => prog.push(GlobInst::Range {
                lo: *lo,
                hi: *hi,
                not: *not,
            }),
            GlobNode::AnyOf(alts) => {
                let mut jumps = Vec::new();
                for (i, alt) in alts.iter().enumerate() {
                    let split = prog.len();
                    let last = i + 1 == alts.len();
                    if !last {
                        prog.push(GlobInst::Split(split + 1, 0));
                    }
                    compile_glob(alt, prog);
                    if !last {
                        jumps.push(prog.len());
                        prog.push(GlobInst::Jmp(0));
                        let next = prog.len();
                        if let Some(GlobInst::Split(_, y)) = prog.get_mut(split) {
                            *y = next;
                        }
                    }
                }
                let end = prog.len();
                for j in jumps {
                    if let Some(GlobInst::Jmp(x)) = prog.get_mut(j) {
                        *x = end;
                    }
                }
            }
        }
    }
}

/// Adds `pc` and everything reachable from it without consuming a char.
fn glob_add_state(prog: &[GlobInst], list: &mut Vec<usize>, seen: &mut [bool], pc: usize) {
    let mut stack = vec![pc];
    while let Some(pc) = stack.pop() {
        if seen.get(pc).copied().unwrap_or(true) {
            continue;
        }
        seen[pc] = true;
        match prog.get(pc) {
            Some(GlobInst::Split(x, y)) => {
                stack.push(*y);
                stack.push(*x);
            }
            Some(GlobInst::Jmp(x)) => stack.push(*x),
            Some(_) => list.push(pc),
            None => {}
        }
    }
}

fn glob_is_match(nodes: &[GlobNode], delimiters: &[char], value: &str) -> bool {
    let mut prog = Vec::new();
    compile_glob(nodes, &mut prog);
    prog.push(GlobInst::Match);

    let mut current = Vec::new();
    let mut seen = vec![false; prog.len()];
    glob_add_state(&prog, &mut current, &mut seen, 0);
    for c in value.chars() {
        let mut next = Vec::new();
        seen.iter_mut().for_each(|s| *s = false);
        for pc in &current {
            let step = match &prog[*pc] {
                GlobInst::Char(x) => *x == c,
                GlobInst::AnyChar {
                    cross_delimiters: true,
                } => true,
                GlobInst::AnyChar {
                    cross_delimiters: false,
                } => !delimiters.contains(&c),
                GlobInst::List { chars, not } => chars.contains(&c) != *not,
                GlobInst::Range { lo, hi, not } => (*lo <= c && c <= *hi) != *not,
                _ => false,
            };
            if step {
                glob_add_state(&prog, &mut next, &mut seen, pc + 1);
            }
        }
        if next.is_empty() {
            return false;
        }
        current = next;
    }
    current
        .iter()
        .any(|pc| matches!(prog.get(*pc), Some(GlobInst::Match)))
}

fn glob_match(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "glob.match";
    ensure_args_count(span, name, params, args, 3)?;

    let pattern = ensure_string(name, &params[0], &args[0])?;
    let value = ensure_string(name, &params[2], &args[2])?;

    let delimiters: Vec<char> = match &args[1] {
        // null: no delimiters at all.
        Value::Null => Vec::new(),
        Value::Array(_) => {
            let mut delimiters = Vec::new();
            for d in ensure_string_collection(name, &params[1], &args[1])? {
                let mut chars = d.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => delimiters.push(c),
                    _ => bail!(params[1]
                        .span()
                        .error("delimiters must be single character")),
                }
            }
            // An empty array means the default delimiter ".".
            if delimiters.is_empty() {
                delimiters.push('.');
            }
            delimiters
        }
        _ => bail!(params[1]
            .span()
            .error(format!("{name} requires string array or null").as_str())),
    };

    let nodes = parse_glob(pattern.as_ref()).map_err(|e| {
        params[0]
            .span()
            .error(format!("invalid glob: {e}").as_str())
    })?;
    Ok(Value::Bool(glob_is_match(
        &nodes,
        &delimiters,
        value.as_ref(),
    )))
}

fn quote_meta(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "glob.quote_meta";
    ensure_args_count(span, name, params, args, 1)?;

    let pattern = ensure_string(name, &params[0], &args[0])?;
    // As gobwas/glob's QuoteMeta (used by OPA): escape each of its special
    // characters `*?\[]{}` with a backslash; the input need not be a valid glob.
    let mut quoted = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if matches!(c, '*' | '?' | '\\' | '[' | ']' | '{' | '}') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    Ok(Value::String(quoted.into()))
}
