# Customer and order views: joins between the request and `data`.
# Exercises: computed data keys (customers[cid]), incl. a missing one
# ("%2e%2e") under `not`; joins with comprehensions; json.filter/json.remove
# with "a/b" paths; object.union_n/filter/remove/keys/get; json.marshal of
# floats and nested objects, json.unmarshal round trip, base64url; sum over floats
# (19.99 + 0.01); "42" vs 42 via to_number; min() clamping a query limit;
# array.slice; single-expression `else` chains; sorted keys for stable arrays.
package diff.data_joins

default decision := {"allow": false, "view": null}

decision := {"allow": true, "view": view, "etag": etag, "round_trip": json.unmarshal(json.marshal(view)) == view} if allow

decision := {"allow": false, "view": null, "reason": reason} if not allow

customers := data.data_joins.customers

claims := input.token.payload

roles := {r | some r in claims.roles}

cid := input.parsed_path[3] if array.slice(input.parsed_path, 0, 3) == ["api", "v1", "customers"]

record := customers[cid]

# An `else` chain with single-expression bodies.
view_role := "admin" if "admin" in roles
else := "support" if "support" in roles
else := "auditor" if "auditor" in roles
else := "owner" if record.owner == claims.sub

customer_orders := [o | some o in data.data_joins.orders; o.customer == cid]

record_view := object.union_n([
	{"id": null, "name": "", "tier": "none"},
	json.remove(json.filter(record, fields), data.data_joins.redact),
	{"orders": {
		"ids": [o.id | some o in customer_orders],
		"total": sum([o.total | some o in customer_orders]),
	}, "key_is_number": record.id == to_number(cid)},
]) if {
	record # before to_number(cid): "%2e%2e" is no number
	fields := data.data_joins.field_policy[view_role]
}

list_view := [object.filter(customers[k], ["id", "name", "tier"]) |
	some k in sort(object.keys(customers))
	customers[k].tenant == claims.tenant
]

limit := min([to_number(input.parsed_query.limit[0]), data.data_joins.max_page])

view := record_view if cid

view := {"customers": list_view} if input.parsed_path == ["api", "v1", "customers"]

view := {
	"orders": [object.remove(o, ["customer"]) | some o in array.slice(data.data_joins.orders, 0, limit)],
	"limit": limit,
} if input.parsed_path == ["api", "v1", "orders"]

etag := base64url.encode_no_pad(json.marshal(view))

method := input.attributes.request.http.method

default allow := false

allow if {
	method == "GET"
	view
	view_role in {"owner", "support"}
	record.tenant == claims.tenant
}

# Admins read and patch any record, auditors read any.
allow if {
	method in object.get({"admin": {"GET", "PATCH"}, "auditor": {"GET"}}, view_role, set())
	view
}

allow if {
	method == "GET"
	input.parsed_path in {["api", "v1", "customers"], ["api", "v1", "orders"]}
	count(roles & {"admin", "support", "export"}) > 0
}

reason := "no token" if {
	not claims
} else := "unknown customer" if {
	cid
	not record
} else := sprintf("customer %v belongs to another tenant", [record.id]) if {
	record.tenant != claims.tenant
	not view_role in {"admin", "auditor"}
} else := "no access"
