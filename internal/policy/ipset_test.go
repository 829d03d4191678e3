package policy_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/policy"
)

func TestParseIPSet(t *testing.T) {
	tests := map[string]struct {
		in   []string
		want []string // Strings()
	}{
		"nil":             {nil, nil},
		"empty":           {[]string{}, nil},
		"v4 cidr":         {[]string{"10.0.0.0/8"}, []string{"10.0.0.0/8"}},
		"v6 cidr":         {[]string{"2001:db8::/32"}, []string{"2001:db8::/32"}},
		"v4 address":      {[]string{"192.0.2.7"}, []string{"192.0.2.7/32"}},
		"v6 address":      {[]string{"2001:db8::1"}, []string{"2001:db8::1/128"}},
		"v6 long form":    {[]string{"2001:0DB8:0:0:0:0:0:1"}, []string{"2001:db8::1/128"}},
		"v4 host bits":    {[]string{"10.1.2.3/8"}, []string{"10.0.0.0/8"}},
		"v6 host bits":    {[]string{"2001:db8::1/32"}, []string{"2001:db8::/32"}},
		"v4 any":          {[]string{"0.0.0.0/0"}, []string{"0.0.0.0/0"}},
		"v6 any":          {[]string{"::/0"}, []string{"::/0"}},
		"mapped address":  {[]string{"::ffff:192.0.2.7"}, []string{"192.0.2.7/32"}},
		"mapped cidr":     {[]string{"::ffff:10.0.0.0/104"}, []string{"10.0.0.0/8"}},
		"mapped all":      {[]string{"::ffff:0:0/96"}, []string{"0.0.0.0/0"}},
		"mapped short":    {[]string{"::ffff:0:0/95"}, []string{"::fffe:0:0/95"}},
		"input order":     {[]string{"2001:db8::/32", "10.0.0.0/8", "192.0.2.7"}, []string{"2001:db8::/32", "10.0.0.0/8", "192.0.2.7/32"}},
		"duplicates kept": {[]string{"10.0.0.0/8", "10.0.0.0/8"}, []string{"10.0.0.0/8", "10.0.0.0/8"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := policy.ParseIPSet(tt.in)
			if err != nil {
				t.Fatalf("ParseIPSet(%q): got error %v, want nil", tt.in, err)
			}
			if got := s.Strings(); !slices.Equal(got, tt.want) {
				t.Errorf("Strings(): got %q, want %q", got, tt.want)
			}
			if got := s.Len(); got != len(tt.want) {
				t.Errorf("Len(): got %d, want %d", got, len(tt.want))
			}
			again, err := policy.ParseIPSet(s.Strings())
			if err != nil || !slices.Equal(again.Strings(), s.Strings()) {
				t.Errorf("ParseIPSet(Strings()): got %q, %v, want %q, nil", again.Strings(), err, s.Strings())
			}
		})
	}
}

func TestParseIPSetErrors(t *testing.T) {
	tests := map[string]struct {
		in   []string
		want string // a substring of the error
	}{
		"empty entry":      {[]string{""}, `"" is not a valid IP address`},
		"hostname":         {[]string{"example.com"}, "not a valid IP address"},
		"bits too big v4":  {[]string{"10.0.0.0/33"}, "not a valid IP range"},
		"bits too big v6":  {[]string{"2001:db8::/129"}, "not a valid IP range"},
		"negative bits":    {[]string{"10.0.0.0/-1"}, "not a valid IP range"},
		"no bits":          {[]string{"10.0.0.0/"}, "not a valid IP range"},
		"short v4":         {[]string{"10.0/8"}, "not a valid IP range"},
		"leading zero":     {[]string{"010.0.0.1"}, "not a valid IP address"},
		"netmask":          {[]string{"10.0.0.0/255.0.0.0"}, "not a valid IP range"},
		"range":            {[]string{"10.0.0.1-10.0.0.9"}, "not a valid IP address"},
		"spaces":           {[]string{" 10.0.0.1"}, "not a valid IP address"},
		"zone":             {[]string{"fe80::1%eth0"}, "zone"},
		"zone cidr":        {[]string{"fe80::1%eth0/64"}, "not a valid IP range"},
		"second bad":       {[]string{"10.0.0.0/8", "nope"}, `"nope" is not a valid IP address`},
		"ipv6 in brackets": {[]string{"[2001:db8::1]"}, "not a valid IP address"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := policy.ParseIPSet(tt.in)
			if err == nil {
				t.Fatalf("ParseIPSet(%q): got %q, nil, want error containing %q", tt.in, s.Strings(), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseIPSet(%q): got error %q, want one containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestIPSetContains(t *testing.T) {
	set := MustParseIPSet(t, "10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:198.51.100.0/120", "172.16.5.4/12")
	tests := map[string]struct {
		set  policy.IPSet
		addr string
		want bool
	}{
		"v4 in cidr":            {set, "10.200.3.4", true},
		"v4 cidr first":         {set, "10.0.0.0", true},
		"v4 cidr last":          {set, "10.255.255.255", true},
		"v4 outside":            {set, "11.0.0.0", false},
		"v4 single":             {set, "192.0.2.7", true},
		"v4 single neighbour":   {set, "192.0.2.8", false},
		"v4 masked host bits":   {set, "172.31.0.1", true},
		"v4 masked outside":     {set, "172.32.0.1", false},
		"v4 from mapped entry":  {set, "198.51.100.9", true},
		"v6 in cidr":            {set, "2001:db8:1234::5", true},
		"v6 outside":            {set, "2001:db9::1", false},
		"v6 zone ignored":       {set, "2001:db8::1%eth0", true},
		"mapped in v4 cidr":     {set, "::ffff:10.1.2.3", true},
		"mapped single":         {set, "::ffff:192.0.2.7", true},
		"mapped outside":        {set, "::ffff:11.1.2.3", false},
		"v4-compatible is v6":   {set, "::10.1.2.3", false},
		"empty set":             {policy.IPSet{}, "10.1.2.3", false},
		"empty set v6":          {policy.IPSet{}, "::1", false},
		"v6 any not v4":         {MustParseIPSet(t, "::/0"), "10.1.2.3", false},
		"v6 any v6":             {MustParseIPSet(t, "::/0"), "2001:db8::1", true},
		"v4 any not v6":         {MustParseIPSet(t, "0.0.0.0/0"), "2001:db8::1", false},
		"v4 any mapped":         {MustParseIPSet(t, "0.0.0.0/0"), "::ffff:1.2.3.4", true},
		"v6 single":             {MustParseIPSet(t, "2001:db8::1"), "2001:db8::1", true},
		"v6 single neighbour":   {MustParseIPSet(t, "2001:db8::1"), "2001:db8::2", false},
		"v6 single long form":   {MustParseIPSet(t, "2001:db8::1"), "2001:0db8:0:0:0:0:0:1", true},
		"loopback v4 not in v6": {MustParseIPSet(t, "::1"), "127.0.0.1", false},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			if got := tt.set.Contains(a); got != tt.want {
				t.Errorf("%q.Contains(%s): got %v, want %v", tt.set.Strings(), a, got, tt.want)
			}
		})
	}
}

func TestIPSetContainsInvalid(t *testing.T) {
	set := MustParseIPSet(t, "0.0.0.0/0", "::/0")
	if got := set.Contains(netip.Addr{}); got {
		t.Errorf("Contains(netip.Addr{}): got %v, want false", got)
	}
}

func TestIPSetContainsAllocs(t *testing.T) {
	set := MustParseIPSet(t, "10.0.0.0/8", "2001:db8::/32", "192.0.2.7")
	for _, s := range []string{"192.0.2.7", "::ffff:192.0.2.7", "2001:db8::1%eth0", "8.8.8.8"} {
		a := netip.MustParseAddr(s)
		if got := testing.AllocsPerRun(100, func() { set.Contains(a) }); got != 0 {
			t.Errorf("Contains(%s) allocations: got %v, want 0", a, got)
		}
	}
}

func BenchmarkIPSetContains(b *testing.B) {
	set := MustParseIPSet(b, "10.0.0.0/8", "172.16.0.0/12", "2001:db8::/32", "203.0.113.0/24", "198.51.100.7")
	addr := netip.MustParseAddr("::ffff:198.51.100.7") // last entry, mapped
	b.ReportAllocs()
	for b.Loop() {
		if !set.Contains(addr) {
			b.Fatal("not contained")
		}
	}
}

// FuzzParseIPSet checks that ParseIPSet never panics on one entry, that
// what it accepts round-trips through Strings, and that a single accepted
// address is contained in its own set.
func FuzzParseIPSet(f *testing.F) {
	for _, s := range []string{
		"10.0.0.0/8", "10.1.2.3/8", "192.0.2.7", "2001:db8::/32", "2001:db8::1",
		"::ffff:10.0.0.0/104", "::ffff:1.2.3.4", "fe80::1%eth0", "0.0.0.0/0", "::/0",
		"10.0.0.0/33", "", "/", "1.2.3.4/", "::ffff:0:0/95", "[::1]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := policy.ParseIPSet([]string{s})
		if err != nil {
			return
		}
		again, err := policy.ParseIPSet(set.Strings())
		if err != nil || !slices.Equal(again.Strings(), set.Strings()) {
			t.Fatalf("ParseIPSet(%q): got %q, %v, want %q, nil", set.Strings(), again.Strings(), err, set.Strings())
		}
		if a, err := netip.ParseAddr(s); err == nil && !set.Contains(a) {
			t.Fatalf("ParseIPSet(%q).Contains(%s): got false, want true", s, a)
		}
	})
}

// MustParseIPSet parses cidrs or fails the test.
func MustParseIPSet(tb testing.TB, cidrs ...string) policy.IPSet {
	tb.Helper()
	s, err := policy.ParseIPSet(cidrs)
	if err != nil {
		tb.Fatalf("ParseIPSet(%q): %v", cidrs, err)
	}
	return s
}
