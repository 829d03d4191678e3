package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// IPSet is a token's allowed IP ranges. It is built once, when a token is
// loaded, and asked on every check; Contains does not allocate.
//
// The zero IPSet has no entries and contains nothing. Callers that treat
// "no allowed IPs" as "any IP" must check Len themselves.
type IPSet struct {
	// prefixes are masked, in input order; IPv4-mapped IPv6 ranges are
	// stored as the IPv4 ranges they cover, because Contains unmaps
	// addresses before comparing.
	prefixes []netip.Prefix
}

// ParseIPSet parses a token's allowed IPs. Each entry is a CIDR
// ("10.0.0.0/8", "2001:db8::/32") or a single address, which stands for
// itself alone (/32 or /128).
//
// Host bits after the prefix length are accepted and cleared, so
// "10.1.2.3/8" is stored and reported as "10.0.0.0/8". An IPv4-mapped IPv6
// range of /96 or longer ("::ffff:10.0.0.0/104") is stored as the IPv4 range
// it covers ("10.0.0.0/8"). Zones ("fe80::1%eth0") are refused: a zone has
// no meaning on another host. The error quotes the entry at fault.
func ParseIPSet(cidrs []string) (IPSet, error) {
	if len(cidrs) == 0 {
		return IPSet{}, nil
	}
	prefixes := make([]netip.Prefix, 0, len(cidrs))
	for _, s := range cidrs {
		p, err := parseIPPrefix(s)
		if err != nil {
			return IPSet{}, err
		}
		prefixes = append(prefixes, p)
	}
	return IPSet{prefixes: prefixes}, nil
}

// parseIPPrefix parses one entry of ParseIPSet into a masked prefix.
func parseIPPrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.IndexByte(s, '/') >= 0 {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			// netip's text quotes its own functions; say what to write.
			return netip.Prefix{}, fmt.Errorf("%q is not a valid IP range: write an address and a prefix length, such as 10.0.0.0/8 or 2001:db8::/32.", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a valid IP address: write an address such as 203.0.113.7, or a range such as 10.0.0.0/8.", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q has a zone (after '%%'), which means nothing on another host: leave it out.", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Contains reports whether a is in one of s's ranges. An IPv4-mapped IPv6
// address (::ffff:1.2.3.4) is compared as the IPv4 address it carries, and a
// zone on a is ignored. An IPSet with no entries contains nothing.
func (s IPSet) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("").Unmap()
	for _, p := range s.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Len returns the number of entries in s.
func (s IPSet) Len() int { return len(s.prefixes) }

// Strings returns s's entries in canonical CIDR form ("10.0.0.0/8",
// "2001:db8::1/128"), in input order. ParseIPSet parses them back to an
// equal set.
func (s IPSet) Strings() []string {
	if len(s.prefixes) == 0 {
		return nil
	}
	out := make([]string, len(s.prefixes))
	for i, p := range s.prefixes {
		out[i] = p.String()
	}
	return out
}
