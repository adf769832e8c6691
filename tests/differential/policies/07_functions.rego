# Risk scoring built from user-defined functions.
# Exercises: functions with several definitions (disjoint, and overlapping but
# agreeing), `else` chains in functions, functions returning objects, an
# array-pattern argument, `not` over calls (incl. an undefined argument), set
# vs array arguments, computed data keys, and sort() over mixed types (OPA:
# null < boolean < number < string < array < object < set).
package diff.functions

default decision := {"allow": false, "risk": 99}

decision := {
	"allow": risk <= data.functions.max_risk,
	"risk": risk,
	"parts": parts,
	"class": method_class(method),
	"profile": profile(method, sub),
	"teams_agree": teams == {t | some t in ["eng", "ops", "sales"]; in_team(as_set(groups), t)},
	"fingerprint": fingerprint,
} if input.token.payload

claims := input.token.payload

method := input.attributes.request.http.method

sub := claims.sub

groups := object.get(claims, "groups", [])

method_class(m) := "read" if m in {"GET", "HEAD"}

method_class(m) := "write" if m in {"POST", "PUT", "PATCH"}

method_class(m) := "delete" if m == "DELETE"

subject_risk(s) := 0 if {
	s in data.functions.trusted_subjects
} else := 1 if {
	startswith(s, "svc-")
} else := 5 if {
	s == ""
} else := 2

# An exact group, or a subgroup ("eng/platform" is in "eng"): both may hold.
in_team(gs, team) if team in gs

in_team(gs, team) if {
	some g in gs
	startswith(g, concat("", [team, "/"]))
}

blocked(s) if data.functions.blocked[s]

weight([cls, res]) := object.get(data.functions.weights, [cls, res], 1)

default resource := "none"

resource := input.parsed_path[2]

as_set(xs) := {x | some x in xs}

level_bonus(l) := -1 if l >= 2

level_bonus(l) := 0 if l < 2

profile(m, s) := {"class": method_class(m), "risk": subject_risk(s), "teams": teams}

teams := {t | some t in ["eng", "ops", "sales"]; in_team(groups, t)}

parts := {
	"subject": subject_risk(sub),
	"weight": weight([method_class(method), resource]),
	"no_ops": 1 - count({t | some t in teams; t == "ops"}),
	"mfa": mfa_risk,
	"level": level_risk,
	"blocked": blocked_risk,
}

default level_risk := 0

level_risk := level_bonus(claims.level)

default mfa_risk := 1

mfa_risk := 0 if claims.mfa == true

default blocked_risk := 0

blocked_risk := 100 if blocked(sub)

risk := sum([v | some v in parts])

# Deletions carry a canonical, mixed-type ordering of the claims for the audit.
default fingerprint := []

fingerprint := sort([object.get(claims, "mfa", null), claims.level, sub, claims.roles, {"n": count(teams)}, teams, null]) if {
	method == "DELETE"
	not in_team(groups, "sales")
	not blocked(claims.email) # true when there is no email claim at all
}
