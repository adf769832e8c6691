# Reference least-privilege policy for the demo customer-data API.
#
# Loaded by Palisade as the decision `data.envoy.authz.decision` (an
# OPA-Envoy decision object). It reads the OPA-Envoy input document plus
# `input.token.payload`, the claims of a token Palisade has already
# verified (signature, issuer, audience, lifetime), and `input.time.now_ns`,
# the gate's clock.
#
# Roles, from the token's `roles` claim (an array of strings):
#   customer      reads only their own record (`customer_id` claim)
#   support       reads one customer, only with a `ticket` claim naming that customer
#   data_steward  runs the bulk export (GET /api/v1/exports/customers)
#   admin         erases a customer (DELETE /api/v1/customers/<id>); no read access
# Services:
#   data-export (sub) is the only caller of bulk listings, with scope `customers:export`
# Anyone may call GET /health.
#
# Privileged access (the bulk export, every admin action) needs strong,
# fresh authentication: `amr` contains "mfa" and `auth_time` is at most
# `max_auth_age` seconds old. Otherwise the answer is a step-up challenge
# (401, RFC 9470) naming what is needed. Admin actions outside business
# hours are denied, zero tolerance, unless the token carries an approved
# break-glass claim (`break_glass.incident`, "INC-…"); a break-glass access
# is marked so that Palisade always records it.
#
# Settings come from `data.customer_data` (see `settings` below).
package envoy.authz

import rego.v1

default allow := false

# The decision Palisade reads: allowed, a step-up challenge, or denied.
default decision := {"allowed": false}

decision := {"allowed": true} if {
	allow
	not break_glass_used
}

# Break-glass access goes through, marked so the audit trail always keeps it.
decision := {
	"allowed": true,
	"data_category": "break_glass",
	"headers": {"x-palisade-break-glass": claims.break_glass.incident},
} if {
	allow
	break_glass_used
}

decision := {"allowed": false, "step_up": {"acr_values": "mfa", "max_age": max_auth_age}} if {
	granted
	privileged
	not strong_auth
}

# Allowed: granted by a role, and privileged access only with strong, fresh
# authentication, and admin actions only in business hours or under break glass.
allow if {
	granted
	not privileged
}

allow if {
	granted
	privileged
	strong_auth
	not off_hours_admin
}

allow if {
	granted
	privileged
	strong_auth
	break_glass_used
}

# Settings, overridable in the plugin configuration's `policy.data`:
# {"customer_data": {"max_auth_age": 300, "business_hours": {...}}}.
default max_auth_age := 300

max_auth_age := data.customer_data.max_auth_age

default business_hours_setting := {
	"utc_offset_hours": 0,
	"days": [1, 2, 3, 4, 5], # 0 is Sunday
	"from_hour": 8,
	"to_hour": 18,
}

business_hours_setting := data.customer_data.business_hours

http := input.attributes.request.http

claims := input.token.payload

roles := {r | some r in claims.roles}

scopes := {s | some s in split(claims.scope, " ")}

# Health checks are public.
granted if {
	http.method == "GET"
	input.parsed_path == ["health"]
}

# A customer reads only their own record.
granted if {
	http.method == "GET"
	input.parsed_path == ["api", "v1", "customers", claims.customer_id]
	"customer" in roles
}

# A support agent reads one customer, and only with a ticket for that customer.
granted if {
	http.method == "GET"
	input.parsed_path == ["api", "v1", "customers", claims.ticket.customer_id]
	"support" in roles
	startswith(claims.ticket.id, "T-")
}

# Bulk listings are for the data-export service only.
granted if {
	http.method == "GET"
	input.parsed_path in bulk_paths
	claims.sub == "data-export"
	"customers:export" in scopes
}

bulk_paths := {["api", "v1", "customers"], ["api", "v1", "orders"]}

# The bulk export is for data stewards, and privileged.
granted if {
	http.method == "GET"
	input.parsed_path == ["api", "v1", "exports", "customers"]
	"data_steward" in roles
}

# Admins erase customers (a privileged action); they read nothing.
granted if {
	erasure
	"admin" in roles
}

erasure if {
	http.method == "DELETE"
	count(input.parsed_path) == 4
	array.slice(input.parsed_path, 0, 3) == ["api", "v1", "customers"]
}

privileged if input.parsed_path == ["api", "v1", "exports", "customers"]

privileged if erasure

now_seconds := floor(input.time.now_ns / 1000000000)

# MFA, no longer ago than `max_auth_age`, and not in the future.
strong_auth if {
	"mfa" in claims.amr
	is_number(claims.auth_time)
	is_number(max_auth_age) # a mistyped setting must not pass everyone
	now_seconds - claims.auth_time <= max_auth_age
	claims.auth_time <= now_seconds + 60
}

off_hours_admin if {
	erasure
	not business_hours
}

business_hours if {
	hours := business_hours_setting
	local := now_seconds + (hours.utc_offset_hours * 3600)
	day := floor(local / 86400)
	weekday := (day + 4) % 7 # 1970-01-01 was a Thursday; 0 is Sunday
	weekday in hours.days
	hour := floor((local % 86400) / 3600)
	hour >= hours.from_hour
	hour < hours.to_hour
}

# An emergency credential for admins, approved outside Palisade and named
# by its incident; every use is marked for the audit trail.
break_glass_used if {
	erasure
	"admin" in roles
	startswith(claims.break_glass.incident, "INC-")
}
