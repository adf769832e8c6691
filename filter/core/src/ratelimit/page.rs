//! Page-size limits: one request must not ask for a whole table.
//!
//! The parameter must appear at most once, spelled exactly, with a plain
//! decimal value no larger than the maximum. Every odd form an upstream might
//! read differently (`limit=1&limit=100000`, `LIMIT=`, `1e5`, `-1`, `+5`,
//! `0x10`, `%31%30`) is refused with 400 rather than guessed at.

use super::rule::PageSize;
use crate::input::percent_decode;

/// Why a page size was refused; the message is safe to return to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSizeError(pub String);

/// Checks the query string of `path` against `page`.
pub fn check(path: &str, page: &PageSize) -> Result<(), PageSizeError> {
    let Some((_, query)) = path.split_once('?') else {
        return Ok(());
    };
    let mut seen = false;
    for pair in query.split(['&', ';']).filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(raw_name, true).unwrap_or_else(|| raw_name.to_owned());
        // `limit[]`, `limit[0]`, `limit.max`: frameworks read these as the
        // parameter too (e.g. Express's qs), so they are refused like it.
        let base = name.split(['[', '.']).next().unwrap_or_default().trim();
        if !base.eq_ignore_ascii_case(&page.param) {
            continue;
        }
        if name != page.param || raw_name != page.param {
            return Err(PageSizeError(format!(
                "write the page size parameter exactly as `{}`",
                page.param
            )));
        }
        if seen {
            return Err(PageSizeError(format!(
                "`{}` may appear only once",
                page.param
            )));
        }
        seen = true;
        let valid = !raw_value.is_empty()
            && raw_value.len() <= 10
            && raw_value.bytes().all(|b| b.is_ascii_digit());
        let value = raw_value.parse::<u64>().ok().filter(|_| valid);
        match value {
            Some(v) if v <= page.max => {}
            Some(v) => {
                return Err(PageSizeError(format!(
                    "`{}={v}` is over the maximum page size {}",
                    page.param, page.max
                )))
            }
            None => {
                return Err(PageSizeError(format!(
                    "`{}` must be a whole number from 0 to {}",
                    page.param, page.max
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> PageSize {
        PageSize {
            param: "limit".into(),
            max: 500,
        }
    }

    #[test]
    fn plain_values_within_the_maximum_pass() {
        for p in [
            "/c",
            "/c?",
            "/c?limit=500",
            "/c?limit=0",
            "/c?offset=9&limit=10",
            "/c?other=100000",
        ] {
            assert_eq!(check(p, &page()), Ok(()), "{p}");
        }
    }

    #[test]
    fn odd_forms_are_refused() {
        for p in [
            "/c?limit=501",
            "/c?limit=100000",
            "/c?limit=1&limit=100000",
            "/c?LIMIT=10",
            "/c?Limit=10",
            "/c?limit=",
            "/c?limit",
            "/c?limit=1e5",
            "/c?limit=-1",
            "/c?limit=+5",
            "/c?limit=0x10",
            "/c?limit=%31%30",
            "/c?l%69mit=10",
            "/c?limit=10;limit=100000",
            "/c?limit=99999999999999999999",
            "/c?limit=5%00",
            "/c?limit[]=100000",
            "/c?limit[0]=100000",
            "/c?limit.x=1",
        ] {
            assert!(check(p, &page()).is_err(), "{p}");
        }
    }
}
