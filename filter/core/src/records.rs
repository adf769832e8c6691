//! Streaming record counting for response bodies.
//!
//! A record budget is only enforceable if the filter knows, while the body
//! streams through, how many records the client has been sent. Bodies arrive in
//! arbitrary chunks and may be large, so this is a byte-at-a-time JSON state
//! machine with O(depth) memory (a fixed bit stack, no per-chunk allocation)
//! rather than a parser that buffers the body.
//!
//! A record counts as soon as its first byte is seen: a client must never get
//! part of a record past its budget, so [`Fed::cut_at`] points at the *start*
//! of the first record over budget. The JSON is validated as it goes (structure,
//! strings, escapes, numbers, literals; not UTF-8), because a counter that
//! accepted `[1 2]` or `{"a":1}{"b":2}` could disagree with the client's parser
//! about how many records it received. Malformed input stops counting and is
//! reported; the caller fails closed.

/// Deepest container nesting accepted; deeper bodies are malformed. Bounds the
/// counter's state, whatever the upstream sends.
pub const MAX_DEPTH: usize = 128;

/// Words of the container-kind bit stack.
const WORDS: usize = MAX_DEPTH.div_ceil(64);

/// How records are counted in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountMode {
    /// Elements of the array at an RFC 6901 pointer made only of object member
    /// steps (`""` is the whole body, `"/data/rows"` a nested member).
    JsonArray { pointer: String },
    /// One record per line holding a JSON value; blank lines are ignored.
    Ndjson,
}

/// Result of feeding a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Records completed or started so far in the whole body (monotonic).
    pub records: u64,
    /// If `cut_after` was given to `feed` and the body reached a record past
    /// that many records, the byte offset WITHIN THIS CHUNK where that record
    /// starts (the caller forwards only `chunk[..offset]` and cuts the stream).
    pub cut_at: Option<usize>,
}

/// What the tokenizer expects next outside strings, numbers and literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Before the root, after `:`, or after `,` in an array.
    Value,
    /// Just after `[`.
    ValueOrClose,
    /// Just after `{`.
    KeyOrClose,
    /// After `,` in an object.
    Key,
    Colon,
    /// `,` or the container's close; at depth 0, only whitespace.
    Next,
}

/// Progress through a number, following the JSON grammar exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    /// The state after `b`, or `None` when `b` does not continue the number.
    fn next(self, b: u8) -> Option<Num> {
        let digit = b.is_ascii_digit();
        match (self, b) {
            (Num::Minus, b'0') => Some(Num::Zero),
            (Num::Minus | Num::Int, _) if digit => Some(Num::Int),
            (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
            (Num::Dot | Num::Frac, _) if digit => Some(Num::Frac),
            (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
            (Num::Exp | Num::ExpSign | Num::ExpDigits, _) if digit => Some(Num::ExpDigits),
            _ => None,
        }
    }

    /// True if the number may end here (`1`, `0.5`, `1e3`; not `-`, `1.`, `1e`).
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

/// Tokenizer state; all of it survives a chunk boundary. `bool`s say whether
/// the string is an object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Between(Expect),
    Str(bool),
    /// After a backslash.
    Escape(bool),
    /// Hex digits still due in a `\u` escape.
    Hex(bool, u8),
    Number(Num),
    /// The bytes of `true`, `false` or `null` still due.
    Literal(&'static [u8]),
}

/// Per-`feed` context.
struct Pass {
    cut_after: Option<u64>,
    cut_at: Option<usize>,
    /// Offset in this chunk of the current NDJSON line's first byte; 0 when the
    /// line began in an earlier chunk (only its indentation was sent then).
    line_start: usize,
}

/// Counts records in a body fed in chunks, with O(depth) memory.
///
/// Member names are compared byte for byte with the pointer's steps after
/// decoding one-character escapes (`\"`, `\\`, `\/`, `\n`, ...). A name spelled
/// with a `\u` escape never matches: decoding UTF-16 escapes is not worth its
/// code for a name the upstream itself writes. Duplicate names on the path are
/// all followed and every array they name is counted: over-counting is the
/// safe side of a budget.
#[derive(Debug, Clone)]
pub struct RecordCounter {
    ndjson: bool,
    /// Decoded pointer steps (JSON mode only).
    segments: Vec<Vec<u8>>,
    lex: Lex,
    /// Open containers.
    depth: usize,
    /// Bit `i` set when the container at depth `i + 1` is an array.
    kinds: [u64; WORDS],
    /// Open containers on the pointer path: the one at depth `k <= on_path` is
    /// the value the first `k - 1` steps lead to.
    on_path: usize,
    /// Bytes of the current key matching `segments[depth - 1]` so far; `None`
    /// once it cannot match, or when the key is off the path.
    key: Option<usize>,
    /// The key just read matched its step: the next value is on the path.
    key_hit: bool,
    /// Depth of the target array while it is open.
    target_depth: Option<usize>,
    records: u64,
    cut_done: bool,
    malformed: bool,
}

impl RecordCounter {
    /// Starts a counter; fails for a pointer that is neither empty nor starts
    /// with `/`, has a `~` not followed by `0` or `1`, or is too deep to reach.
    pub fn new(mode: CountMode) -> Result<RecordCounter, String> {
        let (ndjson, segments) = match mode {
            CountMode::Ndjson => (true, Vec::new()),
            CountMode::JsonArray { pointer } => (false, parse_pointer(&pointer)?),
        };
        Ok(RecordCounter {
            ndjson,
            segments,
            lex: Lex::Between(Expect::Value),
            depth: 0,
            kinds: [0; WORDS],
            on_path: 0,
            key: None,
            key_hit: false,
            target_depth: None,
            records: 0,
            cut_done: false,
            malformed: false,
        })
    }

    /// Feeds the next chunk. `cut_after`: the number of records the client may
    /// still receive in total for this body (None = unlimited). When a record
    /// past `cut_after` starts in this chunk, `cut_at` is its start offset
    /// (JSON: the first byte of the element's value; NDJSON: the first byte of
    /// its line). A cut is reported once per body, as the caller stops
    /// forwarding there; since `cut_after` may shrink between calls (another
    /// stream spent the budget), any over-budget record cuts, not only number
    /// `cut_after + 1`.
    pub fn feed(&mut self, chunk: &[u8], cut_after: Option<u64>) -> Fed {
        let mut pass = Pass {
            cut_after,
            cut_at: None,
            line_start: 0,
        };
        for (at, &b) in chunk.iter().enumerate() {
            if self.malformed {
                break;
            }
            let ok = if self.ndjson && b == b'\n' {
                pass.line_start = at.saturating_add(1);
                self.end_text()
            } else {
                self.byte(b, at, &mut pass)
            };
            self.malformed = ok.is_none();
        }
        Fed {
            records: self.records,
            cut_at: pass.cut_at,
        }
    }

    /// End of body: a truncated document (or NDJSON line) becomes malformed;
    /// an empty body is fine, as it carries no record. A last NDJSON line
    /// without newline was already counted when it started. Returns the count.
    pub fn finish(&mut self) -> u64 {
        if !self.malformed {
            self.malformed = self.end_text().is_none();
        }
        self.records
    }

    /// Records counted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// True if the body so far is not valid for the mode (malformed JSON, the
    /// pointer target is not an array, nesting deeper than [`MAX_DEPTH`]).
    /// Counting has stopped then, and the caller should fail closed.
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    // The steps below return `None` for malformed input.

    /// Ends one JSON text (the body, or an NDJSON line).
    fn end_text(&mut self) -> Option<()> {
        let done = match self.lex {
            Lex::Between(Expect::Value | Expect::Next) => true,
            Lex::Number(num) => num.complete(),
            _ => false,
        };
        if self.depth != 0 || !done {
            return None;
        }
        if self.ndjson {
            self.lex = Lex::Between(Expect::Value);
        }
        Some(())
    }

    fn byte(&mut self, b: u8, at: usize, pass: &mut Pass) -> Option<()> {
        self.lex = match self.lex {
            Lex::Between(expect) => return self.structural(expect, b, at, pass),
            Lex::Number(num) => match num.next(b) {
                Some(next) => Lex::Number(next),
                // The byte that ends a number belongs to what follows it.
                None if num.complete() => return self.structural(Expect::Next, b, at, pass),
                None => return None,
            },
            Lex::Literal([want, rest @ ..]) if *want == b => match rest {
                [] => Lex::Between(Expect::Next),
                _ => Lex::Literal(rest),
            },
            Lex::Literal(_) => return None,
            Lex::Str(key) => match b {
                b'"' if key => {
                    let len = self.step().map(<[u8]>::len);
                    self.key_hit = self.key.take().is_some_and(|n| Some(n) == len);
                    Lex::Between(Expect::Colon)
                }
                b'"' => Lex::Between(Expect::Next),
                b'\\' => Lex::Escape(key),
                0x00..=0x1f => return None,
                _ => self.key_byte(key, b),
            },
            Lex::Escape(key) => match b {
                b'"' | b'\\' | b'/' => self.key_byte(key, b),
                b'b' => self.key_byte(key, 0x08),
                b'f' => self.key_byte(key, 0x0c),
                b'n' => self.key_byte(key, b'\n'),
                b'r' => self.key_byte(key, b'\r'),
                b't' => self.key_byte(key, b'\t'),
                b'u' => {
                    self.key = None;
                    Lex::Hex(key, 4)
                }
                _ => return None,
            },
            Lex::Hex(key, due) if b.is_ascii_hexdigit() => match due {
                0 | 1 => Lex::Str(key),
                _ => Lex::Hex(key, due - 1),
            },
            Lex::Hex(..) => return None,
        };
        Some(())
    }

    /// The pointer step a key in the current object is matched against.
    fn step(&self) -> Option<&[u8]> {
        self.segments
            .get(self.depth.checked_sub(1)?)
            .map(Vec::as_slice)
    }

    /// Advances the key match by one decoded byte of a string.
    fn key_byte(&mut self, key: bool, b: u8) -> Lex {
        let step = self.step();
        self.key = self
            .key
            .filter(|&n| step.and_then(|s| s.get(n)) == Some(&b))
            .map(|n| n.saturating_add(1));
        Lex::Str(key)
    }

    fn structural(&mut self, expect: Expect, b: u8, at: usize, pass: &mut Pass) -> Option<()> {
        self.lex = match (expect, b) {
            (_, b' ' | b'\t' | b'\n' | b'\r') => Lex::Between(expect),
            (Expect::ValueOrClose, b']') | (Expect::KeyOrClose, b'}') => self.close(),
            (Expect::Value | Expect::ValueOrClose, _) => return self.value_start(b, at, pass),
            (Expect::KeyOrClose | Expect::Key, b'"') => {
                let d = self.depth;
                self.key = (self.on_path == d && d <= self.segments.len()).then_some(0);
                Lex::Str(true)
            }
            (Expect::Colon, b':') => Lex::Between(Expect::Value),
            (Expect::Next, b',') if self.top_is_array()? => Lex::Between(Expect::Value),
            (Expect::Next, b',') => Lex::Between(Expect::Key),
            (Expect::Next, b']' | b'}') if self.top_is_array()? == (b == b']') => self.close(),
            _ => return None,
        };
        Some(())
    }

    fn value_start(&mut self, b: u8, at: usize, pass: &mut Pass) -> Option<()> {
        self.lex = match b {
            b'{' => Lex::Between(Expect::KeyOrClose),
            b'[' => Lex::Between(Expect::ValueOrClose),
            b'"' => Lex::Str(false),
            b'-' => Lex::Number(Num::Minus),
            b'0' => Lex::Number(Num::Zero),
            b'1'..=b'9' => Lex::Number(Num::Int),
            b't' => Lex::Literal(b"rue"),
            b'f' => Lex::Literal(b"alse"),
            b'n' => Lex::Literal(b"ull"),
            _ => return None,
        };
        let (d, opens) = (self.depth, matches!(b, b'{' | b'['));
        if opens && d >= MAX_DEPTH {
            return None;
        }
        // The root, or the value of a matched key, is where `d` steps lead.
        let on_path = d == 0 || std::mem::take(&mut self.key_hit);
        if self.ndjson {
            if d == 0 {
                self.record_starts(pass.line_start, pass);
            }
        } else {
            if d > 0 && self.target_depth == Some(d) {
                self.record_starts(at, pass);
            }
            if on_path && d == self.segments.len() {
                if b != b'[' {
                    return None;
                }
                self.target_depth = Some(d.saturating_add(1));
            } else if on_path && b == b'{' {
                self.on_path = d.saturating_add(1);
            }
        }
        if opens {
            let word = self.kinds.get_mut(d / 64)?;
            let bit = 1u64 << (d % 64);
            *word = if b == b'[' { *word | bit } else { *word & !bit };
            self.depth = d.saturating_add(1);
        }
        Some(())
    }

    fn close(&mut self) -> Lex {
        let d = self.depth;
        if self.target_depth == Some(d) {
            self.target_depth = None;
        }
        self.on_path = self.on_path.min(d.saturating_sub(1));
        self.depth = d.saturating_sub(1);
        Lex::Between(Expect::Next)
    }

    fn top_is_array(&self) -> Option<bool> {
        let index = self.depth.checked_sub(1)?;
        Some(self.kinds.get(index / 64)? & (1u64 << (index % 64)) != 0)
    }

    fn record_starts(&mut self, at: usize, pass: &mut Pass) {
        self.records = self.records.saturating_add(1);
        if !self.cut_done && pass.cut_after.is_some_and(|limit| self.records > limit) {
            self.cut_done = true;
            pass.cut_at = Some(at);
        }
    }
}

/// Decodes an RFC 6901 pointer into member names. Steps are never read as
/// array indices: `"/0"` names the member `"0"`.
fn parse_pointer(pointer: &str) -> Result<Vec<Vec<u8>>, String> {
    let invalid = |why: &str| format!("invalid JSON pointer {pointer:?}: {why}");
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| invalid("must be empty or start with '/'"))?;
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        if raw.split('~').skip(1).any(|s| !s.starts_with(['0', '1'])) {
            return Err(invalid("'~' must be followed by '0' or '1'"));
        }
        // RFC 6901 §4: `~1` first, so `~01` decodes to `~1`, not `/`.
        segments.push(raw.replace("~1", "/").replace("~0", "~").into_bytes());
    }
    // The target array sits one level below its last step.
    if segments.len() >= MAX_DEPTH {
        return Err(invalid("deeper than MAX_DEPTH"));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(pointer: &str) -> CountMode {
        CountMode::JsonArray {
            pointer: pointer.into(),
        }
    }

    type Outcome = (u64, bool, Option<usize>);

    /// Feeds `body` in chunks of `size`: (count, malformed, absolute cut).
    fn chunked(mode: &CountMode, body: &[u8], size: usize, cut_after: Option<u64>) -> Outcome {
        let mut counter = RecordCounter::new(mode.clone()).unwrap();
        let (mut cut, mut offset, mut last) = (None, 0, 0);
        for chunk in body.chunks(size) {
            let fed = counter.feed(chunk, cut_after);
            assert!(fed.records >= last, "count went down");
            last = fed.records;
            if let Some(at) = fed.cut_at {
                assert!(
                    cut.is_none() && at < chunk.len(),
                    "cut twice or outside the chunk"
                );
                cut = Some(offset + at);
            }
            offset += chunk.len();
        }
        assert_eq!(counter.finish(), counter.records());
        (counter.records(), counter.malformed(), cut)
    }

    /// Feeds whole and in chunks of 1..=7 bytes, asserting all agree.
    fn run(mode: &CountMode, body: &str, cut_after: Option<u64>) -> Outcome {
        let whole = chunked(mode, body.as_bytes(), body.len().max(1), cut_after);
        for size in 1..=7 {
            let got = chunked(mode, body.as_bytes(), size, cut_after);
            assert_eq!(got, whole, "chunk size {size}, body {body:?}");
        }
        whole
    }

    /// Checks `(pointer, body, count, malformed)` rows, in every chunking.
    fn check(rows: &[(&str, &str, u64, bool)]) {
        for &(pointer, body, records, malformed) in rows {
            let (got, bad, _) = run(&json(pointer), body, None);
            assert_eq!((got, bad), (records, malformed), "{pointer:?} on {body:?}");
        }
    }

    #[test]
    fn counts_only_the_array_at_the_pointer() {
        let example = r#"{"meta":{"items":[1,2]},"items":[{"a":[1,2,3]},{"b":"]["}],"next":"x"}"#;
        let nested = r#"{"data":{"rows":[1,2,3],"x":[9]},"rows":[7],"d":{"data":{"rows":[1]}}}"#;
        let escaped = r#"{"a/b":{"c~d":[1,2]},"a":{"b":[3]}}"#;
        check(&[
            ("/items", example, 2, false),
            ("/data/rows", nested, 3, false),
            ("/a~1b/c~0d", escaped, 2, false),
            ("/", r#"{"":[1, 2]}"#, 2, false),
            ("/a\"b", r#"{"a\"b":[1],"ab":[2]}"#, 1, false),
            ("/a\nb", r#"{"a\nb":[1,2]}"#, 2, false),
            ("/items", r#"{"\u0069tems":[1,2]}"#, 0, false),
            ("/tems", r#"{"\u0069tems":[1,2]}"#, 0, false),
            ("/items", r#"{"items":[1],"items":[2]}"#, 2, false),
        ]);
    }

    #[test]
    fn root_array_with_every_kind_of_value() {
        let all =
            r#" [1, "2", {"3":[3]}, [4,[5]], true, false, null, -1.5e+3, 0, 0.25E2, {}, [] ] "#;
        check(&[
            ("", all, 12, false),
            ("", "[]", 0, false),
            ("/a", r#"{"a":[ ]}"#, 0, false),
        ]);
    }

    #[test]
    fn strings_hide_brackets_commas_quotes_and_backslashes() {
        let tricky =
            r#"{"items":["a\"][", "\\", "\\\"", ",]}{[", "\u005d\"", "x\/y\n", "é]"], "z":"[\\"}"#;
        let keys = r#"{"it\"ems":[1],"items\\":[2],"x":"\"items\":[3]"}"#;
        check(&[("/items", tricky, 7, false), ("/items", keys, 0, false)]);
    }

    #[test]
    fn missing_target_counts_nothing() {
        check(&[
            ("/items", r#"{"other":[1],"sub":{"items":[2]}}"#, 0, false),
            ("/data/rows", r#"{"data":[{"rows":[1]}]}"#, 0, false),
            ("/a/b", r#"{"a":{"x":1},"c":{"b":[1]}}"#, 0, false),
            ("/items", "[1,2]", 0, false),
            ("/items", "42", 0, false),
            ("/items", "", 0, false),
            ("", " \r\n\t", 0, false),
        ]);
    }

    #[test]
    fn target_that_is_not_an_array_is_malformed() {
        check(&[
            ("/items", r#"{"items":{"a":[1]}}"#, 0, true),
            ("/items", r#"{"items":"[1]"}"#, 0, true),
            ("", r#"{"a":[1]}"#, 0, true),
            ("", "3", 0, true),
            ("/items", r#"{"items":[1,2],"items":null}"#, 2, true),
        ]);
    }

    #[test]
    fn malformed_json_is_reported() {
        let bad = concat!(
            r#"[1,]|[1 2]|[,1]|{"a":[1}|{"a" [1]}|[tru]|[nulll]|[01]|[1.]|[-]|[1e]|[.5]|[+1]|"#,
            r#"[-1 ]x|["\x"]|["\u12g4"]|[1]]|[1][2]|{,}|{"a":1,}|{"a"}|{1:2}|]|[}|"#,
            r#"[-01]|["open|[1, tr|[-|{"a":[1,2"#
        );
        for body in bad.split('|').chain(["[\"a\tb\"]", "[\"\u{1f}\"]"]) {
            assert!(run(&json(""), body, None).1, "{body:?} is malformed");
        }
        check(&[("", "[1, 2, @, 3]", 2, true)]);
    }

    #[test]
    fn nesting_beyond_max_depth_is_malformed() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        check(&[
            ("", &nested(MAX_DEPTH), 1, false),
            ("", &nested(MAX_DEPTH + 1), 1, true),
        ]);
        let mut counter = RecordCounter::new(json("/a")).unwrap();
        counter.feed("{\"a\":".repeat(100_000).as_bytes(), None);
        assert!(counter.malformed());
    }

    #[test]
    fn invalid_pointers_are_rejected() {
        let too_deep = format!("/{}", ["a"; MAX_DEPTH].join("/"));
        for pointer in ["items", "/a~2", "/a~", "~0", &too_deep] {
            assert!(RecordCounter::new(json(pointer)).is_err(), "{pointer:?}");
        }
        assert_eq!(
            parse_pointer("/~01/a~1b~0/0/").unwrap(),
            [&b"~1"[..], b"a/b~", b"0", b""]
        );
        assert!(parse_pointer("").unwrap().is_empty());
    }

    #[test]
    fn cut_points_at_the_start_of_the_first_record_over_budget() {
        let body = r#"{"items":[{"id":1},{"id":2},{"id":3}]}"#;
        let (at, mode) = (|needle: &str| body.find(needle), json("/items"));
        assert_eq!(run(&mode, body, Some(2)), (3, false, at(r#"{"id":3}"#)));
        assert_eq!(run(&mode, body, Some(1)), (3, false, at(r#"{"id":2}"#)));
        assert_eq!(run(&mode, body, Some(0)), (3, false, at(r#"{"id":1}"#)));
        assert_eq!(run(&mode, body, Some(3)), (3, false, None));
        assert_eq!(run(&mode, body, None), (3, false, None));
        assert_eq!(
            run(&json(""), "[ 1 ,\n  \"2\" , 3 ]", Some(1)),
            (3, false, Some(8))
        );
    }

    #[test]
    fn cut_is_reported_once_and_follows_a_shrinking_budget() {
        let mut counter = RecordCounter::new(json("")).unwrap();
        let mut feed = |chunk: &[u8], cut| {
            let fed = counter.feed(chunk, cut);
            (fed.records, fed.cut_at)
        };
        assert_eq!(feed(b"[1,2,", None), (2, None));
        assert_eq!(feed(b" 3, 4", Some(1)), (4, Some(1)));
        assert_eq!(feed(b",5]", Some(1)), (5, None));
        assert_eq!((counter.finish(), counter.malformed()), (5, false));
    }

    #[test]
    fn ndjson_counts_non_blank_lines() {
        let body = "{\"a\":1}\n\n  \n{\"b\":[1,\"\\n\"]}\r\n\r\n\"x\"\n42";
        let lines = |cut| run(&CountMode::Ndjson, body, cut);
        assert_eq!(lines(None), (4, false, None));
        assert_eq!(lines(Some(0)), (4, false, Some(0)));
        assert_eq!(lines(Some(1)), (4, false, body.find("{\"b\"")));
        assert_eq!(lines(Some(3)), (4, false, body.find("42")));
        assert_eq!(run(&CountMode::Ndjson, "", None), (0, false, None));
        assert_eq!(
            run(&CountMode::Ndjson, "\n \r\n\t\n", Some(0)),
            (0, false, None)
        );
        assert_eq!(run(&CountMode::Ndjson, "1\n2\n", Some(5)), (2, false, None));
    }

    #[test]
    fn ndjson_last_line_and_malformed_lines() {
        let mut counter = RecordCounter::new(CountMode::Ndjson).unwrap();
        assert_eq!(counter.feed(b"1\n{\"a\":", None).records, 2);
        assert_eq!(counter.feed(b" [2]}", None).records, 2);
        assert_eq!((counter.finish(), counter.malformed()), (2, false));
        for body in
            "{\"a\":1}{\"b\":2}\n|{\"a\":\n1}\n|nope\n|[1,2\n3]\n|1\n{\"a\"|\"a\tb\"".split('|')
        {
            assert!(
                run(&CountMode::Ndjson, body, None).1,
                "{body:?} is malformed"
            );
        }
    }

    #[test]
    fn ndjson_cut_on_an_indented_line() {
        let body = b"1\n  2\n";
        assert_eq!(
            chunked(&CountMode::Ndjson, body, body.len(), Some(1)),
            (2, false, Some(2))
        );
        // The indentation already went out with the first chunk: cut at once.
        let mut counter = RecordCounter::new(CountMode::Ndjson).unwrap();
        assert_eq!(counter.feed(b"1\n  ", Some(1)).cut_at, None);
        assert_eq!(counter.feed(b"2\n", Some(1)).cut_at, Some(0));
    }

    /// A deterministic LCG, so the property test needs no dependency.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as usize % n
        }

        fn pick(&mut self, from: &[&str]) -> String {
            from[self.below(from.len())].to_string()
        }

        fn string(&mut self) -> String {
            let pieces = [
                "a", "items", r#"\""#, r"\\", "[", "]", "{", "}", ",", ":", r"\u005D", "é",
            ];
            let text: String = (0..self.below(4)).map(|_| self.pick(&pieces)).collect();
            format!("\"{text}\"")
        }

        fn list(&mut self, item: fn(&mut Self, usize) -> String, depth: usize) -> String {
            let items: Vec<String> = (0..self.below(4)).map(|_| item(self, depth)).collect();
            items.join(",")
        }

        /// A random JSON value, with arrays and `"items"` keys inside to ignore.
        fn value(&mut self, depth: usize) -> String {
            let ws = self.pick(&["", " ", "\n\t"]);
            let inner = match self.below(if depth == 0 { 3 } else { 5 }) {
                0 => self.pick(&["0", "-1", "3.25", "1e9", "-0.5E-3", "true", "false", "null"]),
                1 | 2 => self.string(),
                3 => format!("[{}]", self.list(|r, d| r.value(d), depth - 1)),
                _ => {
                    let member = |r: &mut Self, d| format!("{}:{}", r.string(), r.value(d));
                    format!("{{{}}}", self.list(member, depth - 1))
                }
            };
            format!("{ws}{inner}{ws}")
        }
    }

    #[test]
    fn random_arrays_count_and_cut_exactly() {
        let mut rng = Lcg(7);
        for _ in 0..150 {
            let mut body = format!("{{\"noise\":{},\"items\":[", rng.value(3));
            let (n, mut starts) = (rng.below(6), Vec::new());
            for i in 0..n {
                body.push_str(if i == 0 { " " } else { " , " });
                starts.push(body.len());
                body.push_str(rng.value(3).trim_start());
            }
            body.push_str(&format!("],\"tail\":{}}}", rng.value(3)));
            let mode = json("/items");
            let k = rng.below(n + 1);
            assert_eq!(run(&mode, &body, None), (n as u64, false, None), "{body}");
            assert_eq!(
                run(&mode, &body, Some(k as u64)).2,
                starts.get(k).copied(),
                "{body}"
            );
        }
    }
}
