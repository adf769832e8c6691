//! `input::build` on any request: never panics, keeps OPA-Envoy's shape,
//! carries every header, and is a JSON document that round-trips (audit
//! records store it as JSON). The reference policy decides the same on it
//! on regorus's RVM (what the filter runs) and on its interpreter.
//!
//! Input: the request text format of `palisade_fuzz` (headers, `@token`,
//! `@id`, `@source`, `@usage`, ...). A `@token` is verified first, so the
//! input carries a real `input.token`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_core::config::Config;
use palisade_core::input;
use palisade_core::token::extract::find_token;
use palisade_core::token::verify::verify;
use palisade_fuzz::{demo_config, minted_tokens, parse_request, Minted, NOW};
use regorus::Value;
use std::collections::BTreeMap;

thread_local! {
    static FIXTURES: (Config, Vec<Minted>) = (demo_config(), minted_tokens());
}

fuzz_target!(|data: &[u8]| {
    FIXTURES.with(|(config, tokens)| {
        let parsed = parse_request(data, tokens);
        let request = &parsed.request;
        let token = match find_token(&request.headers, config.token_sources()) {
            Ok(Some(found)) => verify(found.token, found.header, &config.providers, NOW).ok(),
            _ => None,
        };
        let v = input::build(request, token.as_ref(), parsed.usage.clone());
        if palisade_fuzz::debug() {
            eprintln!("{}", v.to_json_str().unwrap_or_default());
        }
        assert_eq!(
            v,
            input::build(request, token.as_ref(), parsed.usage.clone())
        );
        let vm = config.policy.fixed().unwrap().evaluate(v.clone());
        let interpreted = config
            .policy
            .fixed()
            .unwrap()
            .evaluate_interpreted(v.clone());
        let timed_out = |r: &Result<Value, String>| {
            r.as_ref()
                .is_err_and(|e| palisade_core::policy::is_time_limit(e))
        };
        match (&vm, &interpreted) {
            // A busy fuzzing machine can stop either at the time limit: a
            // verdict on the host's load, not on the policy's meaning.
            _ if timed_out(&vm) || timed_out(&interpreted) => {}
            (Ok(a), Ok(b)) => assert_eq!(a, b, "the RVM and the interpreter disagree"),
            (Err(_), Err(_)) => {}
            _ => panic!("the RVM and the interpreter disagree: {vm:?} vs {interpreted:?}"),
        }

        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let first = |name: &str| request.headers.first(name).map(lossy).unwrap_or_default();
        let http = &v["attributes"]["request"]["http"];
        for (field, header) in [
            ("method", ":method"),
            ("path", ":path"),
            ("host", ":authority"),
            ("scheme", ":scheme"),
        ] {
            assert_eq!(http[field], Value::from(first(header)), "{field}");
        }
        let id = request
            .id
            .clone()
            .or_else(|| request.headers.first("x-request-id").map(lossy));
        assert_eq!(http["id"], id.map_or(Value::Undefined, Value::from));

        // Every header is there, repeated ones joined with `,` in order.
        let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in request.headers.iter() {
            expected
                .entry(name.to_owned())
                .or_default()
                .push(lossy(value));
        }
        let headers = http["headers"].as_object().expect("headers is an object");
        assert_eq!(headers.len(), expected.len());
        for (name, values) in &expected {
            assert_eq!(
                headers.get(&Value::from(name.as_str())),
                Some(&Value::from(values.join(",")))
            );
        }

        // parsed_path: one decoded string per segment of the path.
        let path = first(":path");
        let path_only = path.split('?').next().unwrap_or_default();
        let segments = v["parsed_path"]
            .as_array()
            .expect("parsed_path is an array");
        assert_eq!(
            segments.len(),
            path_only.trim_start_matches('/').split('/').count()
        );
        assert!(segments.iter().all(|s| s.as_string().is_ok()));
        for (segment, raw) in segments
            .iter()
            .zip(path_only.trim_start_matches('/').split('/'))
        {
            if !raw.contains('%') {
                assert_eq!(segment, &Value::from(raw));
            }
        }
        // parsed_query: lists of strings, at most one value per `&` pair.
        let query = v["parsed_query"]
            .as_object()
            .expect("parsed_query is an object");
        let pairs = path
            .split_once('?')
            .map_or(0, |(_, q)| q.split('&').filter(|p| !p.is_empty()).count());
        let mut values = 0;
        for (k, list) in query.iter() {
            assert!(k.as_string().is_ok());
            let list = list.as_array().expect("a query value is a list");
            assert!(!list.is_empty() && list.iter().all(|s| s.as_string().is_ok()));
            values += list.len();
        }
        assert!(values <= pairs);

        assert_eq!(
            v["token"],
            token
                .as_ref()
                .map_or(Value::Undefined, |t| t.document.clone())
        );
        assert_eq!(v["usage"], parsed.usage.unwrap_or(Value::Undefined));
        assert_eq!(v["version"]["ext_authz"], Value::from("v3"));

        // The document is JSON and reads back as itself (`input.usage` is
        // left out: here it is fuzzer-made JSON, in the filter the limiter's).
        let plain = input::build(request, token.as_ref(), None);
        let json = plain.to_json_str().expect("the input serializes");
        assert_eq!(Value::from_json_str(&json).expect("and parses"), plain);
    });
});
