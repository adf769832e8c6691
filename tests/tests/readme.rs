//! The README is the newcomer's truth: what it claims must match the build.

use palisade_core::policy::builtins;

fn readme() -> String {
    std::fs::read_to_string(palisade_tests::repo().join("README.md")).unwrap()
}

#[test]
fn readme_lists_exactly_the_builtins_of_this_build() {
    let text = readme();
    let start = text
        .find("<!-- builtins:start -->")
        .expect("builtins start marker");
    let end = text
        .find("<!-- builtins:end -->")
        .expect("builtins end marker");
    let mut listed: Vec<&str> = text[start..end].split('`').skip(1).step_by(2).collect();
    listed.sort_unstable();
    let mut built: Vec<&str> = builtins::available()
        .into_iter()
        .filter(|b| !b.starts_with("__"))
        .collect();
    built.sort_unstable();
    assert_eq!(listed, built, "update the README's builtin list");
}

#[test]
fn readme_names_every_token_reason_code() {
    let text = readme();
    for code in [
        "token_too_large",
        "token_multiple",
        "token_malformed",
        "token_unsupported",
        "token_alg_not_allowed",
        "token_crit",
        "token_unknown_key",
        "token_key_mismatch",
        "token_bad_signature",
        "token_duplicate_name",
        "token_bad_issuer",
        "token_bad_audience",
        "token_missing_exp",
        "token_expired",
        "token_not_yet_valid",
        "token_issued_in_future",
        "token_lifetime_too_long",
        "token_claim_type",
        "policy_denied",
        "policy_undefined",
        "policy_error",
        "policy_invalid_result",
    ] {
        assert!(
            text.contains(&format!("`{code}`")),
            "README does not document {code}"
        );
    }
}
