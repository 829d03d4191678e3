package admin

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/tollgate/tollgate/policy"
)

// status is the one table from error codes to HTTP statuses.
func status(c policy.Code) int {
	switch c {
	case policy.EInvalid:
		return http.StatusBadRequest
	case policy.EUnauthorized:
		return http.StatusUnauthorized
	case policy.EForbidden:
		return http.StatusForbidden
	case policy.ENotFound:
		return http.StatusNotFound
	case policy.EConflict:
		return http.StatusConflict
	case policy.EUnavailable:
		return http.StatusServiceUnavailable
	case policy.ERateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    policy.Code `json:"code"`
	Field   string      `json:"field,omitempty"`
	Message string      `json:"message"`
}

func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	var detail errorDetail
	code := http.StatusInternalServerError
	var tooLarge *http.MaxBytesError
	retry, isRetry := errors.AsType[*retryLater](err)
	switch pe, ok := errors.AsType[*policy.Error](err); {
	case isRetry:
		code, detail = status(retry.code), errorDetail{Code: retry.code, Message: retry.msg}
		w.Header().Set("Retry-After", retry.retryAfter())
	case errors.As(err, &tooLarge):
		code, detail = http.StatusRequestEntityTooLarge, errorDetail{Code: policy.EInvalid, Message: "the body is larger than 64 KiB"}
	case ok && pe.Code != policy.EInternal:
		code, detail = status(pe.Code), errorDetail{Code: pe.Code, Field: pe.Field, Message: pe.Message}
		if pe.Code == policy.ENotFound {
			detail.Message = "not found"
		}
	default:
		log.Error("admin: request failed", "err", err)
		detail = errorDetail{Code: policy.EInternal, Message: "internal error"}
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate"`)
	}
	writeJSON(w, code, errorBody{Error: detail})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body strictly: unknown fields are refused.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" && !hasPrefix(ct, "application/json;") {
		return &policy.Error{Code: policy.EInvalid, Message: "the body must be application/json"}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return &policy.Error{Code: policy.EInvalid, Message: "the body is not valid JSON for this request: " + err.Error()}
	}
	if dec.More() {
		return &policy.Error{Code: policy.EInvalid, Message: "the body holds more than one JSON value"}
	}
	return nil
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
