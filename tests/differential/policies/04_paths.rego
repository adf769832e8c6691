# Route table matching on the raw request path.
# Exercises: glob.match with delimiters ["/"], with [] (defaults to ["."], so
# `*` crosses "/") and with null (no delimiters); `**`, `?`, `{a,b}`, `[0-9]`
# patterns; glob.quote_meta; regex.match/find_n/split/replace; urlquery.decode
# of "%2e%2e" and urlquery.encode; substring/indexof/count on a non-ASCII path (code points, not
# bytes); upper/lower on non-ASCII; max() over a set of arrays to pick the
# most specific route; strings.any_prefix_match; trim_prefix/trim_suffix.
package diff.paths

default decision := {"route": "none", "allow": false}

decision := {
	"route": route,
	"allow": allow,
	"strict": {r.name | some r in data.paths.routes; glob.match(r.glob, ["/"], path_only)},
	"loose": {r.name | some r in data.paths.routes; glob.match(r.glob, [], path_only)},
	"nodelim": {r.name | some r in data.paths.routes; glob.match(r.glob, null, path_only)},
	"template": regex.replace(path_only, `/[0-9]+`, "/{id}"),
	"ids": regex.find_n(`[0-9]+`, path_only, -1),
	"segments": regex.split(`/+`, trim_prefix(path_only, "/")),
	"version": regex.find_n(`v[0-9]+`, path_only, 1),
	"decoded": decoded,
	"encoded": urlquery.encode(path_only),
	"traversal": traversal,
	"length": count(path),
	"ascii": regex.match(`^[ -~]*$`, path),
	"folded": [upper(path_only), lower(path_only)],
	"first_non_ascii": first_non_ascii,
	"head": substring(path, 1, 8),
	"tail": substring(path, 9, 100),
	"past_end": substring(path, 200, 5),
	"extension": extension,
	"public": strings.any_prefix_match(path_only, data.paths.public_prefixes),
	"bulk": glob.match(glob.quote_meta("/api/v1/orders?limit=500"), ["/"], path),
}

path := input.attributes.request.http.path

path_only := split(path, "?")[0]

decoded := urlquery.decode(path_only)

# "" when the path has no extension (find_n finds nothing, [0] is undefined).
default extension := ""

extension := trim_prefix(regex.find_n(`\.[a-z]+$`, path_only, 1)[0], ".")

default traversal := false

traversal if contains(decoded, "..")

traversal if {
	some seg in input.parsed_path
	trim_suffix(trim_prefix(lower(seg), "%2e"), "%2e") == ""
}

# Code-point index of the first character outside ASCII (-1 if none).
default first_non_ascii := -1

first_non_ascii := indexof(path, c) if {
	chars := regex.find_n(`[^ -~]`, path, 1)
	c := chars[0]
}

# The most specific route: the longest glob among the "/"-delimited matches.
best := max({[count(r.glob), r.name] |
	some r in data.paths.routes
	glob.match(r.glob, ["/"], path_only)
})

default route := "none"

route := best[1]

methods_for(name) := {m | some r in data.paths.routes; r.name == name; some m in r.methods}

default allow := false

allow if {
	input.attributes.request.http.method in methods_for(route)
	not traversal
	regex.match(`^[ -~]*$`, path)
}
