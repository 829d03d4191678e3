# The token check Tollgate makes on a cache hit, written as an opa-envoy
# policy: find the token (Bearer header, X-API-Key or ?token=), look up its
# SHA-256 in data, check the Referer against the token's domains, and allow
# with the identity and credit headers Tollgate sets.
package envoy.authz

req := input.attributes.request.http

token := t if {
	startswith(req.headers.authorization, "Bearer ")
	t := substring(req.headers.authorization, 7, -1)
} else := t if {
	t := req.headers["x-api-key"]
} else := t if {
	t := input.parsed_query.token[0]
}

entry := data.tokens[crypto.sha256(token)]

referer_host := split(req.headers.referer, "/")[2]

default referer_ok := false

referer_ok if {
	not req.headers.referer
}

referer_ok if {
	some pattern in entry.domains
	glob.match(pattern, ["."], referer_host)
}

default result := {
	"allowed": false,
	"http_status": 401,
	"body": "{\"error\":{\"code\":\"token_unknown\"}}",
	"headers": {"content-type": "application/json"},
	"code": "token_unknown",
}

result := {
	"allowed": false,
	"http_status": 403,
	"body": "{\"error\":{\"code\":\"referer_denied\"}}",
	"headers": {"content-type": "application/json"},
	"code": "referer_denied",
} if {
	entry
	not referer_ok
}

result := {
	"allowed": true,
	"headers": {
		"x-tollgate-account-id": entry.account_id,
		"x-tollgate-token-id": entry.token_id,
		"x-tollgate-token-kind": "publishable",
	},
	"response_headers_to_add": {
		"x-credits-used": format_int(entry.used + 1, 10),
		"x-credits-cost": "1",
	},
	"dynamic_metadata": {
		"cost": 1,
		"account_id": entry.account_id,
		"token_id": entry.token_id,
		"token_kind": "publishable",
	},
} if {
	entry
	referer_ok
}
