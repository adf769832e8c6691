//! Privileged access under the reference policy, through real Envoy:
//! business hours (zero tolerance outside them), break glass (allowed, and
//! always recorded), and the step-up challenge a client sees.
//!
//! Business hours depend on the wall clock Envoy gives the filter, so each
//! listener sets them in `policy.data` to "always" or "never".

use palisade_tests::demo_config;
use palisade_tests::envoy::{Envoy, Listener};
use palisade_tests::http;
use palisade_tests::upstream::Upstream;
use serde_json::{json, Value};

fn with_hours(days: Value) -> Value {
    let mut config = demo_config();
    config["policy"]["data"] = json!({"customer_data": {"business_hours": {
        "utc_offset_hours": 0, "days": days, "from_hour": 0, "to_hour": 24
    }}});
    // Allows are not sampled in: only what must be recorded is.
    config["audit"] = json!({"sample_allows": 0});
    config
}

fn erase(port: u16, up: &Upstream, claims: Value) -> (http::Response, bool) {
    let auth = palisade_tests::bearer(claims);
    let before = up.hits();
    let r = http::request(
        port,
        "DELETE",
        "/api/v1/customers/42",
        &[("authorization", auth.as_bytes())],
    );
    (r, up.hits() > before)
}

#[test]
fn privileged_actions_follow_business_hours_and_break_glass_is_recorded() {
    let up = Upstream::start();
    let envoy = Envoy::start(
        up.port,
        &[
            Listener::new("open", with_hours(json!([0, 1, 2, 3, 4, 5, 6]))),
            Listener::new("closed", with_hours(json!([]))),
        ],
    );
    let fresh =
        json!({"sub": "root", "roles": ["admin"], "amr": ["pwd", "mfa"], "auth_time": "now-30"});

    // In hours, with fresh MFA: the erasure goes through.
    let (r, reached) = erase(envoy.port("open"), &up, fresh.clone());
    assert_eq!((r.status, reached), (200, true), "{}", r.body);
    assert_eq!(
        up.app.last_request()["headers"]["x-palisade-break-glass"],
        Value::Null
    );

    // Out of hours: denied, whatever the authentication.
    let (r, reached) = erase(envoy.port("closed"), &up, fresh.clone());
    assert_eq!((r.status, reached), (403, false), "{}", r.body);
    assert_eq!(r.json()["reason"], "policy_denied");

    // Without fresh MFA: the step-up challenge, in or out of hours.
    for listener in ["open", "closed"] {
        let stale =
            json!({"sub": "root", "roles": ["admin"], "amr": ["mfa"], "auth_time": "now-900"});
        let (r, reached) = erase(envoy.port(listener), &up, stale);
        assert_eq!((r.status, reached), (401, false), "{listener}: {}", r.body);
        assert_eq!(r.json()["reason"], "step_up_required");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\", acr_values=\"mfa\", max_age=\"300\"")
        );
    }

    // Break glass out of hours: through, named to the upstream, and recorded
    // although allows are not sampled.
    let mut glass = fresh.clone();
    glass["break_glass"] = json!({"incident": "INC-4711"});
    let (r, reached) = erase(envoy.port("closed"), &up, glass.clone());
    assert_eq!((r.status, reached), (200, true), "{}", r.body);
    assert_eq!(
        up.app.last_request()["headers"]["x-palisade-break-glass"],
        "INC-4711"
    );
    let id = up.app.last_request()["headers"]["x-palisade-decision-id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = envoy
        .wait_for_decisions(&[&id])
        .remove(0)
        .expect("a break-glass access is always recorded");
    assert_eq!(record["category"], "break_glass");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["subject"], "root");

    // A break-glass claim without an incident opens nothing.
    glass["break_glass"] = json!({"incident": "urgent"});
    let (r, reached) = erase(envoy.port("closed"), &up, glass);
    assert_eq!((r.status, reached), (403, false), "{}", r.body);

    // The plain in-hours allow was not recorded (sampled out): the break-glass
    // record above is there because the policy marked it, not by chance.
    let allows = envoy
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "decision" && r["decision"] == "allow")
        .count();
    assert_eq!(allows, 1, "only the break-glass allow is recorded");
}
