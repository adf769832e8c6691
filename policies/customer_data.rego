# Reference least-privilege policy for the demo customer-data API.
#
# Loaded by Palisade as the decision `data.envoy.authz.allow`. It reads the
# OPA-Envoy input document plus `input.token.payload`, the claims of a token
# Palisade has already verified (signature, issuer, audience, lifetime).
#
# Roles, from the token's `roles` claim (an array of strings):
#   customer  reads only their own record (`customer_id` claim)
#   support   reads one customer, only with a `ticket` claim naming that customer
#   admin     has no customer-data access by default
# Services:
#   data-export (sub) is the only caller of bulk listings, with scope `customers:export`
# Anyone may call GET /health.
package envoy.authz

import rego.v1

default allow := false

http := input.attributes.request.http

claims := input.token.payload

roles := {r | some r in claims.roles}

scopes := {s | some s in split(claims.scope, " ")}

# Health checks are public.
allow if {
	http.method == "GET"
	input.parsed_path == ["health"]
}

# A customer reads only their own record.
allow if {
	http.method == "GET"
	input.parsed_path == ["api", "v1", "customers", claims.customer_id]
	"customer" in roles
}

# A support agent reads one customer, and only with a ticket for that customer.
allow if {
	http.method == "GET"
	input.parsed_path == ["api", "v1", "customers", claims.ticket.customer_id]
	"support" in roles
	startswith(claims.ticket.id, "T-")
}

# Bulk listings are for the data-export service only.
allow if {
	http.method == "GET"
	input.parsed_path in bulk_paths
	claims.sub == "data-export"
	"customers:export" in scopes
}

bulk_paths := {["api", "v1", "customers"], ["api", "v1", "orders"]}
