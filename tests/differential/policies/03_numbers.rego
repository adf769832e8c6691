# Trust tiers from the token's numeric `level` claim.
# Exercises: ints vs floats (2 == 2.0, `in` a set built from float products,
# set dedup of 2 and 2.0), integers beyond 2^53 (9007199254740993), negative
# numbers, 1e3, division, `%` (guarded to integers), floor/ceil/round/abs,
# float sums like 0.1 + 0.2, a string claim ("3") converted with to_number
# and also compared raw (a string sorts after every number), max() over mixed
# types, numbers.range, sum/product/min/max, format_int, bits.*, `else` chains.
package diff.numbers

default decision := {"tier": "none", "allow": false}

decision := {
	"tier": tier,
	"allow": allow,
	"type": type_name(raw_level),
	"naive_privileged": naive_privileged,
	"clamped": max([raw_level, 0]),
	"score": score,
	"score_ok": score >= 0.3,
	"stepped": level in steps,
	"same_as_two": count({level, 2.0}) == 1,
	"equals_two": level == 2,
	"beyond_2_53": level > 9007199254740992,
	"quarter": level / 4,
	"rounded": [floor(level), ceil(level), round(level), abs(level)],
	"stats": [sum(samples), product(samples), min(samples), max(samples)],
	"hex": format_int(level, 16),
	"parity": parity,
	"bits": bits_summary,
} if is_number(level)

raw_level := input.token.payload.level

level := raw_level if is_number(raw_level)

level := to_number(raw_level) if {
	is_string(raw_level)
	regex.match(`^-?[0-9]+(\.[0-9]+)?$`, raw_level)
}

# What a careless author writes: "3" >= 2 holds, as strings sort after numbers.
default naive_privileged := false

naive_privileged if raw_level >= 2

integral if floor(level) == level

default parity := "fractional"

parity := "even" if {
	integral
	level % 2 == 0
} else := "odd" if integral

default bits_summary := {}

bits_summary := {
	"and": bits.and(level, 6), "or": bits.or(level, 1), "xor": bits.xor(level, 5),
	"lsh": bits.lsh(level, 2), "rsh": bits.rsh(level, 1), "neg": bits.negate(level),
} if integral

# Half steps 0, 0.5, ..., 3 (products of ints and a float). The term is a
# variable: `{n * 0.5 | ...}` would parse `0.5 | ...` as a set union.
steps := {x | some n in numbers.range(0, 6); x := n * 0.5}

samples := [level, 0.1, 0.2, -1]

default mfa_weight := 0

mfa_weight := 0.2 if input.token.payload.mfa == true

score := (level * 0.1) + mfa_weight

tier := "root" if level >= 1000
else := "elevated" if level >= 2
else := "standard" if level >= 1
else := "basic" if level >= 0
else := "negative"

default allow := false

allow if {
	tier in {"elevated", "root"}
	input.token.payload.mfa == true
}

allow if {
	tier == "standard"
	input.attributes.request.http.method == "GET"
}
