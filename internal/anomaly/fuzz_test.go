package anomaly_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/anomaly"
)

// FuzzHostOf: whatever a Referer or Origin holds, the host kept for a
// sighting is empty or a short, lower-case run of printable characters
// with no path, port or user information, and the read never panics.
func FuzzHostOf(f *testing.F) {
	for _, s := range []string{"https://App.Example.com:8443/p?q#f", "http://user:pw@[2001:db8::1]:80/", "null", "",
		"https://", "https://[::1", "ftp://x", "https://a b/", "https://" + strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := anomaly.HostOf(v)
		if len(h) > 253 || strings.ContainsAny(h, "/?#@ ") || h != strings.ToLower(h) {
			t.Fatalf("HostOf(%q) = %q", v, h)
		}
		if h != "" && !strings.Contains(v, "://") {
			t.Fatalf("HostOf(%q) = %q from a value that is no URL", v, h)
		}
	})
}
