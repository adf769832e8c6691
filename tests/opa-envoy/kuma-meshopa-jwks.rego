package envoy.authz

import input.attributes.request.http as http_request

jwks := "<your OpenID Connect provider's JWKS>"

default allow = false

token = {"valid": valid, "payload": payload} {
    [_, encoded] := split(http_request.headers.authorization, " ")
    [valid, _, payload] := io.jwt.decode_verify(encoded, {"cert": jwks})
}

allow {
    token.valid
    token.payload.aud == "kong-air-booking"
}
