package policy

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable reason an operation failed. Codes
// appear in API error bodies, so they never change once published. Why a
// request was denied is a DenyCode, not a Code.
type Code string

// Codes for errors in general use.
const (
	EInvalid      Code = "invalid"      // a field failed validation
	ENotFound     Code = "not_found"    // the thing asked for does not exist
	EConflict     Code = "conflict"     // the change contradicts existing state
	EUnauthorized Code = "unauthorized" // no or bad credentials
	EForbidden    Code = "forbidden"    // credentials are fine, the action is not allowed
	EUnavailable  Code = "unavailable"  // a dependency (the database) cannot be reached
	ERateLimited  Code = "rate_limited" // too many attempts; retry later
	EInternal     Code = "internal"     // a bug or an unexpected failure
)

// Error is a domain error: a code, the field at fault (if any) and a message
// a person can act on.
type Error struct {
	Code    Code
	Field   string
	Message string
	Err     error // the underlying cause, if any
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// fieldError reports that field has a bad value.
func fieldError(field, format string, args ...any) *Error {
	return &Error{Code: EInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return EInternal
}

// ErrNotFound is returned by stores when a record does not exist.
var ErrNotFound = &Error{Code: ENotFound, Message: "policy: not found"}
