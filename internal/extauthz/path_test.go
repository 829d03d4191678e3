package extauthz_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tollgate/tollgate/internal/extauthz"
)

// TestCanonicalPath is the catalogue of path spellings: each either has
// one canonical form, the one route rules match and Envoy (normalize_path,
// merge_slashes) forwards, or is refused as ambiguous.
func TestCanonicalPath(t *testing.T) {
	tests := map[string]struct {
		path string
		want string // "" means refused
	}{
		"plain":                      {"/v1/x", "/v1/x"},
		"root":                       {"/", "/"},
		"trailing slash kept":        {"/v1/x/", "/v1/x/"},
		"doubled slash merged":       {"//v1//x", "/v1/x"},
		"many slashes merged":        {"/v1////x///", "/v1/x/"},
		"dot segment":                {"/v1/./x", "/v1/x"},
		"dot-dot segment":            {"/v1/y/../x", "/v1/x"},
		"dot-dot at the end":         {"/v1/x/y/..", "/v1/x/"},
		"dot at the end":             {"/v1/x/.", "/v1/x/"},
		"dot-dot to the root":        {"/v1/..", "/"},
		"dots inside a name":         {"/v1/a..b/.x/x.", "/v1/a..b/.x/x."},
		"unreserved escape decoded":  {"/v1/%78", "/v1/x"},
		"escaped letters decoded":    {"/%69mport/%41%7a%30-%5F%7E", "/import/Az0-_~"},
		"reserved escape kept":       {"/v1/a%3ab", "/v1/a%3Ab"},
		"escaped percent kept":       {"/v1/%2578", "/v1/%2578"},
		"escaped non-ASCII kept":     {"/v1/%c3%bc", "/v1/%C3%BC"},
		"escaped dot in a name":      {"/v1/%2Ejs", "/v1/.js"},
		"letter case kept":           {"/V1/X", "/V1/X"},
		"raw UTF-8":                  {"/v1/bücher", "/v1/bücher"},
		"empty":                      {"", ""},
		"no leading slash":           {"v1/x", ""},
		"asterisk form":              {"*", ""},
		"escaped slash":              {"/v1/a%2Fb", ""},
		"escaped slash lower-case":   {"/v1/a%2fb", ""},
		"backslash":                  {"/v1\\x", ""},
		"escaped backslash":          {"/v1/%5Cx", ""},
		"NUL":                        {"/v1/x\x00", ""},
		"escaped NUL":                {"/v1/x%00", ""},
		"control character":          {"/v1/x\ty", ""},
		"escaped control character":  {"/v1/x%0Ay", ""},
		"DEL":                        {"/v1/x\x7f", ""},
		"fragment":                   {"/v1/x#y", ""},
		"invalid escape":             {"/v1/%zz", ""},
		"truncated escape":           {"/v1/%4", ""},
		"escape at the end":          {"/v1/%", ""},
		"invalid UTF-8":              {"/v1/\xff", ""},
		"overlong UTF-8":             {"/v1/\xc0\xaf", ""},
		"dot-dot above the root":     {"/../v1/x", ""},
		"dot-dot above, after merge": {"//..//v1", ""},
		"escaped dot-dot":            {"/v1/%2e%2e/x", ""},
		"half-escaped dot-dot":       {"/v1/.%2E/x", ""},
		"escaped dot":                {"/v1/%2e/x", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := extauthz.CanonicalPath(tc.path)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("got %q, want a refusal", got)
			case tc.want != "" && err != nil:
				t.Errorf("got %v, want %q", err, tc.want)
			case got != tc.want:
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzCanonicalPath checks what a canonical path promises: it is stable
// (canonical again unchanged), starts with one '/', holds no empty, "." or
// ".." segment but a trailing slash, no character that is ambiguous raw,
// and only upper-case escapes of characters that are not unreserved.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/v1/x", "//v1/./x/../y/", "/%69mport/%2e%2e", "/a%2Fb", "/\xff", "/a/%c3%bc%3a", "/..", "/a/b/../../..", "/%", "/%%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		got, err := extauthz.CanonicalPath(path)
		if err != nil {
			return
		}
		again, err := extauthz.CanonicalPath(got)
		if err != nil || again != got {
			t.Fatalf("%q → %q → %q, %v: not stable", path, got, again, err)
		}
		if !strings.HasPrefix(got, "/") || !utf8.ValidString(got) {
			t.Fatalf("%q → %q: want a '/' first and valid UTF-8", path, got)
		}
		segs := strings.Split(got[1:], "/")
		for i, s := range segs {
			if s == "." || s == ".." || (s == "" && i != len(segs)-1) {
				t.Fatalf("%q → %q: segment %d is %q", path, got, i, s)
			}
		}
		for i := 0; i < len(got); i++ {
			c := got[i]
			if c < 0x20 || c == 0x7f || c == '\\' || c == '#' {
				t.Fatalf("%q → %q: byte %#x at %d", path, got, c, i)
			}
			if c != '%' {
				continue
			}
			esc := got[i+1 : i+3]
			if esc != strings.ToUpper(esc) || esc == "2F" || esc == "5C" || esc == "00" {
				t.Fatalf("%q → %q: escape %%%s", path, got, esc)
			}
		}
	})
}
