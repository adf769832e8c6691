# Unit tests for customer_data.rego: every role, allowed and denied.
# Each `test_*` rule must evaluate to true.
package envoy.authz_test

import rego.v1

import data.envoy.authz

req(method, path, payload) := {
	"attributes": {"request": {"http": {"method": method, "path": path}}},
	"parsed_path": split(trim_prefix(path, "/"), "/"),
	"token": {"provider": "corp", "payload": payload},
}

anon(method, path) := {
	"attributes": {"request": {"http": {"method": method, "path": path}}},
	"parsed_path": split(trim_prefix(path, "/"), "/"),
}

alice := {"sub": "alice", "roles": ["customer"], "customer_id": "42"}

agent := {"sub": "sam", "roles": ["support"], "ticket": {"id": "T-1001", "customer_id": "42"}}

exporter := {"sub": "data-export", "scope": "customers:export"}

admin := {"sub": "root", "roles": ["admin", "customer"], "customer_id": "1"}

test_health_is_public if authz.allow with input as anon("GET", "/health")

test_anonymous_cannot_read_customers if not authz.allow with input as anon("GET", "/api/v1/customers/42")

test_customer_reads_own_record if authz.allow with input as req("GET", "/api/v1/customers/42", alice)

test_customer_cannot_read_another_record if not authz.allow with input as req("GET", "/api/v1/customers/43", alice)

test_customer_cannot_list if not authz.allow with input as req("GET", "/api/v1/customers", alice)

test_customer_cannot_write if not authz.allow with input as req("DELETE", "/api/v1/customers/42", alice)

test_customer_without_role_is_denied if {
	not authz.allow with input as req("GET", "/api/v1/customers/42", {"sub": "alice", "customer_id": "42"})
}

test_support_reads_ticketed_customer if authz.allow with input as req("GET", "/api/v1/customers/42", agent)

test_support_cannot_read_other_customer if not authz.allow with input as req("GET", "/api/v1/customers/7", agent)

test_support_without_ticket_is_denied if {
	not authz.allow with input as req("GET", "/api/v1/customers/42", {"sub": "sam", "roles": ["support"]})
}

test_support_with_malformed_ticket_is_denied if {
	bad := {"sub": "sam", "roles": ["support"], "ticket": {"id": "none", "customer_id": "42"}}
	not authz.allow with input as req("GET", "/api/v1/customers/42", bad)
}

test_export_service_lists_customers if authz.allow with input as req("GET", "/api/v1/customers", exporter)

test_export_service_lists_orders if authz.allow with input as req("GET", "/api/v1/orders", exporter)

test_export_needs_scope if {
	not authz.allow with input as req("GET", "/api/v1/customers", {"sub": "data-export", "scope": "orders:read"})
}

test_other_service_cannot_export if {
	not authz.allow with input as req("GET", "/api/v1/customers", {"sub": "reporting", "scope": "customers:export"})
}

test_admin_cannot_list_customers if not authz.allow with input as req("GET", "/api/v1/customers", admin)

test_admin_cannot_read_others if not authz.allow with input as req("GET", "/api/v1/customers/42", admin)

test_admin_role_adds_nothing if {
	# The admin's own customer record is readable through the customer role only.
	authz.allow with input as req("GET", "/api/v1/customers/1", admin)
	not authz.allow with input as req("GET", "/api/v1/customers/1", {"sub": "root", "roles": ["admin"], "customer_id": "1"})
}

# --- The decision object: step-up, business hours, break glass ---

wednesday_10 := 1795600800 # 2026-11-25T10:00:00Z

wednesday_22 := 1795644000 # 2026-11-25T22:00:00Z

sunday_10 := 1795946400 # 2026-11-29T10:00:00Z

at(input_doc, seconds) := object.union(input_doc, {"time": {"now_ns": seconds * 1000000000}})

steward(extra) := object.union({"sub": "dana", "roles": ["data_steward"]}, extra)

eraser(extra) := object.union({"sub": "root", "roles": ["admin"]}, extra)

export_by(payload, seconds) := at(req("GET", "/api/v1/exports/customers", payload), seconds)

erase_by(payload, seconds) := at(req("DELETE", "/api/v1/customers/42", payload), seconds)

test_plain_allow_is_a_decision_object if {
	authz.decision == {"allowed": true} with input as at(req("GET", "/api/v1/customers/42", alice), wednesday_10)
}

test_denial_is_a_decision_object if {
	authz.decision == {"allowed": false} with input as at(req("GET", "/api/v1/customers/43", alice), wednesday_10)
}

test_export_without_mfa_asks_for_step_up if {
	d := authz.decision with input as export_by(steward({}), wednesday_10)
	d == {"allowed": false, "step_up": {"acr_values": "mfa", "max_age": 300}}
}

test_export_with_stale_mfa_asks_for_step_up if {
	old := steward({"amr": ["pwd", "mfa"], "auth_time": wednesday_10 - 301})
	d := authz.decision with input as export_by(old, wednesday_10)
	d.step_up.max_age == 300
}

test_export_with_fresh_mfa_is_allowed if {
	fresh := steward({"amr": ["pwd", "mfa"], "auth_time": wednesday_10 - 60})
	authz.decision == {"allowed": true} with input as export_by(fresh, wednesday_10)
}

test_export_is_not_bound_to_business_hours if {
	fresh := steward({"amr": ["mfa"], "auth_time": sunday_10 - 10})
	authz.decision.allowed with input as export_by(fresh, sunday_10)
}

test_auth_time_in_the_future_is_not_fresh if {
	future := steward({"amr": ["mfa"], "auth_time": wednesday_10 + 3600})
	d := authz.decision with input as export_by(future, wednesday_10)
	d.step_up
}

test_a_mistyped_max_auth_age_is_not_fresh if {
	fresh := steward({"amr": ["mfa"], "auth_time": wednesday_10 - 60})
	d := authz.decision with input as export_by(fresh, wednesday_10)
		with data.customer_data.max_auth_age as "300"
	d.step_up
}

test_auth_time_of_the_wrong_type_is_not_fresh if {
	odd := steward({"amr": ["mfa"], "auth_time": "now"})
	d := authz.decision with input as export_by(odd, wednesday_10)
	d.step_up
}

test_export_needs_the_steward_role if {
	fresh := {"sub": "alice", "roles": ["customer"], "customer_id": "42", "amr": ["mfa"], "auth_time": wednesday_10}
	authz.decision == {"allowed": false} with input as export_by(fresh, wednesday_10)
}

test_admin_erasure_in_hours_with_fresh_mfa if {
	fresh := eraser({"amr": ["mfa"], "auth_time": wednesday_10 - 5})
	authz.decision == {"allowed": true} with input as erase_by(fresh, wednesday_10)
}

test_admin_erasure_without_mfa_asks_for_step_up if {
	d := authz.decision with input as erase_by(eraser({}), wednesday_10)
	d.step_up.acr_values == "mfa"
}

test_admin_erasure_out_of_hours_is_denied if {
	late := eraser({"amr": ["mfa"], "auth_time": wednesday_22 - 5})
	authz.decision == {"allowed": false} with input as erase_by(late, wednesday_22)
	weekend := eraser({"amr": ["mfa"], "auth_time": sunday_10 - 5})
	authz.decision == {"allowed": false} with input as erase_by(weekend, sunday_10)
}

test_business_hours_follow_the_configured_offset if {
	# 22:00 UTC is 09:00 the next day at UTC+11 (a Thursday).
	late := eraser({"amr": ["mfa"], "auth_time": wednesday_22 - 5})
	hours := {"utc_offset_hours": 11, "days": [1, 2, 3, 4, 5], "from_hour": 8, "to_hour": 18}
	authz.decision.allowed with input as erase_by(late, wednesday_22)
		with data.customer_data.business_hours as hours
}

test_break_glass_out_of_hours_is_allowed_and_marked if {
	glass := eraser({"amr": ["mfa"], "auth_time": wednesday_22 - 5, "break_glass": {"incident": "INC-4711"}})
	d := authz.decision with input as erase_by(glass, wednesday_22)
	d.allowed
	d.data_category == "break_glass"
	d.headers["x-palisade-break-glass"] == "INC-4711"
}

test_break_glass_still_needs_fresh_mfa if {
	glass := eraser({"break_glass": {"incident": "INC-4711"}})
	d := authz.decision with input as erase_by(glass, wednesday_22)
	d.step_up
}

test_break_glass_needs_an_incident if {
	glass := eraser({"amr": ["mfa"], "auth_time": wednesday_22 - 5, "break_glass": {"incident": "because"}})
	authz.decision == {"allowed": false} with input as erase_by(glass, wednesday_22)
}

test_break_glass_grants_nothing_beyond_the_role if {
	glass := {"sub": "root", "roles": ["admin"], "amr": ["mfa"], "auth_time": wednesday_22, "break_glass": {"incident": "INC-1"}}
	authz.decision == {"allowed": false} with input as at(req("GET", "/api/v1/customers", glass), wednesday_22)
}

test_customers_cannot_erase_even_with_mfa if {
	strong := object.union(alice, {"amr": ["mfa"], "auth_time": wednesday_10})
	authz.decision == {"allowed": false} with input as erase_by(strong, wednesday_10)
}
