# Caller identity strings and the audit log line.
# Exercises: sprintf %v on strings, numbers (2.0, 1e3, 2^53+1, 0.1), null,
# booleans, arrays, sets (incl. the empty set) and objects, plus %d and %s;
# substring past the end and with a negative length; indexof/indexof_n;
# split/concat (concat over a set); upper/lower on non-ASCII ("ÄRGER", "ß",
# "İ"); count on multibyte strings; strings.reverse; trim/trim_left/
# trim_right/trim_space/trim_prefix; format_int; strings.count;
# strings.replace_n (one pass, not sequential); replace; base64/base64url/
# hex; startswith/strings.any_suffix_match; semver; object.get with a default.
package diff.strings

default decision := {"allow": false, "principal": "anonymous"}

decision := {
	"allow": allow,
	"principal": sprintf("%s@%s", [lower(sub), object.get(claims, "tenant", "unknown")]),
	"display": [display_name, upper(display_name), lower(display_name), count(display_name)],
	"sub": [count(sub), strings.reverse(sub), upper(lower(sub)) == sub],
	"encoded": [base64.encode(sub), base64url.encode_no_pad(sub), hex.encode(sub), base64url.decode(base64url.encode(sub)) == sub],
	"email_domain": email_domain,
	"masked_email": strings.replace_n(data.strings.mask, lower(object.get(claims, "email", ""))),
	"log": sprintf("%s %v level=%v mfa=%v roles=%v scopes=%v groups=%d meta=%v", [
		input.attributes.request.http.method,
		input.attributes.request.http.path,
		object.get(claims, "level", null),
		object.get(claims, "mfa", null),
		claims.roles,
		{s | some s in split(claims.scope, " "); s != ""},
		count(claims.groups),
		{"exp": claims.exp, "tenant": object.get(claims, "tenant", null)},
	]),
	"scopes_joined": concat(",", {s | some s in split(claims.scope, " ")}),
	"request_id": rid_info,
	"rid_bytes": rid_bytes,
	"agent": agent,
	"client": client_ip,
	"metric": replace(trim_prefix(input.attributes.request.http.path, "/"), "/", "."),
} if input.token.payload

claims := input.token.payload

sub := claims.sub

display_name := object.get(data.strings.display_names, sub, sub)

default email_domain := ""

email_domain := split(lower(claims.email), "@")[1]

headers := input.attributes.request.http.headers

rid := object.get(headers, "x-request-id", "")

rid_info := {
	"short": substring(rid, 0, 8),
	"rest": substring(rid, 8, -1),
	"past_end": substring(rid, 64, 4),
	"len_hex": format_int(count(rid), 16),
	"first_f": indexof(rid, "f"),
	"all_f": indexof_n(rid, "f"),
	"f_count": strings.count(rid, "f"),
	"trimmed": trim_left(trim_right(rid, "0123456789"), "0123456789"),
}

# Bytes in the request id; a hex string of odd length is not decoded.
default rid_bytes := -1

rid_bytes := count(hex.decode(rid)) if count(rid) % 2 == 0

default agent := {"product": "unknown"}

agent := {"product": trim_right(ua, "/0123456789."), "version": v, "modern": semver.compare(v, "8.0.0") >= 0} if {
	ua := headers["user-agent"]
	v := concat("", [split(ua, "/")[1], ".0"])
	semver.is_valid(v)
}

default client_ip := "unknown"

client_ip := trim_space(split(headers["x-forwarded-for"], ",")[0])

default allow := false

allow if {
	strings.any_suffix_match(lower(claims.email), data.strings.trusted_domains)
	not startswith(sub, "svc-")
	count(trim(sub, " ")) > 0
}

allow if {
	startswith(sub, "svc-")
	agent.modern
}
