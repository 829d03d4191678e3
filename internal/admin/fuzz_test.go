package admin_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/admin"
)

// FuzzClientIP: whatever X-Forwarded-For holds, the caller is the TCP peer
// (no trusted hops) or an address that appears in the header, or no
// address at all; never a guess.
func FuzzClientIP(f *testing.F) {
	for _, s := range []struct {
		xff  string
		hops int
	}{{"203.0.113.7", 1}, {"203.0.113.7, 10.0.0.1", 2}, {"", 1}, {"bogus", 1}, {"::ffff:1.2.3.4", 1}, {"1.2.3.4,,", 2}, {"a\nb", 3}} {
		f.Add(s.xff, s.hops)
	}
	f.Fuzz(func(t *testing.T, xff string, hops int) {
		hops %= 8
		r := &http.Request{RemoteAddr: "192.0.2.1:5555", Header: http.Header{}}
		for _, line := range strings.Split(xff, "\n") {
			r.Header.Add("X-Forwarded-For", line)
		}
		got := admin.ClientIP(r, hops)
		if hops <= 0 {
			if got != netip.MustParseAddr("192.0.2.1") {
				t.Fatalf("no trusted hops: got %v, want the peer 192.0.2.1", got)
			}
			return
		}
		if !got.IsValid() {
			return
		}
		for _, line := range r.Header.Values("X-Forwarded-For") {
			for _, e := range strings.Split(line, ",") {
				if a, err := netip.ParseAddr(strings.TrimSpace(e)); err == nil && a.Unmap() == got {
					return
				}
			}
		}
		t.Fatalf("got %v, which is no entry of %q", got, xff)
	})
}

// FuzzBearerValue: any Authorization and X-API-Key headers give a token or
// an error, never both a token and a conflict.
func FuzzBearerValue(f *testing.F) {
	for _, s := range [][2]string{{"Bearer sk_x", ""}, {"Bearer sk_x", "sk_y"}, {"TOLLGATE-HMAC-SHA256 Credential=tok_1/20260101/tollgate_request", "sk_x"}, {"Basic abc", ""}, {"", "sk_x"}, {"bearer   sk_x  ", "sk_x"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, auth, key string) {
		r := &http.Request{Header: http.Header{}}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if key != "" {
			r.Header.Set("X-API-Key", key)
		}
		v, err := admin.BearerValue(r)
		if err != nil && v != "" {
			t.Fatalf("got %q and %v, want one or the other", v, err)
		}
		if err == nil && key != "" && strings.TrimSpace(key) != "" && v != strings.TrimSpace(key) {
			t.Fatalf("X-API-Key %q with Authorization %q: got %q, want the key or a conflict", key, auth, v)
		}
	})
}
