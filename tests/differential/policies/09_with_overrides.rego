# Maintenance windows and "what if" answers computed with `with`.
# Exercises: `with input.<path> as` (replacing a leaf, replacing a subtree,
# creating a path that is absent, several `with` on one expression),
# `with data.<base doc> as`, `with data.<rule> as` (overriding a rule of this
# package), `with` inside a comprehension driven by its loop variable,
# `not` combined with `with`, and rules that must be re-evaluated under it.
package diff.with_overrides

default decision := {"allow": false}

decision := {
	"allow": allow,
	"allowed_methods": allowed_methods,
	"write_blocked": write_blocked,
	"blocked_only_by_list": blocked_only_by_list,
	"admin_would_pass": admin_would_pass,
	"maintenance_only": maintenance_only,
	"forced_open": forced_open,
	"anonymous_read": anonymous_read,
}

req := input.attributes.request.http

claims := input.token.payload

scopes := {s | some s in split(claims.scope, " "); s != ""}

default allow := false

allow if {
	not in_maintenance
	not subject_blocked
	permitted
}

permitted if {
	req.method == "GET"
	"read:customers" in scopes
}

permitted if {
	req.method in {"POST", "PUT", "PATCH"}
	"write:customers" in scopes
}

permitted if {
	"admin" in claims.roles
	claims.mfa == true
}

# A tenant's maintenance window blocks every method it does not list.
in_maintenance if {
	window := data.with_overrides.maintenance[claims.tenant]
	window.enabled
	not req.method in window.allowed_methods
}

subject_blocked if claims.sub in data.with_overrides.blocked_subjects

# The methods this caller could use here (`with` driven by the loop variable).
allowed_methods := {m | some m in data.with_overrides.methods; allow with input.attributes.request.http.method as m}

default write_blocked := false

write_blocked if not allow with input.attributes.request.http.method as "PUT"

default blocked_only_by_list := false

blocked_only_by_list if {
	not allow
	allow with data.with_overrides.blocked_subjects as []
}

# Would an MFA'd admin pass? Creates token.payload.roles/mfa even without a token.
default admin_would_pass := false

admin_would_pass if allow with input.token.payload.roles as ["admin"] with input.token.payload.mfa as true

default maintenance_only := false

maintenance_only if {
	not allow
	allow with data.diff.with_overrides.in_maintenance as false
}

default forced_open := false

forced_open if allow with data.diff.with_overrides.permitted as true with data.with_overrides.maintenance as {}

# A token with only a read scope, replacing the whole `token` subtree.
default anonymous_read := false

anonymous_read if allow with input.token as {"payload": {"sub": "", "scope": "read:customers", "roles": []}}
