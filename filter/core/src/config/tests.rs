use super::*;
use crate::testutil::*;
use serde_json::json;

fn base() -> serde_json::Value {
    config_json(json!({}), ALLOW_ALL)
}

#[test]
fn loads_a_valid_config_with_defaults() {
    let c = config(json!({}), ALLOW_ALL);
    assert_eq!(c.mode, Mode::Enforce);
    assert_eq!(c.providers[0].leeway_seconds, 30);
    assert_eq!(c.providers[0].max_lifetime_seconds, 86_400);
    assert_eq!(c.providers[0].sources[0].name, "authorization");
    assert_eq!(c.token_cache_capacity, DEFAULT_CAPACITY);
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let mut j = base();
    j["providers"][0]["audience"] = json!("typo");
    let e = load_err(&j);
    assert!(
        e.starts_with("providers[0].audience: unknown field `audience`"),
        "{e}"
    );

    let mut j = base();
    j["polcy"] = json!({});
    assert!(load_err(&j).contains("unknown field `polcy`"));

    let mut j = base();
    j["policy"]["modules_"] = json!({});
    assert!(load_err(&j).starts_with("policy.modules_: unknown field"));

    let mut j = base();
    j["providers"][0]["from_headers"] = json!([{"name": "authorization", "prefix": "Bearer "}]);
    assert!(load_err(&j).starts_with("providers[0].from_headers[0].prefix: unknown field"));
}

#[test]
fn bad_mode_is_refused() {
    let mut j = base();
    j["mode"] = json!("audit");
    let e = load_err(&j);
    assert!(e.starts_with("mode: unknown variant `audit`"), "{e}");
}

#[test]
fn unknown_algorithm_is_refused() {
    for alg in ["none", "RS257", "rs256", "ES512"] {
        let e = load_err(&config_json(
            json!({"algorithms": ["RS256", alg]}),
            ALLOW_ALL,
        ));
        assert!(
            e.starts_with("providers[0].algorithms[1]: unknown algorithm"),
            "{alg}: {e}"
        );
    }
}

#[test]
fn weak_rsa_key_is_refused() {
    let jwks: serde_json::Value = serde_json::from_str(WEAK_JWKS).unwrap();
    let e = load_err(&config_json(json!({"jwks": jwks}), ALLOW_ALL));
    assert!(
        e.starts_with("providers[0].jwks.keys[0]: RSA key has 1024 bits"),
        "{e}"
    );
}

#[test]
fn jwks_without_usable_key_is_refused() {
    let e = load_err(&config_json(json!({"jwks": {"keys": []}}), ALLOW_ALL));
    assert!(
        e.starts_with("providers[0].jwks.keys: no usable key"),
        "{e}"
    );
}

#[test]
fn oct_key_without_hs_is_refused() {
    let jwks =
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}]});
    let e = load_err(&config_json(json!({"jwks": jwks}), ALLOW_ALL));
    assert!(e.contains("no HS algorithm is allowed"), "{e}");
}

#[test]
fn missing_or_empty_required_fields_are_refused() {
    for (field, value, msg) in [
        (
            "audiences",
            json!([]),
            "providers[0].audiences: at least one audience",
        ),
        (
            "audiences",
            json!([""]),
            "providers[0].audiences[0]: must not be empty",
        ),
        (
            "issuer",
            json!(""),
            "providers[0].issuer: must not be empty",
        ),
        (
            "algorithms",
            json!([]),
            "providers[0].algorithms: at least one",
        ),
        (
            "leeway_seconds",
            json!(301),
            "providers[0].leeway_seconds: 301 is over",
        ),
        (
            "leeway_seconds",
            json!(-1),
            "providers[0].leeway_seconds: invalid value",
        ),
        (
            "max_lifetime_seconds",
            json!(0),
            "providers[0].max_lifetime_seconds: must be positive",
        ),
        (
            "from_headers",
            json!([]),
            "providers[0].from_headers: at least one",
        ),
        (
            "from_headers",
            json!([{"name": "bad header"}]),
            "providers[0].from_headers[0].name",
        ),
    ] {
        let e = load_err(&config_json(json!({ field: value }), ALLOW_ALL));
        assert!(e.starts_with(msg), "{field}={value}: {e}");
    }
    let mut j = base();
    j["providers"][0].as_object_mut().unwrap().remove("issuer");
    assert!(load_err(&j).contains("missing field `issuer`"));
}

#[test]
fn duplicate_provider_names_are_refused() {
    let mut j = base();
    let p = j["providers"][0].clone();
    j["providers"].as_array_mut().unwrap().push(p);
    assert!(load_err(&j).starts_with("providers[1].name: duplicate provider name `test`"));
}

#[test]
fn unparsable_rego_is_refused_with_the_module_name() {
    let e = load_err(&config_json(json!({}), "package envoy.authz\nallow if {"));
    assert!(e.starts_with("policy.modules[\"authz.rego\"]"), "{e}");
}

#[test]
fn invalid_json_is_refused() {
    let e = Config::from_json(b"{\"mode\": ").unwrap_err().0;
    assert!(e.contains("EOF"), "{e}");
    let e = Config::from_json(b"[]").unwrap_err().0;
    assert!(e.starts_with("config: invalid"), "{e}");
}

#[test]
fn token_cache_size_is_bounded() {
    let mut j = base();
    j["token_cache"] = json!({"max_entries": 10});
    assert_eq!(
        Config::from_json(j.to_string().as_bytes())
            .unwrap()
            .token_cache_capacity,
        10
    );
    j["token_cache"] = json!({"max_entries": MAX_TOKEN_CACHE + 1});
    assert!(load_err(&j).starts_with("token_cache.max_entries"));
}

#[test]
fn a_config_without_providers_is_valid() {
    let j = json!({"mode": "dry_run", "policy": {"modules": {"a.rego": ALLOW_ALL}, "decision": "data.envoy.authz.allow"}});
    let c = Config::from_json(j.to_string().as_bytes()).unwrap();
    assert!(c.providers.is_empty());
    assert_eq!(c.mode, Mode::DryRun);
}

#[test]
fn one_header_read_two_ways_is_refused() {
    let mut j = base();
    let mut second = j["providers"][0].clone();
    second["name"] = json!("second");
    second["from_headers"] = json!([{"name": "Authorization", "value_prefix": "DPoP "}]);
    j["providers"].as_array_mut().unwrap().push(second);
    let e = load_err(&j);
    assert!(
        e.starts_with("providers[1].from_headers[0]: header `authorization` is already read"),
        "{e}"
    );

    let dup = config_json(
        json!({"from_headers": [{"name": "x-jwt", "value_prefix": ""}, {"name": "x-jwt", "value_prefix": "Bearer "}]}),
        ALLOW_ALL,
    );
    assert!(load_err(&dup).starts_with("providers[0].from_headers[1]"));
}

#[test]
fn same_header_same_prefix_in_two_providers_is_fine() {
    let mut j = base();
    let mut second = j["providers"][0].clone();
    second["name"] = json!("second");
    j["providers"].as_array_mut().unwrap().push(second);
    assert!(Config::from_json(j.to_string().as_bytes()).is_ok());
}

#[test]
fn multi_word_scheme_is_refused() {
    let e = load_err(&config_json(
        json!({"from_headers": [{"name": "authorization", "value_prefix": "Bearer x "}]}),
        ALLOW_ALL,
    ));
    assert!(
        e.starts_with("providers[0].from_headers[0].value_prefix"),
        "{e}"
    );
}

#[test]
fn rate_limits_load_strictly() {
    let mut j = base();
    j["rate_limits"] = json!([{
        "name": "bulk",
        "match": {"path_prefix": "/api/v1/customers", "methods": ["GET"]},
        "requests": {"limit": 60, "period_seconds": 60, "burst": 10},
        "max_page_size": {"param": "limit", "max": 500},
        "suspend_seconds": 900
    }]);
    let c = Config::from_json(j.to_string().as_bytes()).unwrap();
    assert_eq!(c.rate_limits.len(), 1);
    assert_eq!(c.rate_limits[0].key_claim, "sub");

    let mut typo = j.clone();
    typo["rate_limits"][0]["requests"]["limits"] = json!(5);
    assert!(load_err(&typo).starts_with("rate_limits[0].requests.limits: unknown field"));

    let mut dup = j.clone();
    let again = dup["rate_limits"][0].clone();
    dup["rate_limits"].as_array_mut().unwrap().push(again);
    assert!(load_err(&dup).starts_with("rate_limits[1].name: duplicate"));
}

#[test]
fn record_budgets_load() {
    let mut j = base();
    j["rate_limits"] = json!([{
        "name": "bulk",
        "match": {"path_prefix": "/api/v1/customers"},
        "records": {"limit": 10000, "period_seconds": 300, "count": {"json_array": "/items"}}
    }]);
    assert!(Config::from_json(j.to_string().as_bytes()).is_ok());
    j["rate_limits"][0]["records"]["count"] = json!({"json_array": "items"});
    assert!(load_err(&j).starts_with("rate_limits[0].records.count.json_array"));
    j["rate_limits"][0]["records"]["count"] = json!({"xml": "/items"});
    assert!(load_err(&j).contains("unknown variant `xml`"));
}

#[test]
fn the_evaluation_time_limit_is_bounded_and_named() {
    let c = config(json!({}), ALLOW_ALL);
    assert_eq!(
        c.policy.fixed().unwrap().time_limit,
        crate::policy::DEFAULT_TIME_LIMIT
    );
    let mut j = base();
    j["policy"]["max_eval_ms"] = json!(5);
    let c = Config::from_json(j.to_string().as_bytes()).map_err(|e| e.0);
    assert_eq!(
        c.map(|c| c.policy.fixed().unwrap().time_limit),
        Ok(std::time::Duration::from_millis(5))
    );
    for bad in [0, 1001] {
        let mut j = base();
        j["policy"]["max_eval_ms"] = json!(bad);
        assert!(load_err(&j).starts_with("policy.max_eval_ms: "), "{bad}");
    }
}

#[test]
fn the_policy_engine_is_the_interpreter_or_the_vm_and_named_when_wrong() {
    use crate::policy::EngineInUse;
    assert_eq!(
        config(json!({}), ALLOW_ALL)
            .policy
            .fixed()
            .unwrap()
            .engine(),
        EngineInUse::Interpreter
    );
    let mut j = base();
    j["policy"]["engine"] = json!("vm");
    let c = Config::from_json(j.to_string().as_bytes()).map_err(|e| e.0);
    assert_eq!(
        c.map(|c| c.policy.fixed().unwrap().engine()),
        Ok(EngineInUse::Vm)
    );
    for bad in ["auto", "fast"] {
        j["policy"]["engine"] = json!(bad);
        assert_eq!(
            load_err(&j),
            format!("policy.engine: `{bad}` is not one of `interpreter`, `vm`")
        );
    }
}

#[test]
fn request_bodies_are_bounded_and_warn_about_the_envoy_setting() {
    let mut j = base();
    j["request_body"] = json!({"max_bytes": 4096});
    let c = Config::from_json(j.to_string().as_bytes()).map_err(|e| e.0);
    let c = c.unwrap();
    assert_eq!(c.request_body_max, Some(4096));
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("allow_on_headers_stop_iteration")));
    assert_eq!(config(json!({}), ALLOW_ALL).request_body_max, None);
    for bad in [json!({"max_bytes": 0}), json!({"max_bytes": 2_000_000})] {
        let mut j = base();
        j["request_body"] = bad;
        assert!(load_err(&j).starts_with("request_body.max_bytes: "));
    }
    let mut j = base();
    j["request_body"] = json!({"max_bytes": 10, "bytes": 1});
    assert!(load_err(&j).starts_with("request_body.bytes: unknown field"));
}

#[test]
fn anything_after_the_config_object_is_refused() {
    let j = base().to_string();
    for tail in [" {", "x", "{}", "]"] {
        let e = Config::from_json(format!("{j}{tail}").as_bytes())
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(
            e.starts_with("config: after the JSON object: "),
            "{tail}: {e}"
        );
    }
    assert!(
        Config::from_json(format!("{j}\n  ").as_bytes()).is_ok(),
        "whitespace is fine"
    );
}

/// OPA's Envoy primer writes `default allow = false` and `allow { … }`.
const V0_POLICY: &str = "package envoy.authz\ndefault allow = false\nallow { input.attributes.request.http.method == \"GET\" }\n";

#[test]
fn v0_syntax_loads_when_asked_for_and_only_then() {
    let mut j = base();
    j["policy"] = json!({"modules": {"authz.rego": V0_POLICY}});
    let e = load_err(&j);
    assert!(e.starts_with("policy.modules[\"authz.rego\"]: "), "{e}");

    j["policy"]["rego_version"] = json!("v0");
    let c = Config::from_json(j.to_string().as_bytes()).map_err(|e| e.0);
    assert_eq!(
        c.map(|c| c.policy.decision().to_owned()),
        Ok("data.envoy.authz.allow".into()),
        "the default decision is OPA-Envoy's"
    );

    j["policy"]["rego_version"] = json!("v2");
    assert_eq!(
        load_err(&j),
        "policy.rego_version: `v2` is not one of `v0`, `v1`"
    );
}

#[test]
fn the_syntax_is_chosen_per_module() {
    let v1 = "package envoy.authz\nimport data.roles\nallow if roles.ok\n";
    let v0 = "package roles\nok { true }\n";
    let mut j = base();
    j["policy"] = json!({
        "modules": {"authz.rego": v1, "roles.rego": v0},
        "module_rego_versions": {"roles.rego": "v0"},
    });
    assert!(
        Config::from_json(j.to_string().as_bytes()).is_ok(),
        "{}",
        load_err(&j)
    );

    // Without the override, the v0 module is read as v1, and refused.
    j["policy"]["module_rego_versions"] = json!({});
    assert!(load_err(&j).starts_with("policy.modules[\"roles.rego\"]: "));

    j["policy"]["module_rego_versions"] = json!({"role.rego": "v0"});
    assert_eq!(
        load_err(&j),
        "policy.module_rego_versions[\"role.rego\"]: names no module of `policy.modules`"
    );
}

#[test]
fn the_decision_may_be_given_as_an_opa_envoy_path() {
    let mut j = base();
    j["policy"]["decision"] = json!("envoy/authz/allow");
    let c = Config::from_json(j.to_string().as_bytes()).map_err(|e| e.0);
    assert_eq!(
        c.map(|c| c.policy.decision().to_owned()),
        Ok("data.envoy.authz.allow".into())
    );
}

mod bundles {
    use super::*;
    use crate::algorithm::Alg;
    use crate::bundle::{build, Signer};
    use base64::Engine as _;

    const KEY: &[u8] = include_bytes!("../../../../envoy/test-keys/rs256.key.pem");
    const PUBLIC: &str = include_str!("../../../../envoy/test-keys/rs256.pub.pem");

    fn bundle(signed: bool) -> String {
        let files: [(&str, &[u8]); 2] = [
            ("/.manifest", br#"{"revision": "7", "rego_version": 0}"#),
            ("/envoy/authz/policy.rego", b"package envoy.authz\ndefault allow = false\nallow { input.parsed_path[0] == \"health\" }\n"),
        ];
        let signer = Signer::from_pem(Alg::RS256, KEY, None, None).unwrap();
        let bytes = build(&files, signed.then_some(&signer)).unwrap();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn with_bundle(b: serde_json::Value) -> serde_json::Value {
        let mut j = base();
        j["policy"] = json!({ "bundle": b });
        j
    }

    #[test]
    fn an_inline_bundle_compiles_with_its_manifests_syntax() {
        let j = with_bundle(json!({"inline": bundle(false)}));
        let c = Config::from_json(j.to_string().as_bytes()).map_err(|e| e.0);
        assert_eq!(
            c.map(|c| c.policy.decision().to_owned()),
            Ok("data.envoy.authz.allow".into())
        );

        let j = with_bundle(json!({"inline": bundle(true), "signing": {"key": PUBLIC}}));
        assert!(
            Config::from_json(j.to_string().as_bytes()).is_ok(),
            "{}",
            load_err(&j)
        );
    }

    #[test]
    fn a_signing_key_refuses_an_unsigned_bundle_at_load() {
        let j = with_bundle(json!({"inline": bundle(false), "signing": {"key": PUBLIC}}));
        let e = load_err(&j);
        assert!(
            e.starts_with("policy.bundle.inline: ") && e.contains("not signed"),
            "{e}"
        );
    }

    #[test]
    fn bundle_sources_are_exclusive_and_named_when_wrong() {
        let e = load_err(&with_bundle(json!({})));
        assert_eq!(
            e,
            "policy.bundle: give exactly one of `file`, `inline`, `remote`"
        );
        let e = load_err(&with_bundle(
            json!({"inline": bundle(false), "remote": {"cluster": "b", "path": "/b"}}),
        ));
        assert_eq!(
            e,
            "policy.bundle: give exactly one of `file`, `inline`, `remote`"
        );

        let e = load_err(&with_bundle(json!({"file": "/etc/opa/bundle.tar.gz"})));
        assert!(e.starts_with("policy.bundle.file: `/etc/opa/bundle.tar.gz`: this host gives the filter no file access"), "{e}");

        let e = load_err(&with_bundle(json!({"inline": "%%%"})));
        assert!(e.starts_with("policy.bundle.inline: not base64"), "{e}");

        let mut j = with_bundle(json!({"inline": bundle(false)}));
        j["policy"]["modules"] = json!({"a.rego": ALLOW_ALL});
        assert!(load_err(&j)
            .starts_with("policy.bundle: give `modules` (and `data`) or `bundle`, not both"));

        let e = load_err(&with_bundle(
            json!({"inline": bundle(false), "signing": {"key": "not a key"}}),
        ));
        assert!(e.starts_with("policy.bundle.signing: "), "{e}");

        let e = load_err(&with_bundle(
            json!({"remote": {"cluster": "b", "path": "/b", "poll_seconds": 0}}),
        ));
        assert_eq!(
            e,
            "policy.bundle.remote.poll_seconds: 0 is not between 1 and 3600"
        );
        let e = load_err(&with_bundle(
            json!({"remote": {"cluster": "b", "path": "b"}}),
        ));
        assert_eq!(e, "policy.bundle.remote.path: must start with /");
        let e = load_err(&with_bundle(
            json!({"remote": {"cluster": "b", "path": "/b", "polling": 5}}),
        ));
        assert!(
            e.starts_with("policy.bundle.remote.polling: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn a_remote_bundle_holds_no_policy_until_fetched() {
        let j = with_bundle(
            json!({"remote": {"cluster": "bundles", "path": "/b.tar.gz"}, "signing": {"key": PUBLIC}}),
        );
        let c = Config::from_json(j.to_string().as_bytes()).unwrap();
        assert!(c.policy.fixed().is_none());
        assert!(
            c.policy.describe().contains("cluster `bundles`"),
            "{}",
            c.policy.describe()
        );
        // Deciding without a policy fails closed.
        let limits = crate::ratelimit::limits::Limits::new(
            &c.rate_limits,
            std::rc::Rc::new(crate::ratelimit::store::MemoryStore::default()),
        );
        let mut cache = crate::token::cache::TokenCache::new(4);
        let e = c.decide(
            &crate::request::Request::default(),
            std::time::Duration::from_secs(1),
            &mut cache,
            &limits,
        );
        assert_eq!(e.reason(), "policy_unavailable");
        assert_eq!(e.policy_revision, None);
    }
}
