// Package examples_test checks examples/sign.sh, the openssl signing example
// of docs/signing.md, against the Go signing package, `tollgate sign` and
// the test vectors in signing/testdata/vectors.json.
package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/cli"
	"github.com/tollgate/tollgate/signing"
)

// signInput is a request to sign, as tollgate sign's flags describe it.
type signInput struct {
	Name       string   `json:"name"`
	Secret     string   `json:"secret"`
	Credential string   `json:"credential"`
	Date       string   `json:"date"`
	Method     string   `json:"method"`
	URL        string   `json:"url"`
	Headers    []string `json:"headers"`
	Body       string   `json:"body"`
	SignOutput string   `json:"sign_output"` // the expected output, for vectors
}

// args returns the flags of tollgate sign and sign.sh, writing the body to
// a file if there is one.
func (in signInput) args(tb testing.TB) []string {
	tb.Helper()
	args := []string{"--token", in.Credential, "--secret", in.Secret, "--method", in.Method, "--url", in.URL, "--date", in.Date}
	for _, h := range in.Headers {
		args = append(args, "--header", h)
	}
	if in.Body != "" {
		f := filepath.Join(tb.TempDir(), "body")
		if err := os.WriteFile(f, []byte(in.Body), 0o600); err != nil {
			tb.Fatal(err)
		}
		args = append(args, "--body-file", f)
	}
	return args
}

func mustReadVectors(tb testing.TB) []signInput {
	tb.Helper()
	data, err := os.ReadFile("../signing/testdata/vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var file struct{ Vectors []signInput }
	if err := json.Unmarshal(data, &file); err != nil {
		tb.Fatal(err)
	}
	return file.Vectors
}

// runScript runs sign.sh with args and returns its output.
func runScript(tb testing.TB, args []string) string {
	tb.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		tb.Skip("openssl is not installed: sign.sh cannot be checked")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		tb.Skip("bash is not installed: sign.sh cannot be checked")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bash, append([]string{"sign.sh"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("sign.sh %q: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

// runCLI runs tollgate sign with args and returns its output.
func runCLI(tb testing.TB, args []string) string {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), append([]string{"sign"}, args...), cli.Env{
		Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }, Version: "test"})
	if err != nil {
		tb.Fatalf("tollgate sign %q: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

// goSign signs the request with signing.SignHTTP and formats the headers
// as tollgate sign prints them (which upper-cases the method).
func goSign(tb testing.TB, in signInput) string {
	tb.Helper()
	var body io.Reader
	if in.Body != "" {
		body = strings.NewReader(in.Body)
	}
	req, err := http.NewRequest(strings.ToUpper(in.Method), in.URL, body)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, h := range in.Headers {
		k, v, _ := strings.Cut(h, ":")
		k = strings.ToLower(strings.TrimSpace(k))
		req.Header.Add(k, strings.TrimSpace(v))
		names = append(names, k)
	}
	now, err := time.Parse(signing.DateFormat, in.Date)
	if err != nil {
		tb.Fatal(err)
	}
	if err := signing.SignHTTP(req, in.Credential, []byte(in.Secret), now, names...); err != nil {
		tb.Fatal(err)
	}
	var b strings.Builder
	for _, name := range []string{signing.DateHeader, signing.ContentHeader, "Authorization"} {
		fmt.Fprintf(&b, "%s: %s\n", name, req.Header.Get(name))
	}
	return b.String()
}

func TestSignScriptVectors(t *testing.T) {
	vectors := mustReadVectors(t)
	if len(vectors) < 2 {
		t.Fatalf("got %d vectors, want at least 2", len(vectors))
	}
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			args := v.args(t)
			script := runScript(t, args)
			if script != v.SignOutput {
				t.Errorf("sign.sh:\ngot  %q\nwant %q", script, v.SignOutput)
			}
			if got := goSign(t, v); got != script {
				t.Errorf("signing.SignHTTP:\ngot  %q\nwant %q (sign.sh)", got, script)
			}
			if got := runCLI(t, args); got != script {
				t.Errorf("tollgate sign:\ngot  %q\nwant %q (sign.sh)", got, script)
			}
		})
	}
}

// TestSignScriptAgrees covers what the vectors do not: the script must
// canonicalize every query and header as the Go package does.
func TestSignScriptAgrees(t *testing.T) {
	const secret = "tss_0123456789ABCDEFGHIJabcdefghij0123456789"
	cases := map[string]signInput{
		"no path":                 {URL: "https://api.example.com"},
		"root path, empty query":  {URL: "https://api.example.com/?"},
		"fragment dropped":        {URL: "https://api.example.com/v1/prices?symbol=AAPL#top"},
		"userinfo dropped":        {URL: "https://user:pw@api.example.com/v1/prices"},
		"lower-case method":       {Method: "delete", URL: "https://api.example.com/v1/watchlists/7"},
		"escapes and separators":  {URL: "https://api.example.com/v1/x?%7e=%7E&a=1&&a=1&=&k=%2b%2B+&e=a=b=c&s=a;b"},
		"undecodable escapes":     {URL: "https://api.example.com/v1/x?p=50%&q=%zz%41&%g=1&r=%4"},
		"bytes above 0x7f":        {URL: "https://api.example.com/v1/x?b=%FF%fe&u=%C3%BC&n=%00"},
		"reserved characters":     {URL: "https://api.example.com/v1/x?r=!*'()[]@$,/:?"},
		"sort by key then value":  {URL: "https://api.example.com/v1/x?a-b=1&a=2&a.b=3&a_b=4&A=5&a=1&~=6&0=7"},
		"repeated header":         {URL: "https://api.example.com/v1/x", Headers: []string{"X-Trace: a", "x-trace:  b  c ", "Accept: application/json"}},
		"date header in --header": {URL: "https://api.example.com/v1/x", Headers: []string{"X-Tollgate-Date: 19990101T000000Z"}},
		"binary body":             {Method: "PUT", URL: "https://api.example.com/v1/blobs/1", Body: "\x00\x01\xff\n\r\n end", Headers: []string{"content-type: application/octet-stream"}},
		"publishable credential":  {Credential: "pk_b6g1a8jnqDEWesV2jQxsrMmO2Yq4J1qa1hSaRs", URL: "http://localhost:8080/v1/prices/ACME"},
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if in.Method == "" {
				in.Method = "GET"
			}
			if in.Credential == "" {
				in.Credential = "tok_d1sBq0KTuzMEX0to"
			}
			in.Secret, in.Date = secret, "20261122T063000Z"
			args := in.args(t)
			script := runScript(t, args)
			if got := goSign(t, in); got != script {
				t.Errorf("signing.SignHTTP:\ngot  %q\nwant %q (sign.sh)", got, script)
			}
			if got := runCLI(t, args); got != script {
				t.Errorf("tollgate sign:\ngot  %q\nwant %q (sign.sh)", got, script)
			}
		})
	}
}
