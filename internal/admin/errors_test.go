package admin_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/admin"
	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/store"
)

// goSpeak matches what a person should never read in an error: Go's
// names for its types and functions, and json's own prefix.
var goSpeak = regexp.MustCompile(`json:|Go value|Go struct|netip|ParsePrefix|ParseAddr|int64|\bstruct\b|map\[|\[\]string|idna:`)

// mustBeSentence fails when a message is not a sentence a person can read:
// it must start with a capital letter or a quoted value, end with a full
// stop, and speak no Go.
func mustBeSentence(t *testing.T, what, msg string) {
	t.Helper()
	if msg == "" || !regexp.MustCompile(`^([A-Z]|")`).MatchString(msg) || !strings.HasSuffix(msg, ".") {
		t.Errorf("%s: message %q is not a sentence (a capital or a quoted value first, a full stop last)", what, msg)
	}
	if m := goSpeak.FindString(msg); m != "" {
		t.Errorf("%s: message %q speaks Go (%q)", what, msg, m)
	}
	if regexp.MustCompile(`"\\"|""[^"]`).MatchString(msg) {
		t.Errorf("%s: message %q quotes a value twice", what, msg)
	}
}

// TestValidationMessages sends the Tokens and Teammates APIs bad values and
// checks that each refusal names its field and says what is wrong in a
// sentence about the input.
func TestValidationMessages(t *testing.T) {
	f := newFixture(t, store.SQLite)
	for name, tc := range map[string]struct {
		path, body, field string
	}{
		"bad cidr":           {"/v1/tokens", `{"allowed_ips":["10.0.0.300/8"]}`, "allowed_ips"},
		"bad address":        {"/v1/tokens", `{"allowed_ips":["example.com"]}`, "allowed_ips"},
		"zone":               {"/v1/tokens", `{"allowed_ips":["fe80::1%eth0"]}`, "allowed_ips"},
		"bad domain":         {"/v1/tokens", `{"allowed_domains":["ftp://x.com"]}`, "allowed_domains"},
		"domain space":       {"/v1/tokens", `{"allowed_domains":["x .com"]}`, "allowed_domains"},
		"domain idna":        {"/v1/tokens", `{"allowed_domains":["a\u200d.example"]}`, "allowed_domains"},
		"import + maps":      {"/v1/tokens", `{"allowed_apis":["import","maps"]}`, "allowed_apis"},
		"unknown api":        {"/v1/tokens", `{"allowed_apis":["teleport"]}`, "allowed_apis"},
		"negative":           {"/v1/tokens", `{"credit_limit":-1}`, "credit_limit"},
		"bad actions":        {"/v1/tokens", `{"datasets":{"sales":["fly"]}}`, "datasets"},
		"no actions":         {"/v1/tokens", `{"datasets":{"sales":[]}}`, "datasets"},
		"empty dataset":      {"/v1/tokens", `{"datasets":{"":["read"]}}`, "datasets"},
		"bad dataset":        {"/v1/tokens", `{"datasets":{"a b":["read"]}}`, "datasets"},
		"empty table":        {"/v1/tokens", `{"grants":[{"connection":"pg","type":"table","source":""}]}`, "grants"},
		"bad table":          {"/v1/tokens", `{"grants":[{"connection":"pg","type":"table","source":"a b"}]}`, "grants"},
		"empty connection":   {"/v1/tokens", `{"grants":[{"connection":"","type":"all"}]}`, "grants"},
		"bad connection":     {"/v1/tokens", `{"grants":[{"connection":"a b","type":"all"}]}`, "grants"},
		"empty query":        {"/v1/tokens", `{"grants":[{"connection":"pg","type":"query","source":""}]}`, "grants"},
		"all with source":    {"/v1/tokens", `{"grants":[{"connection":"pg","type":"all","source":"t"}]}`, "grants"},
		"grant type":         {"/v1/tokens", `{"grants":[{"connection":"pg","type":"view","source":"t"}]}`, "grants"},
		"rate":               {"/v1/tokens", `{"rate_limit":{"rps":0}}`, "rate_limit"},
		"empty nickname":     {"/v1/tokens", `{"nickname":" "}`, "nickname"},
		"control nickname":   {"/v1/tokens", `{"nickname":"a\tb"}`, "nickname"},
		"kind":               {"/v1/tokens", `{"kind":"public"}`, "kind"},
		"email":              {"/v1/users", `{"email":"nope"}`, "email"},
		"role":               {"/v1/users", `{"email":"x@acme.test","role":"owner"}`, "role"},
		"email a number":     {"/v1/users", `{"email":5}`, "email"},
		"role a list":        {"/v1/users", `{"email":"x@acme.test","role":["admin"]}`, "role"},
		"unknown user field": {"/v1/users", `{"email":"x@acme.test","colour":"red"}`, "colour"},
		"broken JSON":        {"/v1/users", `{"email":`, ""},
		"syntax error":       {"/v1/users", `{"email" "x"}`, ""},
		"not an object":      {"/v1/users", `["x"]`, ""},
	} {
		r := f.admin.do("POST", tc.path, tc.body).want(t, name, 400, "invalid")
		e, _ := r.body["error"].(map[string]any)
		if got, _ := e["field"].(string); got != tc.field {
			t.Errorf("%s: field %q, want %q (%v)", name, got, tc.field, e)
		}
		msg, _ := e["message"].(string)
		mustBeSentence(t, name, msg)
	}
}

// TestJSONError checks the sentences for errors of decoding one field's
// value, as a handler that decodes field by field gets them.
func TestJSONError(t *testing.T) {
	var limit *int64
	var enabled bool
	var acts policy.Actions
	var small int32
	for name, tc := range map[string]struct {
		field string
		err   error
		want  string // a substring of the message
	}{
		"too large": {"credit_limit", json.Unmarshal([]byte(`1e+23`), &limit), "too large: give a whole number up to 9223372036854775807"},
		"too small": {"n", json.Unmarshal([]byte(`-1e+12`), &small), "too small: give a whole number from -2147483648"},
		"fraction":  {"credit_limit", json.Unmarshal([]byte(`1.5`), &limit), "must be a whole number"},
		"text":      {"credit_limit", json.Unmarshal([]byte(`"10"`), &limit), "must be a whole number"},
		"bool":      {"enabled", json.Unmarshal([]byte(`"yes"`), &enabled), "must be true or false"},
		"syntax":    {"enabled", json.Unmarshal([]byte(`tru`), &enabled), "not valid JSON"},
		"actions":   {"datasets", json.Unmarshal([]byte(`"read"`), &acts), "list of names"},
		"nested": {"rate_limit", json.Unmarshal([]byte(`{"rps":"x"}`), &struct {
			RPS int64 `json:"rps"`
		}{}), `"rate_limit.rps" must be a whole number`},
	} {
		if tc.err == nil {
			t.Fatalf("%s: decoding gave no error", name)
		}
		code, field, msg := admin.JSONError(tc.field, tc.err)
		if code != "invalid" || field != tc.field {
			t.Errorf("%s: code %q field %q, want invalid and %q", name, code, field, tc.field)
		}
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s: message %q, want one containing %q", name, msg, tc.want)
		}
		mustBeSentence(t, name, msg)
	}
}
