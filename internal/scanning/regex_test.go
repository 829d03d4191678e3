package scanning_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
)

// documentedPatterns reads the patterns a GitHub partner registration
// names from docs/security.md, so the document and the test cannot drift.
func documentedPatterns(t *testing.T) map[string]*regexp.Regexp {
	t.Helper()
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "<!-- secret-scanning-patterns")
	if !ok {
		t.Fatal("docs/security.md has no secret-scanning patterns table")
	}
	out := map[string]*regexp.Regexp{}
	for _, line := range strings.Split(table, "\n")[1:] {
		if !strings.HasPrefix(line, "| `") {
			break
		}
		cells := strings.Split(line, "|")
		name, pattern := strings.Trim(cells[1], " `"), strings.Trim(cells[2], " `")
		re, err := regexp.Compile(pattern)
		if err != nil {
			t.Fatalf("pattern %s: %v", name, err)
		}
		out[name] = re
	}
	return out
}

// TestDocumentedPatterns checks the documented patterns against values
// the token generator makes: each finds every value of its kind, whole,
// wherever values are pasted, finds none of the other kind, and finds
// nothing in a longer run of characters.
func TestDocumentedPatterns(t *testing.T) {
	patterns := documentedPatterns(t)
	kinds := map[string]policy.Kind{"tollgate_secret_token": policy.Secret, "tollgate_publishable_token": policy.Publishable}
	if len(patterns) != len(kinds) {
		t.Fatalf("documented patterns: got %d, want %d", len(patterns), len(kinds))
	}
	contexts := []string{"%s", `token = "%s"`, "https://api.example.com/v1/data?token=%s&x=1", `{"api_key":"%s"}`,
		"TOLLGATE_TOKEN=%s\n", "Authorization: Bearer %s", "'%s'", "(%s)"}
	for name, re := range patterns {
		kind, ok := kinds[name]
		if !ok {
			t.Fatalf("documented pattern %s names no kind of token", name)
		}
		for i := range 2000 {
			for k := range kinds {
				v := policy.NewValue(kinds[k])
				text := strings.ReplaceAll(contexts[i%len(contexts)], "%s", v)
				got := re.FindAllString(text, -1)
				switch {
				case kinds[k] == kind && (len(got) != 1 || got[0] != v):
					t.Fatalf("%s in %q: got %q, want the value", name, text, got)
				case kinds[k] != kind && len(got) != 0:
					t.Fatalf("%s matched a %s value: %q", name, k, got)
				}
				for _, longer := range []string{v + "A", "x" + v} {
					if m := re.FindString(longer); m != "" {
						t.Fatalf("%s found %q in a longer run %q", name, m, longer)
					}
				}
			}
		}
	}
}
