package signing_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/signing"
)

// vector is one entry of testdata/vectors.json, the test vectors that
// docs/signing.md shows and examples/sign.sh is checked against.
type vector struct {
	Name             string   `json:"name"`
	Secret           string   `json:"secret"`
	Credential       string   `json:"credential"`
	Date             string   `json:"date"`
	Method           string   `json:"method"`
	URL              string   `json:"url"`
	Headers          []string `json:"headers"` // as given to tollgate sign --header
	Body             string   `json:"body"`
	CanonicalRequest string   `json:"canonical_request"`
	StringToSign     string   `json:"string_to_sign"`
	SigningKey       string   `json:"signing_key"`
	Signature        string   `json:"signature"`
	Authorization    string   `json:"authorization"`
	SignOutput       string   `json:"sign_output"`
}

func mustReadVectors(tb testing.TB) []vector {
	tb.Helper()
	data, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var file struct{ Vectors []vector }
	if err := json.Unmarshal(data, &file); err != nil {
		tb.Fatalf("testdata/vectors.json: %v", err)
	}
	if len(file.Vectors) < 2 {
		tb.Fatalf("got %d vectors, want at least 2", len(file.Vectors))
	}
	return file.Vectors
}

// mustVectorRequest builds the vector's request the way tollgate sign does,
// unsigned.
func mustVectorRequest(tb testing.TB, v vector) (*http.Request, []string) {
	tb.Helper()
	var body io.Reader
	if v.Body != "" {
		body = strings.NewReader(v.Body)
	}
	req, err := http.NewRequest(v.Method, v.URL, body)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, h := range v.Headers {
		k, val, _ := strings.Cut(h, ":")
		k = strings.ToLower(strings.TrimSpace(k))
		req.Header.Add(k, strings.TrimSpace(val))
		names = append(names, k)
	}
	return req, names
}

func mustParseDate(tb testing.TB, s string) time.Time {
	tb.Helper()
	t, err := time.Parse(signing.DateFormat, s)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// received is what a verifier sees of an http.Request: its method, escaped
// path, raw query, headers (host from the URL) and the body's hash.
func received(tb testing.TB, req *http.Request) signing.Request {
	tb.Helper()
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			tb.Fatal(err)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	return signing.Request{
		Method: req.Method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery,
		PayloadHash: signing.HashPayload(body),
		Header: func(name string) string {
			if name == "host" {
				if req.Host != "" {
					return req.Host
				}
				return req.URL.Host
			}
			return strings.Join(req.Header.Values(name), ",")
		},
	}
}

func TestVectors(t *testing.T) {
	for _, v := range mustReadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			now := mustParseDate(t, v.Date)
			day := v.Date[:8]
			req, names := mustVectorRequest(t, v)
			if err := signing.SignHTTP(req, v.Credential, []byte(v.Secret), now, names...); err != nil {
				t.Fatal(err)
			}
			if got := req.Header.Get("Authorization"); got != v.Authorization {
				t.Errorf("SignHTTP Authorization:\ngot  %v\nwant %v", got, v.Authorization)
			}
			got := fmt.Sprintf("x-tollgate-date: %s\nx-tollgate-content-sha256: %s\nAuthorization: %s\n",
				req.Header.Get(signing.DateHeader), req.Header.Get(signing.ContentHeader), req.Header.Get("Authorization"))
			if got != v.SignOutput {
				t.Errorf("headers:\ngot  %q\nwant %q", got, v.SignOutput)
			}

			a, err := signing.ParseAuthorization(v.Authorization)
			if err != nil {
				t.Fatalf("ParseAuthorization: %v", err)
			}
			r := received(t, req)
			if got := signing.CanonicalRequest(r, a.SignedHeaders); got != v.CanonicalRequest {
				t.Errorf("canonical request:\ngot  %q\nwant %q", got, v.CanonicalRequest)
			}
			// From here on, only the vector's own text is used.
			if got := signing.StringToSign(v.Date, day, v.CanonicalRequest); got != v.StringToSign {
				t.Errorf("string to sign:\ngot  %q\nwant %q", got, v.StringToSign)
			}
			key := signing.Key([]byte(v.Secret), day)
			if got := hex.EncodeToString(key); got != v.SigningKey {
				t.Errorf("signing key: got %v, want %v", got, v.SigningKey)
			}
			sig := signing.Signature(key, v.StringToSign)
			if got := hex.EncodeToString(sig[:]); got != v.Signature {
				t.Errorf("signature: got %v, want %v", got, v.Signature)
			}
			signed := signing.Sign(r, v.Credential, []byte(v.Secret), now, a.SignedHeaders)
			if got := signed.String(); got != v.Authorization {
				t.Errorf("Sign:\ngot  %v\nwant %v", got, v.Authorization)
			}
			if err := signing.Verify(a, r, []byte(v.Secret), now, 5*time.Minute); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

const (
	testSig  = "0123456789abcdef00112233445566778899aabbccddeeff0f1e2d3c4b5a6978"
	testAuth = "TOLLGATE-HMAC-SHA256 Credential=tok_d1sBq0KTuzMEX0to/20261122/tollgate_request, SignedHeaders=host;x-tollgate-date, Signature=" + testSig
)

func mustSig(tb testing.TB, s string) [32]byte {
	tb.Helper()
	var b [32]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestParseAuthorization(t *testing.T) {
	base := signing.Authorization{Credential: "tok_d1sBq0KTuzMEX0to", Day: "20261122",
		SignedHeaders: []string{"host", "x-tollgate-date"}, Signature: mustSig(t, testSig)}
	with := func(change func(*signing.Authorization)) signing.Authorization {
		a := base
		a.SignedHeaders = slices.Clone(base.SignedHeaders)
		change(&a)
		return a
	}
	replace := func(old, new string) string { return strings.Replace(testAuth, old, new, 1) }
	const (
		cred   = "Credential=tok_d1sBq0KTuzMEX0to/20261122/tollgate_request"
		signed = "SignedHeaders=host;x-tollgate-date"
		sigPt  = "Signature=" + testSig
	)
	cases := map[string]struct {
		in      string
		want    signing.Authorization
		wantErr string // a part of the message; "" when valid
	}{
		"valid":                   {in: testAuth, want: base},
		"no spaces after commas":  {in: "TOLLGATE-HMAC-SHA256 " + cred + "," + signed + "," + sigPt, want: base},
		"parts in another order":  {in: "TOLLGATE-HMAC-SHA256 " + sigPt + ", " + cred + ", " + signed, want: base},
		"extra spaces":            {in: "TOLLGATE-HMAC-SHA256 " + cred + " ,   " + signed + " ,\t" + sigPt + " ", want: base},
		"algorithm in lower case": {in: replace("TOLLGATE-HMAC-SHA256", "tollgate-hmac-sha256"), want: base},
		"upper-case hex":          {in: replace(testSig, strings.ToUpper(testSig)), want: base},
		"publishable credential": {in: replace("tok_d1sBq0KTuzMEX0to", "pk_b6g1a8jnqDEWesV2jQxsrMmO2Yq4J1qa1hSaRs"),
			want: with(func(a *signing.Authorization) { a.Credential = "pk_b6g1a8jnqDEWesV2jQxsrMmO2Yq4J1qa1hSaRs" })},
		"more signed headers": {in: replace(signed, "SignedHeaders=content-type;host;x-client;x-tollgate-content-sha256;x-tollgate-date"),
			want: with(func(a *signing.Authorization) {
				a.SignedHeaders = []string{"content-type", "host", "x-client", "x-tollgate-content-sha256", "x-tollgate-date"}
			})},

		"empty":                    {in: "", wantErr: `must start with "TOLLGATE-HMAC-SHA256 "`},
		"bearer token":             {in: "Bearer pk_b6g1a8jnqDEWesV2jQxsrMmO2Yq4J1qa1hSaRs", wantErr: `must start with "TOLLGATE-HMAC-SHA256 "`},
		"wrong algorithm":          {in: replace("TOLLGATE-HMAC-SHA256", "AWS4-HMAC-SHA256"), wantErr: `must start with "TOLLGATE-HMAC-SHA256 "`},
		"algorithm without space":  {in: replace("SHA256 ", "SHA256\t"), wantErr: "must start with"},
		"algorithm alone":          {in: "TOLLGATE-HMAC-SHA256", wantErr: "must start with"},
		"nothing after algorithm":  {in: "TOLLGATE-HMAC-SHA256 ", wantErr: "part without '='"},
		"missing signature":        {in: "TOLLGATE-HMAC-SHA256 " + cred + ", " + signed, wantErr: "needs Credential, SignedHeaders and Signature"},
		"missing credential":       {in: "TOLLGATE-HMAC-SHA256 " + signed + ", " + sigPt, wantErr: "needs Credential, SignedHeaders and Signature"},
		"missing signed headers":   {in: "TOLLGATE-HMAC-SHA256 " + cred + ", " + sigPt, wantErr: "needs Credential, SignedHeaders and Signature"},
		"colon for equals":         {in: replace("Signature=", "Signature: "), wantErr: "part without '='"},
		"no commas":                {in: "TOLLGATE-HMAC-SHA256 " + cred + " " + signed + " " + sigPt, wantErr: "needs Credential, SignedHeaders and Signature"},
		"trailing comma":           {in: testAuth + ",", wantErr: "part without '='"},
		"unknown part":             {in: testAuth + ", Region=us-east-1", wantErr: `unknown part "Region"`},
		"lower-case part name":     {in: replace("Signature=", "signature="), wantErr: `unknown part "signature"`},
		"repeated signature":       {in: testAuth + ", " + sigPt, wantErr: "repeats Signature"},
		"repeated credential":      {in: testAuth + ", " + cred, wantErr: "repeats Credential"},
		"scope without service":    {in: replace("/20261122/tollgate_request", "/20261122"), wantErr: "Credential must be <token id or publishable token>/<YYYYMMDD>/tollgate_request"},
		"scope with wrong service": {in: replace("tollgate_request", "s3"), wantErr: "Credential must be"},
		"scope with extra part":    {in: replace("/tollgate_request", "/us-east-1/tollgate_request"), wantErr: "Credential must be"},
		"empty credential":         {in: replace("tok_d1sBq0KTuzMEX0to", ""), wantErr: "Credential must be"},
		"date with dashes":         {in: replace("20261122", "2026-11-22"), wantErr: "date must be YYYYMMDD"},
		"date too short":           {in: replace("20261122", "2026112"), wantErr: "date must be YYYYMMDD"},
		"month 13":                 {in: replace("20261122", "20261322"), wantErr: "date must be YYYYMMDD"},
		"full timestamp as date":   {in: replace("20261122", "20261122T063000Z"), wantErr: "date must be YYYYMMDD"},
		"empty signed headers":     {in: replace(signed, "SignedHeaders="), wantErr: "SignedHeaders is empty"},
		"unsorted signed headers":  {in: replace(signed, "SignedHeaders=x-tollgate-date;host"), wantErr: "sorted and unique"},
		"duplicate signed header":  {in: replace(signed, "SignedHeaders=host;host;x-tollgate-date"), wantErr: "sorted and unique"},
		"upper-case signed header": {in: replace(signed, "SignedHeaders=Host;x-tollgate-date"), wantErr: "lower-case header names separated by ';'"},
		"empty signed header":      {in: replace(signed, "SignedHeaders=host;;x-tollgate-date"), wantErr: "lower-case header names"},
		"signed headers with commas": {in: replace(signed, "SignedHeaders=host,x-tollgate-date"),
			wantErr: "part without '='"},
		"signed header with colon": {in: replace(signed, "SignedHeaders=host:;x-tollgate-date"), wantErr: "lower-case header names"},
		"host not signed":          {in: replace(signed, "SignedHeaders=x-tollgate-date"), wantErr: "must include host and x-tollgate-date"},
		"date not signed":          {in: replace(signed, "SignedHeaders=content-type;host"), wantErr: "must include host and x-tollgate-date"},
		"bad hex":                  {in: replace(testSig, "g"+testSig[1:]), wantErr: "Signature must be 64 hex digits"},
		"signature too short":      {in: replace(testSig, testSig[:63]), wantErr: "Signature must be 64 hex digits"},
		"signature too long":       {in: replace(testSig, testSig+"00"), wantErr: "Signature must be 64 hex digits"},
		"signature in base64":      {in: replace(testSig, "ASNFZ4mrze8AESIzRFVmd4iZqrvM3e7/Dx4tPEtaaXg="), wantErr: "Signature must be 64 hex digits"},
		"empty signature":          {in: replace(testSig, ""), wantErr: "Signature must be 64 hex digits"},
		"too long":                 {in: replace("tok_d1sBq0KTuzMEX0to", strings.Repeat("x", 5000)), wantErr: "too long"},
		// A client that put a space where '=' goes: the unknown part's
		// name must not quote the signature that follows it.
		"space for equals before the signature": {in: replace("Signature=", "Signature ") + "=", wantErr: "unknown part"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := signing.ParseAuthorization(c.in)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("got %+v, want %+v", got, c.want)
				}
				if back, err := signing.ParseAuthorization(got.String()); err != nil || !reflect.DeepEqual(back, got) {
					t.Errorf("String() = %q re-parses to %+v, %v", got.String(), back, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v, want an error containing %q", got, c.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.wantErr) {
				t.Errorf("got %q, want it to contain %q", msg, c.wantErr)
			}
			if leak := quotesSignature(msg, testSig); leak != "" {
				t.Errorf("the message %q quotes the signature (%q)", msg, leak)
			}
		})
	}
}

// quotesSignature returns a run of 16 or more characters of sig (in either
// case) found in msg, or "".
func quotesSignature(msg, sig string) string {
	msg = strings.ToLower(msg)
	for i := 0; i+16 <= len(sig); i++ {
		if strings.Contains(msg, sig[i:i+16]) {
			return sig[i : i+16]
		}
	}
	return ""
}

func TestIsSigned(t *testing.T) {
	for in, want := range map[string]bool{
		testAuth: true, "tollgate-hmac-sha256 x": true, "TOLLGATE-HMAC-SHA256": false, "TOLLGATE-HMAC-SHA256 ": true,
		"Bearer pk_x": false, "": false, "TOLLGATE-HMAC-SHA256x": false, "TOLLGATE-HMAC-SHA1 x": false,
	} {
		if got := signing.IsSigned(in); got != want {
			t.Errorf("IsSigned(%q): got %v, want %v", in, got, want)
		}
	}
}

func TestCanonicalQuery(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"empty":                     {"", ""},
		"one":                       {"a=1", "a=1"},
		"sorted by key":             {"symbol=AAPL&range=1d&fields=open", "fields=open&range=1d&symbol=AAPL"},
		"repeated key by value":     {"tag=b&tag=a&tag=c", "tag=a&tag=b&tag=c"},
		"repeated pair kept":        {"a=1&a=1", "a=1&a=1"},
		"key before longer key":     {"a-b=1&a=2", "a=2&a-b=1"},
		"sorted after encoding":     {"%7E=1&~=2&b=3", "b=3&~=1&~=2"},
		"empty value":               {"a=&b=1", "a=&b=1"},
		"key without equals":        {"flag&a=1", "a=1&flag="},
		"empty key":                 {"=v&a=1", "=v&a=1"},
		"empty pairs skipped":       {"&&a=1&&", "a=1"},
		"only separators":           {"&&&", ""},
		"equals in value":           {"a=b=c", "a=b%3Dc"},
		"plus is a space":           {"q=net+income", "q=net%20income"},
		"%20 is a space":            {"q=net%20income", "q=net%20income"},
		"%2B is a plus":             {"n=%2B1", "n=%2B1"},
		"lower-case escape":         {"n=%2b1&s=%7e", "n=%2B1&s=~"},
		"escaped unreserved":        {"%61=%41%2D%5F%2E%7E", "a=A-_.~"},
		"unreserved kept":           {"k=AZaz09-_.~", "k=AZaz09-_.~"},
		"reserved encoded":          {"k=!*'();:@$,/?[]", "k=%21%2A%27%28%29%3B%3A%40%24%2C%2F%3F%5B%5D"},
		"raw unicode":               {"city=Zürich", "city=Z%C3%BCrich"},
		"escaped unicode":           {"city=Z%C3%BCrich", "city=Z%C3%BCrich"},
		"emoji":                     {"e=%F0%9F%98%80", "e=%F0%9F%98%80"},
		"invalid utf-8 byte":        {"b=%FF", "b=%FF"},
		"nul":                       {"z=%00", "z=%00"},
		"hash and percent":          {"h=%23%25", "h=%23%25"},
		"undecodable value":         {"bad=100%", "bad=100%25"},
		"undecodable escape":        {"bad=%zz", "bad=%25zz"},
		"undecodable short":         {"bad=%4", "bad=%254"},
		"undecodable keeps rest":    {"bad=a+b%zz%41", "bad=a%2Bb%25zz%2541"},
		"undecodable key":           {"%g=1", "%25g=1"},
		"key and value apart":       {"%zz=a+b", "%25zz=a%20b"},
		"semicolon not a separator": {"a=1;b=2", "a=1%3Bb%3D2"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := signing.CanonicalQuery(c.in); got != c.want {
				t.Errorf("CanonicalQuery(%q): got %v, want %v", c.in, got, c.want)
			}
		})
	}
}

func TestCanonicalRequestCollapsesWhitespace(t *testing.T) {
	h := map[string]string{"host": "api.example.com", "x-a": "  one \t two\n\r three  ", "x-b": "", "x-tollgate-date": "20261122T063000Z"}
	r := signing.Request{Method: "GET", Header: func(n string) string { return h[n] }, PayloadHash: signing.UnsignedPayload}
	got := signing.CanonicalRequest(r, []string{"host", "x-a", "x-b", "x-tollgate-date"})
	want := "GET\n/\n\nhost:api.example.com\nx-a:one two three\nx-b:\nx-tollgate-date:20261122T063000Z\n\nhost;x-a;x-b;x-tollgate-date\nUNSIGNED-PAYLOAD"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestVerify signs a request, changes it on the way, and verifies what
// arrives.
func TestVerify(t *testing.T) {
	secret := []byte("tss_0123456789ABCDEFGHIJabcdefghij0123456789")
	signedAt := time.Date(2026, 11, 22, 6, 30, 0, 0, time.UTC)
	const skew = 5 * time.Minute
	newReq := func(tb testing.TB) *http.Request {
		req, err := http.NewRequest("POST", "https://api.example.com/v1/orders?dry_run=true&n=1", strings.NewReader(`{"qty":10}`))
		if err != nil {
			tb.Fatal(err)
		}
		req.Header.Set("X-Client", "acme/1.0")
		req.Header.Set("X-Unsigned", "free")
		if err := signing.SignHTTP(req, "tok_d1sBq0KTuzMEX0to", secret, signedAt, "x-client"); err != nil {
			tb.Fatal(err)
		}
		return req
	}
	cases := map[string]struct {
		change      func(r *signing.Request, req *http.Request)
		now         time.Time
		wantProblem signing.Problem // 0 = verifies
		wantMsg     string
	}{
		"as signed":               {},
		"unsigned header changed": {change: func(_ *signing.Request, req *http.Request) { req.Header.Set("X-Unsigned", "other") }},
		"signed header re-spaced": {change: func(_ *signing.Request, req *http.Request) { req.Header.Set("X-Client", "  acme/1.0 ") }},
		"query reordered":         {change: func(r *signing.Request, _ *http.Request) { r.RawQuery = "n=1&dry_run=true" }},
		"query re-encoded":        {change: func(r *signing.Request, _ *http.Request) { r.RawQuery = "dry%5Frun=%74rue&n=1" }},
		"method changed":          {change: func(r *signing.Request, _ *http.Request) { r.Method = "PUT" }, wantProblem: signing.Invalid, wantMsg: "does not match"},
		"path changed":            {change: func(r *signing.Request, _ *http.Request) { r.Path = "/v1/orders/" }, wantProblem: signing.Invalid},
		"path case changed":       {change: func(r *signing.Request, _ *http.Request) { r.Path = "/V1/orders" }, wantProblem: signing.Invalid},
		"query value changed":     {change: func(r *signing.Request, _ *http.Request) { r.RawQuery = "dry_run=false&n=1" }, wantProblem: signing.Invalid},
		"query parameter added":   {change: func(r *signing.Request, _ *http.Request) { r.RawQuery += "&n=2" }, wantProblem: signing.Invalid},
		"query parameter dropped": {change: func(r *signing.Request, _ *http.Request) { r.RawQuery = "n=1" }, wantProblem: signing.Invalid},
		"signed header changed":   {change: func(_ *signing.Request, req *http.Request) { req.Header.Set("X-Client", "evil/1.0") }, wantProblem: signing.Invalid},
		"signed header dropped":   {change: func(_ *signing.Request, req *http.Request) { req.Header.Del("X-Client") }, wantProblem: signing.Invalid},
		"signed header repeated":  {change: func(_ *signing.Request, req *http.Request) { req.Header.Add("X-Client", "x") }, wantProblem: signing.Invalid},
		"host changed":            {change: func(_ *signing.Request, req *http.Request) { req.Host = "api.example.com:443" }, wantProblem: signing.Invalid},
		"content header changed": {change: func(_ *signing.Request, req *http.Request) {
			req.Header.Set(signing.ContentHeader, signing.UnsignedPayload)
		}, wantProblem: signing.Invalid},
		"body changed":             {change: func(r *signing.Request, _ *http.Request) { r.PayloadHash = signing.HashPayload([]byte(`{"qty":1000}`)) }, wantProblem: signing.Invalid},
		"body dropped":             {change: func(r *signing.Request, _ *http.Request) { r.PayloadHash = signing.HashPayload(nil) }, wantProblem: signing.Invalid},
		"date changed within skew": {change: func(_ *signing.Request, req *http.Request) { req.Header.Set(signing.DateHeader, "20261122T063001Z") }, wantProblem: signing.Invalid},
		"date on another day":      {change: func(_ *signing.Request, req *http.Request) { req.Header.Set(signing.DateHeader, "20261123T063000Z") }, now: signedAt.Add(24 * time.Hour), wantProblem: signing.Invalid, wantMsg: "is not the day of x-tollgate-date"},
		"date missing":             {change: func(_ *signing.Request, req *http.Request) { req.Header.Del(signing.DateHeader) }, wantProblem: signing.Invalid, wantMsg: "YYYYMMDDTHHMMSSZ"},
		"date in RFC 3339": {change: func(_ *signing.Request, req *http.Request) {
			req.Header.Set(signing.DateHeader, "2026-11-22T06:30:00Z")
		}, wantProblem: signing.Invalid, wantMsg: "YYYYMMDDTHHMMSSZ"},
		"exactly skew later":         {now: signedAt.Add(skew)},
		"exactly skew earlier":       {now: signedAt.Add(-skew)},
		"a second beyond skew later": {now: signedAt.Add(skew + time.Second), wantProblem: signing.Expired, wantMsg: "more than 5m0s from the server's time"},
		"a nanosecond beyond skew":   {now: signedAt.Add(skew + 1), wantProblem: signing.Expired},
		"signed in the future":       {now: signedAt.Add(-skew - time.Second), wantProblem: signing.Expired, wantMsg: "check the client's clock"},
		"server in another zone":     {now: signedAt.In(time.FixedZone("X", 5*3600))},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			req := newReq(t)
			a, err := signing.ParseAuthorization(req.Header.Get("Authorization"))
			if err != nil {
				t.Fatal(err)
			}
			r := received(t, req)
			if c.change != nil {
				c.change(&r, req)
			}
			now := c.now
			if now.IsZero() {
				now = signedAt
			}
			err = signing.Verify(a, r, secret, now, skew)
			if c.wantProblem == 0 {
				if err != nil {
					t.Fatalf("got %v, want it verified", err)
				}
				return
			}
			var e *signing.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want a *signing.Error", err)
			}
			if e.Problem != c.wantProblem {
				t.Errorf("got problem %v (%s), want %v", e.Problem, e.Message, c.wantProblem)
			}
			if !strings.Contains(e.Message, c.wantMsg) {
				t.Errorf("got %q, want it to contain %q", e.Message, c.wantMsg)
			}
			// Neither the signature sent nor the one expected is quoted.
			want := signing.Sign(r, a.Credential, secret, now, a.SignedHeaders)
			for _, sig := range []string{hex.EncodeToString(a.Signature[:]), hex.EncodeToString(want.Signature[:])} {
				if leak := quotesSignature(e.Message, sig); leak != "" {
					t.Errorf("the message %q quotes a signature (%q)", e.Message, leak)
				}
			}
		})
	}
}

func TestVerifyWithSign(t *testing.T) {
	secret := []byte("tss_0123456789ABCDEFGHIJabcdefghij0123456789")
	now := time.Date(2026, 11, 22, 23, 59, 59, 0, time.UTC)
	h := map[string]string{"host": "api.example.com", signing.DateHeader: now.Format(signing.DateFormat)}
	r := signing.Request{Method: "GET", Path: "/v1/prices/AAPL", RawQuery: "range=1d", PayloadHash: signing.HashPayload(nil),
		Header: func(n string) string { return h[n] }}
	a := signing.Sign(r, "pk_b6g1a8jnqDEWesV2jQxsrMmO2Yq4J1qa1hSaRs", secret, now, []string{"host", signing.DateHeader})
	parsed, err := signing.ParseAuthorization(a.String())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(parsed, a) {
		t.Errorf("got %+v, want %+v", parsed, a)
	}
	if err := signing.Verify(parsed, r, secret, now, time.Minute); err != nil {
		t.Errorf("got %v, want it verified", err)
	}
	// Verified just after midnight: the day comes from the date header.
	if err := signing.Verify(parsed, r, secret, now.Add(time.Second), time.Minute); err != nil {
		t.Errorf("after midnight: got %v, want it verified", err)
	}
	if err := signing.Verify(parsed, r, []byte("tss_other"), now, time.Minute); err == nil {
		t.Error("verified with another secret")
	}
	withKey := func(day string) []byte { return signing.Key(secret, day) }
	if err := signing.VerifyWithKey(parsed, r, withKey, now, time.Minute); err != nil {
		t.Errorf("VerifyWithKey: got %v, want it verified", err)
	}
}

func TestSignHTTP(t *testing.T) {
	secret := []byte("tss_0123456789ABCDEFGHIJabcdefghij0123456789")
	now := time.Date(2026, 11, 22, 6, 30, 0, 0, time.FixedZone("CET", 3600))
	req, err := http.NewRequest("PUT", "https://api.example.com/v1/watchlists/7", strings.NewReader("[1,2]"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := signing.SignHTTP(req, "tok_d1sBq0KTuzMEX0to", secret, now, "Content-Type", "host", "X-Tollgate-Date"); err != nil {
		t.Fatal(err)
	}
	if got, want := req.Header.Get(signing.DateHeader), "20261122T053000Z"; got != want {
		t.Errorf("date: got %v, want %v (UTC)", got, want)
	}
	if got, want := req.Header.Get(signing.ContentHeader), signing.HashPayload([]byte("[1,2]")); got != want {
		t.Errorf("content hash: got %v, want %v", got, want)
	}
	body, _ := io.ReadAll(req.Body)
	if string(body) != "[1,2]" {
		t.Errorf("body after signing: got %q, want it put back", body)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	a, err := signing.ParseAuthorization(req.Header.Get("Authorization"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"content-type", "host", signing.ContentHeader, signing.DateHeader}; !slices.Equal(a.SignedHeaders, want) {
		t.Errorf("signed headers: got %v, want %v", a.SignedHeaders, want)
	}
	if err := signing.Verify(a, received(t, req), secret, now, time.Minute); err != nil {
		t.Errorf("got %v, want it verified", err)
	}

	if err := signing.SignHTTP(req, "", secret, now); err == nil {
		t.Error("signed without a credential")
	}
	if err := signing.SignHTTP(req, "tok_x", nil, now); err == nil {
		t.Error("signed without a secret")
	}
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add(testAuth)
	f.Add("TOLLGATE-HMAC-SHA256 Credential=pk_b6g1a8jnqDEWesV2jQxsrMmO2Yq4J1qa1hSaRs/20261122/tollgate_request,SignedHeaders=content-type;host;x-tollgate-content-sha256;x-tollgate-date,Signature=" + strings.ToUpper(testSig))
	f.Add("tollgate-hmac-sha256 Signature=" + testSig + ", SignedHeaders=host;x-tollgate-date, Credential=a=b c/20000229/tollgate_request")
	f.Add("TOLLGATE-HMAC-SHA256 Credential=/20261122/tollgate_request, SignedHeaders=host;x-tollgate-date, Signature=")
	f.Add("TOLLGATE-HMAC-SHA256 ,,,=,==")
	f.Add("Bearer pk_b6g1a8jnqDEWesV2jQxsrMmO2Yq4J1qa1hSaRs")
	f.Add("TOLLGATE-HMAC-SHA256 Credential=\u00a0x/20261122/tollgate_request, SignedHeaders=host;x\u0085;x-tollgate-date, Signature=" + testSig + "\u2028")
	f.Fuzz(func(t *testing.T, v string) {
		a, err := signing.ParseAuthorization(v)
		if err != nil {
			return
		}
		s := a.String()
		back, err := signing.ParseAuthorization(s)
		if err != nil {
			t.Fatalf("%q parsed, but its String() %q does not: %v", v, s, err)
		}
		if !reflect.DeepEqual(back, a) {
			t.Fatalf("%q parsed to %+v, but its String() %q to %+v", v, a, s, back)
		}
		if !slices.IsSorted(a.SignedHeaders) || !slices.Contains(a.SignedHeaders, "host") || !slices.Contains(a.SignedHeaders, signing.DateHeader) {
			t.Fatalf("%q parsed with signed headers %q", v, a.SignedHeaders)
		}
	})
}

func FuzzCanonicalQuery(f *testing.F) {
	for _, s := range []string{"", "a=1", "symbol=AAPL&range=1d", "q=net+income&n=%2B1", "bad=100%&x=%zz", "=&&=", "a=b=c;d",
		"city=Z%C3%BCrich&city=Zürich", "%FF=%00", "tag=b&tag=a&tag=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := signing.CanonicalQuery(raw)
		for i := 0; i < len(got); i++ {
			c := got[i]
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~%=&", c) >= 0) {
				t.Fatalf("CanonicalQuery(%q) = %q has %q", raw, got, c)
			}
		}
		if again := signing.CanonicalQuery(got); again != got {
			t.Fatalf("CanonicalQuery(%q) = %q, but that canonicalizes to %q", raw, got, again)
		}
		pairs := strings.Split(raw, "&")
		slices.Reverse(pairs)
		if rev := signing.CanonicalQuery(strings.Join(pairs, "&")); rev != got {
			t.Fatalf("CanonicalQuery(%q) = %q, but reversed it is %q", raw, got, rev)
		}
	})
}
