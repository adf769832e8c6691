# OAuth scope checks per route.
# Exercises: split() of an empty or space-separated string ("" -> [""]),
# set algebra (`&`, `|`, `-`, intersection(), union() over a set of sets),
# `in` on arrays, sets and objects (an object's values; `k, v in`),
# object.subset on sets and on arrays (contiguous run), strings.any_prefix_match
# on a set, a comprehension over an undefined key (empty), `else` chains,
# set-vs-array equality, data lookup with a sprintf-built key.
package diff.scopes

default decision := {"mode": "anonymous", "granted": false}

decision := {
	"mode": mode,
	"granted": count(missing) == 0,
	"missing": missing,
	"held": intersection({required, scopes}),
	"implied": implied_by_bundles - scopes,
	"unknown": scopes - known_scopes,
	"raw_count": count(raw_scope_list),
	"exact": scopes == required,
	"as_array": raw_scope_list == sort(scopes),
	"contiguous": object.subset(raw_scope_list, ["read:customers", "write:customers"]),
	"privileged": strings.any_prefix_match(scopes, data.scopes.privileged_prefixes),
	"aliased": aliased,
	"alias_names": alias_names,
} if input.token.payload

raw_scope_list := split(input.token.payload.scope, " ")

# The empty string is not a scope.
scopes := {s | some s in raw_scope_list; s != ""}

as_set(xs) := {x | some x in xs}

known_scopes := union({as_set(r) | some r in data.scopes.required})

resource := input.parsed_path[2] if input.parsed_path[0] == "api"

route_key := sprintf("%s %s", [input.attributes.request.http.method, resource])

# Scopes the route needs; unknown routes need a scope nobody has.
required := r if {
	r := as_set(data.scopes.required[route_key])
	count(r) > 0
} else := {"admin:unknown-route"}

# A token holding every scope of a bundle also holds what the bundle implies.
implied_by_bundles := union({as_set(b.implies) |
	some b in data.scopes.bundles
	object.subset(scopes, as_set(b.scopes))
})

missing := (required - scopes) - implied_by_bundles

mode := "full" if {
	count(missing) == 0
} else := "partial" if {
	count(required & scopes) > 0
} else := "none"

# Held scopes that some legacy alias maps to (`in` on an object checks values).
aliased contains s if {
	some s in (scopes | implied_by_bundles)
	s in data.scopes.aliases
}

# Legacy alias names whose target the token holds (`k, v in` on an object).
alias_names contains k if {
	some k, v in data.scopes.aliases
	v in scopes
}
