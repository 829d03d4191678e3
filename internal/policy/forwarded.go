package policy

import (
	"net/netip"
	"strings"
)

// ForwardedFor returns the caller's address from X-Forwarded-For behind
// hops trusted proxies: the entry that many places from the right of the
// header's lines joined in order, as Envoy counts them. It is unknown (the
// zero Addr, which no IP range contains) when there are fewer entries than
// hops — the request skipped a proxy that should have been there — or when
// that entry is not an address. Every front end reads the header this way.
func ForwardedFor(lines []string, hops int) netip.Addr {
	seen := 0
	for i := len(lines) - 1; i >= 0; i-- {
		for xff := lines[i]; ; {
			entry := xff
			j := strings.LastIndexByte(xff, ',')
			if j >= 0 {
				xff, entry = xff[:j], xff[j+1:]
			}
			if seen++; seen == hops {
				return ParseAddr(strings.Trim(entry, " \t"))
			}
			if j < 0 {
				break
			}
		}
	}
	return netip.Addr{}
}

// ParseAddr parses an address, with or without a port, unmapping
// IPv4-in-IPv6 and dropping a zone; the zero Addr when s is neither.
func ParseAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(s)
		if err2 != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("")
}
