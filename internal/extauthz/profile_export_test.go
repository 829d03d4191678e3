package extauthz

import "github.com/tollgate/tollgate/internal/policy"

// IEXAnswer exposes the IEX profile's table to the external tests: the
// status and message of code, and whether the table names it.
func IEXAnswer(code policy.DenyCode) (status int, message string, ok bool) {
	a, ok := iexAnswers[code]
	return a.status, a.message, ok
}
