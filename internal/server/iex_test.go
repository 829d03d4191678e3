package server_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/policy"
	"github.com/tollgate/tollgate/internal/seal"
	"github.com/tollgate/tollgate/internal/server"
	"github.com/tollgate/tollgate/internal/store"
	"github.com/tollgate/tollgate/signing"
)

// iexSigned is a request signed by signing/testdata/iex_sign.py, an
// implementation of IEX Cloud's published algorithm in Python that shares
// no code with Tollgate.
type iexSigned struct {
	method, path, query, body string
	date, authorization       string
}

// mustSignIEX runs the independent signer for s's secret, with cred as the
// Credential, in form ("full" or "relative").
func mustSignIEX(tb testing.TB, s signer, cred, method, path, query, body, form string, at time.Time) iexSigned {
	tb.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		tb.Skip("python3 is not installed: the independent IEX signer cannot run")
	}
	date := at.UTC().Format(signing.DateFormat)
	cmd := exec.Command(python, "../../signing/testdata/iex_sign.py", "--secret", string(s.secret), "--pk", cred,
		"--method", method, "--host", "api.tollgate.test", "--path", path, "--query", query, "--date", date, "--body", body, "--form", form)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		tb.Fatalf("iex_sign.py: %v: %s", err, stderr.String())
	}
	var out struct {
		Date          string `json:"x_iex_date"`
		Authorization string `json:"authorization"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		tb.Fatalf("iex_sign.py printed %q: %v", raw, err)
	}
	return iexSigned{method: method, path: path, query: query, body: body, date: out.Date, authorization: out.Authorization}
}

// envoy is the request as Envoy would send it to Tollgate, reading the
// dataset s may read.
func (r iexSigned) envoy() envoyRequest {
	full := r.path
	if r.query != "" {
		full += "?" + r.query
	}
	return envoyRequest{Method: r.method, Path: full, Headers: hdr("authorization", r.authorization, signing.IEXDateHeader, r.date),
		Ext: ext("api", "data", "dataset", "prices", "tier", "core", "action", "read")}
}

// mustAnswerBody is mustAnswer for a request whose body Envoy forwards.
func mustAnswerBody(tb testing.TB, s *testServer, r envoyRequest, body string) answer {
	tb.Helper()
	cr := r.proto()
	cr.GetAttributes().GetRequest().GetHttp().RawBody = []byte(body)
	return answerOf(tb, s.MustCheck(tb, cr))
}

// TestIEXSignedThroughServer sends requests signed by the independent
// Python signer, in both reference clients' forms, through the real gRPC
// server on Postgres: accepted as signed, refused when anything signed is
// changed, when old, and when sent again.
func TestIEXSignedThroughServer(t *testing.T) {
	t.Parallel()
	f := MustSeed(t, store.Postgres)
	key := bytes.Repeat([]byte{0x3c}, seal.KeySize)
	box, err := seal.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	s := MustStartServer(t, f.URL, func(c *server.Config) { c.Signing.EncryptionKey = key })

	cases := map[string]struct {
		form   string
		method string
		path   string
		noTok  bool          // the token only in the Credential, not in ?token=
		body   string        // signed and forwarded
		at     time.Duration // signing time less now
		cred   func(s, other signer) string
		change func(r *iexSigned)
		want   policy.DenyCode
	}{
		"IEX's Python sample's form":                {form: "full"},
		"IEXSharp's form":                           {form: "relative"},
		"the token only in the Credential":          {form: "full", noTok: true},
		"a forwarded body, IEXSharp's form":         {form: "relative", method: "POST", body: `{"symbol":"AAPL"}`},
		"the path changed":                          {form: "full", change: func(r *iexSigned) { r.path = "/v1/prices/MSFT" }, want: policy.CodeSignatureInvalid},
		"the path changed, IEXSharp's form":         {form: "relative", change: func(r *iexSigned) { r.path = "/v1/prices/MSFT" }, want: policy.CodeSignatureInvalid},
		"the query changed":                         {form: "full", change: func(r *iexSigned) { r.query += "&range=5y" }, want: policy.CodeSignatureInvalid},
		"the query changed, IEXSharp's form":        {form: "relative", change: func(r *iexSigned) { r.query = "range=5y&" + r.query }, want: policy.CodeSignatureInvalid},
		"the date changed":                          {form: "full", change: func(r *iexSigned) { r.date = bumpSecond(t, r.date) }, want: policy.CodeSignatureInvalid},
		"the body changed":                          {form: "full", method: "POST", body: `{"symbol":"AAPL"}`, change: func(r *iexSigned) { r.body = `{"symbol":"MSFT"}` }, want: policy.CodeSignatureInvalid},
		"the Credential names another token":        {form: "full", cred: func(_, other signer) string { return other.Value }, want: policy.CodeSignatureInvalid},
		"signed ten minutes ago":                    {form: "full", at: -10 * time.Minute, want: policy.CodeSignatureExpired},
		"signed ten minutes ahead, IEXSharp's form": {form: "relative", at: 10 * time.Minute, want: policy.CodeSignatureExpired},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sg, other := mustSigner(t, f, box, nil), mustSigner(t, f, box, nil)
			query := "token=" + sg.Value
			if c.noTok {
				query = ""
			}
			cred := sg.Value
			if c.cred != nil {
				cred = c.cred(sg, other)
			}
			r := mustSignIEX(t, sg, cred, cmp.Or(c.method, "GET"), cmp.Or(c.path, "/v1/prices/AAPL"), query, c.body, c.form, time.Now().Add(c.at))
			if c.change != nil {
				c.change(&r)
			}
			got := mustAnswerBody(t, s, r.envoy(), r.body)
			if got.code != c.want {
				t.Fatalf("got %+v, want code %q", got, c.want)
			}
			if c.want != "" && got.status != 401 {
				t.Fatalf("got status %d, want 401", got.status)
			}
		})
	}

	t.Run("a replay", func(t *testing.T) {
		t.Parallel()
		sg := mustSigner(t, f, box, nil)
		for _, form := range []string{"full", "relative"} {
			r := mustSignIEX(t, sg, sg.Value, "GET", "/v1/prices/AAPL", "token="+sg.Value, "", form, time.Now())
			if got := mustAnswer(t, s, r.envoy()); got.code != "" {
				t.Fatalf("%s, the original: got %+v, want allowed", form, got)
			}
			if got := mustAnswer(t, s, r.envoy()); got.code != policy.CodeSignatureReplayed {
				t.Fatalf("%s, again: got %+v, want %q", form, got, policy.CodeSignatureReplayed)
			}
		}
	})
}

// bumpSecond moves an x-iex-date one second on, within the skew.
func bumpSecond(tb testing.TB, date string) string {
	tb.Helper()
	d, err := time.Parse(signing.DateFormat, date)
	if err != nil {
		tb.Fatal(err)
	}
	return d.Add(time.Second).Format(signing.DateFormat)
}
