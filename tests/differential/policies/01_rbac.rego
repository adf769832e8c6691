# Role-based access over the token's `roles` claim.
# Exercises: `some … in` and `some i` iteration, partial set rules
# (`contains`), data lookups with computed keys
# (data.rbac.role_permissions[role]), `every` over a partial set,
# `not` over undefined refs, undefined propagation through a set literal
# (`{"*", resource}` with `resource` undefined), set-vs-array equality,
# role normalisation (duplicates, "Admin" vs "admin"). Imports rego.v1 (a
# no-op in OPA 1.x), which the other policies leave out.
package diff.rbac

import rego.v1

default decision := {"allow": false, "reason": "no grant"}

decision := {
	"allow": true,
	"via": sort(granting_roles),
	"sole_admin": sole_admin,
	# Undefined without a token, which makes this whole body undefined.
	"admin_array": raw_roles == ["admin"],
} if {
	count(granting_roles) > 0
	count(denied_reasons) == 0
}

decision := {"allow": false, "reason": "denied", "denials": denied_reasons} if {
	count(denied_reasons) > 0
}

req := input.attributes.request.http

raw_roles := input.token.payload.roles

# Normalised roles: lower-cased and deduplicated.
roles contains lower(r) if some r in raw_roles

resource := "admin:users" if input.parsed_path == ["admin", "users"]

resource := input.parsed_path[2] if input.parsed_path[0] == "api"

granting_roles contains "public" if {
	req.method == "GET"
	input.parsed_path == ["health"]
}

granting_roles contains role if {
	some role in roles
	some grant in data.rbac.role_permissions[role]
	grant.resource in {"*", resource}
	method_allowed(grant.methods)
}

method_allowed(methods) if "*" in methods

method_allowed(methods) if req.method in methods

# The IdP must send roles in their canonical (lower-case) spelling.
denied_reasons contains "mixed-case role" if {
	some i
	raw_roles[i] != lower(raw_roles[i])
}

denied_reasons contains "admin listed twice" if {
	count([i | some i; raw_roles[i] == "admin"]) > 1
}

denied_reasons contains sprintf("%s may not %s", [role, req.method]) if {
	some role, methods in data.rbac.deny_methods_for
	role in roles
	req.method in methods
}

denied_reasons contains "sensitive resource without mfa" if {
	resource in data.rbac.sensitive
	not input.token.payload.mfa == true
}

# A caller whose every role is read-only may only read.
denied_reasons contains "read-only caller" if {
	count(roles) > 0
	every r in roles {
		r in data.rbac.read_only_roles
	}
	not req.method in {"GET", "HEAD"}
}

default sole_admin := false

sole_admin if roles == {"admin"}
