# Team entitlements derived from the token's `groups` (with parent teams).
# Exercises: set/array/object comprehensions (nested, with closures over
# outer variables, over undefined domains = empty), partial object rules
# (`access[res] := level if`), partial sets, numbers.range with literal
# bounds, array.slice/array.concat/array.reverse, object.keys, `every` over
# empty collections (vacuously true) and over a non-empty one, `some k, v`
# over objects, duplicates in arrays vs sets, max() over sets.
package diff.comprehensions

default decision := {"allow": false, "access": {}}

decision := {
	"allow": allow,
	"access": access,
	"teams": teams,
	"entitlements": entitlements,
	"by_team": {team: sort(ents) | some team in teams; ents := object.get(data.comprehensions.entitlements, team, [])},
	"group_counts": {g: count([x | some x in groups; x == g]) | some g in groups},
	"lengths": [count(g) | some g in groups],
	"path_tail": array.reverse(array.slice(input.parsed_path, 1, 100)),
	"depths": depths,
	"all_known": all_known,
	"no_strangers": no_strangers,
}

groups := object.get(input, ["token", "payload", "groups"], [])

# "eng/platform" expands to "eng" and "eng/platform".
teams contains prefix if {
	some g in groups
	parts := split(g, "/")
	some i in numbers.range(1, 3)
	i <= count(parts)
	prefix := concat("/", array.slice(parts, 0, i))
}

entitlements := {e | some team in teams; some e in data.comprehensions.entitlements[team]}

depths := array.concat([count(split(t, "/")) | some t in teams], [0])

resources := {g.resource | some g in data.comprehensions.grants}

# The highest level each resource is granted at, over all of the caller's teams.
access[res] := max(levels) if {
	some res in resources
	levels := {g.level | some g in data.comprehensions.grants; g.resource == res; g.team in teams}
	count(levels) > 0
}

# Vacuously true for a caller without groups.
default no_strangers := false

no_strangers if {
	every g in groups {
		g in object.keys(data.comprehensions.entitlements)
	}
}

default all_known := false

all_known if {
	every g in groups {
		some known, _ in data.comprehensions.entitlements
		startswith(g, known)
	}
}

needed := object.get(data.comprehensions.needed, input.attributes.request.http.method, 3)

resource := input.parsed_path[2]

default allow := false

allow if access[resource] >= needed

allow if {
	input.parsed_path == ["health"]
	count(groups) == 0
}
