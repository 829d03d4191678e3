package policy_test

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
)

func TestNewValueParses(t *testing.T) {
	for _, k := range []policy.Kind{policy.Publishable, policy.Secret} {
		seen := map[string]bool{}
		for range 200 {
			v := policy.NewValue(k)
			if len(v) != 41 {
				t.Fatalf("len(%q) = %d, want 41", v, len(v))
			}
			got, err := policy.ParseValue(v)
			if err != nil || got != k {
				t.Fatalf("ParseValue(%q) = %v, %v; want %v", v, got, err, k)
			}
			if seen[v] {
				t.Fatalf("value %q repeated", v)
			}
			seen[v] = true
		}
	}
}

func TestParseValueRejects(t *testing.T) {
	good := policy.NewValue(policy.Publishable)
	// Change one character of the random part: the checksum no longer fits.
	flipped := []byte(good)
	if flipped[10] == 'a' {
		flipped[10] = 'b'
	} else {
		flipped[10] = 'a'
	}
	swappedKind := "sk_" + good[3:]
	for name, v := range map[string]string{
		"empty":           "",
		"prefix only":     "pk_",
		"unknown prefix":  "xk_" + good[3:],
		"kind swapped":    swappedKind,
		"one char off":    string(flipped),
		"truncated":       good[:len(good)-1],
		"too short":       "pk_" + strings.Repeat("a", 20),
		"non-base62":      good[:5] + "-" + good[6:],
		"too long":        "pk_" + strings.Repeat("a", 200),
		"trailing space":  good + " ",
		"uppercase kind":  "PK_" + good[3:],
		"nul inside":      good[:8] + "\x00" + good[9:],
		"multibyte":       good[:8] + "é" + good[10:],
		"checksum zeroed": good[:len(good)-6] + "000000",
	} {
		if k, err := policy.ParseValue(v); err == nil {
			t.Errorf("%s: ParseValue(%q) = %v, want an error", name, v, k)
		}
	}
}

func TestHashRoundTrip(t *testing.T) {
	h := policy.HashValue("pk_example")
	got, err := policy.ParseHash(h.String())
	if err != nil || got != h {
		t.Errorf("ParseHash(%s) = %v, %v; want %v", h, got, err, h)
	}
	for _, bad := range []string{"", "zz", h.String()[:62], h.String() + "00", strings.Repeat("g", 64)} {
		if _, err := policy.ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded, want an error", bad)
		}
	}
}

func TestNewIDShape(t *testing.T) {
	id := policy.NewID("tok")
	if len(id) != 20 || !strings.HasPrefix(id, "tok_") {
		t.Errorf("NewID = %q, want tok_ and 16 characters", id)
	}
}

func FuzzParseValue(f *testing.F) {
	f.Add(policy.NewValue(policy.Publishable))
	f.Add(policy.NewValue(policy.Secret))
	f.Add("pk_")
	f.Add("sk_" + strings.Repeat("0", 38))
	f.Add("pk_" + strings.Repeat("\xff", 38))
	f.Fuzz(func(t *testing.T, v string) {
		k, err := policy.ParseValue(v)
		if err != nil {
			return
		}
		// Whatever passes must look like a value NewValue could have made.
		if len(v) < 41 || len(v) > policy.MaxValueLen {
			t.Errorf("accepted %q of length %d", v, len(v))
		}
		if want := map[policy.Kind]string{policy.Publishable: "pk_", policy.Secret: "sk_"}[k]; !strings.HasPrefix(v, want) {
			t.Errorf("accepted %q as %v without the %s prefix", v, k, want)
		}
	})
}
