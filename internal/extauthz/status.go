package extauthz

import (
	"context"
	"errors"
	"net/http"

	"github.com/tollgate/tollgate/internal/policy"
)

// DenyStatus is the one table from deny codes to the HTTP status a denied
// caller sees, through Envoy (Check) and through the HTTP front end alike:
// 400 when the request cannot be read unambiguously, 401 when the caller
// did not prove who it is, 402 when it ran out of credits, 429 when it is
// going too fast (or its signatures cannot all be remembered: the remedy
// is the same, wait and send a freshly signed request), 500 when the
// operator's route configuration is unusable, 403 otherwise.
func DenyStatus(c policy.DenyCode) int {
	switch c {
	case policy.CodePathInvalid, policy.CodeQueryInvalid, policy.CodeParamRepeated, policy.CodeRequestInvalid:
		return http.StatusBadRequest
	case policy.CodeRouteMisconfigured:
		return http.StatusInternalServerError
	case policy.CodeCreditsExhausted, policy.CodeQuotaExhausted:
		return http.StatusPaymentRequired
	case policy.CodeRateLimited, policy.CodeReplayUnverifiable:
		return http.StatusTooManyRequests
	}
	if c.Unauthenticated() {
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}

// internalFailure reports whether err, which kept Tollgate from deciding,
// is its own fault (a bug: 500, gRPC Internal) rather than a dependency
// that is down or slow (503, gRPC Unavailable).
func internalFailure(err error) bool {
	return policy.ErrorCode(err) == policy.EInternal && !errors.Is(err, context.DeadlineExceeded)
}
