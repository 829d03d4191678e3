package extauthz

import "github.com/tollgate/tollgate/internal/policy"

// refusal is a request Tollgate will not decide because it cannot read it
// the way the upstream would: a deny with its own code, before any token
// is looked up. It is an error only to travel out of readRequest.
type refusal struct {
	code policy.DenyCode
	msg  string
}

func (r *refusal) Error() string { return "extauthz: " + string(r.code) + ": " + r.msg }

// The refusals, shared: a refusal carries nothing of the request, so a
// deny costs no allocation to describe.
var (
	refuseMethod = &refusal{policy.CodeMethodUnknown,
		"this HTTP method is not one Tollgate knows (GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE)"}
	refusePath = &refusal{policy.CodePathInvalid,
		"the path is ambiguous or malformed (an escaped '/' or '\\', a control character, an invalid escape, invalid UTF-8, or a dot segment Tollgate will not resolve)"}
	refuseQuery = &refusal{policy.CodeQueryInvalid,
		"the query string holds an invalid percent-escape or a ';'"}
	refuseUnmatched = &refusal{policy.CodeRouteUnmatched,
		"no route describes this method and path, so Tollgate cannot tell what it would allow"}
	refuseEncoding = &refusal{policy.CodeRequestInvalid,
		"the request holds bytes that are not UTF-8 where text is expected"}
	refuseRepeatedParam = [numParams]*refusal{
		paramToken:  {policy.CodeParamRepeated, "the query parameter token appears more than once; send it once"},
		paramAPIKey: {policy.CodeParamRepeated, "the query parameter api_key appears more than once; send it once"},
		paramQ:      {policy.CodeParamRepeated, "the query parameter q appears more than once; send it once"},
	}
)

func refuseRepeated(p int) *refusal { return refuseRepeatedParam[p] }
