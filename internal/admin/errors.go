package admin

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/tollgate/tollgate/internal/policy"
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
		return jsonError("", err)
	}
	if dec.More() {
		return &policy.Error{Code: policy.EInvalid, Message: "the body holds more than one JSON value"}
	}
	return nil
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// jsonError turns an error of encoding/json into a sentence about the input
// that names the field at fault: the text of json's own errors speaks of Go
// types ("cannot unmarshal number 1e+23 into Go value of type int64").
// field is the field a value was decoded for ("" for a whole body); a
// handler that decodes one field at a time passes each error through it.
func jsonError(field string, err error) *policy.Error {
	if pe, ok := errors.AsType[*policy.Error](err); ok {
		// A type's own UnmarshalJSON (policy.Actions) already speaks plainly.
		return &policy.Error{Code: policy.EInvalid, Field: cmp.Or(field, pe.Field), Message: pe.Message}
	}
	invalid := func(f, format string, args ...any) *policy.Error {
		return &policy.Error{Code: policy.EInvalid, Field: f, Message: fmt.Sprintf(format, args...)}
	}
	if errors.Is(err, errNull) {
		return invalid(field, "%s cannot be null; give it a value.", quoteField(field))
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		path := te.Field
		if field != "" && path != "" {
			path = field + "." + path
		} else if field != "" {
			path = field
		}
		top, _, _ := strings.Cut(path, ".")
		return invalid(top, "%s %s.", quoteField(path), wantType(te))
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		if field != "" {
			return invalid(field, "%s is not valid JSON (near character %d of its value).", quoteField(field), se.Offset)
		}
		return invalid("", "The body is not valid JSON (near character %d).", se.Offset)
	}
	if errors.Is(err, io.EOF) && field == "" {
		return invalid("", "The body is empty; send a JSON object.")
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return invalid(field, "The JSON ends before its value is complete.")
	}
	// json reports an unknown field only in its text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		if field != "" {
			name = field + "." + name
		}
		top, _, _ := strings.Cut(name, ".")
		return invalid(top, "%s is not a field of this request.", quoteField(name))
	}
	return invalid(field, "The value of %s could not be read as JSON.", quoteField(cmp.Or(field, "the body")))
}

// wantType says what a value of te's Go type must be, or, for a whole
// number too large for it, what range it must be in.
func wantType(te *json.UnmarshalTypeError) string {
	switch te.Type.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n, ok := strings.CutPrefix(te.Value, "number "); ok {
			if f, err := strconv.ParseFloat(n, 64); err == nil && f == math.Trunc(f) {
				if f < 0 {
					return fmt.Sprintf("is too small: give a whole number from %d", int64(math.MinInt64)>>(64-te.Type.Bits()))
				}
				return fmt.Sprintf("is too large: give a whole number up to %d", int64(math.MaxInt64)>>(64-te.Type.Bits()))
			}
		}
		return "must be a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "must be a whole number, not negative"
	case reflect.Float32, reflect.Float64:
		return "must be a number"
	case reflect.Bool:
		return "must be true or false"
	case reflect.String:
		return "must be text, in double quotes"
	case reflect.Slice, reflect.Array:
		return "must be a list, in square brackets"
	case reflect.Map, reflect.Struct:
		return "must be an object, in curly braces"
	case reflect.Pointer:
		return wantType(&json.UnmarshalTypeError{Value: te.Value, Type: te.Type.Elem()})
	}
	return "has the wrong type"
}

func quoteField(f string) string {
	if f == "" {
		return "The value"
	}
	return strconv.Quote(f)
}
