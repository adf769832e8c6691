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
