# Tenant isolation: the x-tenant header, the token's tenant claim and the
# tenant's network ranges and limits.
# Exercises: undefined propagation (absent header/claim/token, an `else`
# whose value is an undefined ref), `not` over undefined refs, object.get
# with a path array and defaults (incl. a non-object on the path),
# object.union for defaults, data lookups with computed keys
# (data.tenants[tenant]), case folding ("ACME" vs "acme"), net.cidr_contains
# with IPv4/IPv6 mixes, net.cidr_is_valid, to_number on a query parameter,
# sprintf %v of numbers.
package diff.tenancy

default decision := {"allow": false, "tenant": "none"}

decision := {
	"allow": allow,
	"tenant": tenant,
	"violations": violations,
	"plan": object.get(data.tenants, [tenant, "plan"], "unknown"),
	"exports": object.get(data.tenants, [tenant, "features", "exports"], false),
	"deep_default": object.get(data.tenants, [tenant, "plan", "tier"], "n/a"),
	"exact_match": exact_match,
	"anonymous": anonymous,
	"case_only_mismatch": case_only_mismatch,
} if tenant

header_tenant := input.attributes.request.http.headers["x-tenant"]

token_tenant := input.token.payload.tenant

# The header names the tenant when present and non-empty; otherwise the token.
tenant := lower(header_tenant) if {
	header_tenant != ""
} else := token_tenant

default exact_match := false

exact_match if header_tenant == token_tenant

default anonymous := false

anonymous if not token_tenant

client_ip := trim_space(split(input.attributes.request.http.headers["x-forwarded-for"], ",")[0])

violations contains "unknown tenant" if not data.tenants[tenant]

violations contains "suspended" if data.tenants[tenant].suspended

violations contains "read-only tenant" if {
	data.tenants[tenant].read_only
	input.attributes.request.http.method != "GET"
}

violations contains "token for another tenant" if {
	token_tenant != tenant
}

violations contains "outside tenant network" if {
	client_ip
	not from_tenant_network
}

violations contains sprintf("limit %v over %v", [limit, max_limit]) if {
	limit > max_limit
}

from_tenant_network if {
	some cidr in data.tenants[tenant].cidrs
	net.cidr_is_valid(cidr)
	net.cidr_contains(cidr, client_ip)
}

limit := to_number(input.parsed_query.limit[0])

max_limit := object.union({"max_limit": 1000}, data.tenants[tenant]).max_limit

default allow := false

allow if {
	count(violations) == 0
	token_tenant
}

# The header disagrees with the token only in letter case ("ACME" vs "acme").
default case_only_mismatch := false

case_only_mismatch if {
	header_tenant != token_tenant
	lower(header_tenant) == lower(token_tenant)
}
