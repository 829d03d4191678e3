package policy

import (
	"math/bits"
	"strings"
)

// MatchName reports whether name matches pattern, where '*' in pattern
// matches any run of bytes (including none and including dots), so
// "sales.*" matches "sales.q1" and "sales.q1.eu". It does not allocate.
//
// For a name of at most 128 bytes (every valid name) its work is one step
// per byte of pattern, whatever the name; see nameIndex. A longer name is
// searched with strings.Index, whose worst case grows with
// len(pattern)*len(name); Evaluate never passes one.
func MatchName(pattern, name string) bool {
	var x nameIndex
	x.reset(name)
	return x.match(pattern)
}

// A glob with only '*' needs no backtracking. The text before the first
// '*' must be a prefix of the name and the text after the last a suffix
// (not overlapping it); each segment between is taken at its leftmost place
// in what is left, which is never wrong because the '*' after it can absorb
// anything a later place would have skipped. So each segment is looked for
// once, from where the last one ended.

// nameIndex records where each byte occurs in a name of at most 128 bytes,
// as a 128-bit set of positions per byte value. Finding a segment is then
// one AND of shifted sets per byte of the segment: the starts where
// name[i+j] == seg[j] for every j. A request's name is indexed once and
// matched against every pattern of the token.
type nameIndex struct {
	name string
	at   [256][2]uint64 // bit i of at[c] (word i/64) is set when name[i] == c
}

// reset indexes name; a name longer than 128 bytes is not indexed, and
// find falls back to strings.Index.
func (x *nameIndex) reset(name string) {
	x.name = name
	if len(name) > maxNameLen {
		return
	}
	for i := 0; i < len(name); i++ {
		x.at[name[i]][i/64] |= 1 << (i % 64)
	}
}

func (x *nameIndex) match(pattern string) bool {
	name := x.name
	first := strings.IndexByte(pattern, '*')
	if first < 0 {
		return pattern == name
	}
	last := strings.LastIndexByte(pattern, '*')
	prefix, suffix := pattern[:first], pattern[last+1:]
	if len(name) < len(prefix)+len(suffix) || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
		return false
	}
	from, to := len(prefix), len(name)-len(suffix)
	mid := ""
	if first < last {
		mid = pattern[first+1 : last]
	}
	for mid != "" {
		seg, more, _ := strings.Cut(mid, "*")
		mid = more
		if seg == "" {
			continue
		}
		i := x.find(seg, from, to)
		if i < 0 {
			return false
		}
		from = i + len(seg)
	}
	return true
}

// find returns the least i with from <= i and i+len(seg) <= to where
// name[i:i+len(seg)] == seg, or -1.
func (x *nameIndex) find(seg string, from, to int) int {
	if to-from < len(seg) {
		return -1
	}
	if len(x.name) > maxNameLen {
		if i := strings.Index(x.name[from:to], seg); i >= 0 {
			return from + i
		}
		return -1
	}
	lo, hi := span(from, to-len(seg))
	for j := 0; j < len(seg) && lo|hi != 0; j++ {
		// Shift at[seg[j]] right by j, so that bit i says name[i+j] == seg[j].
		m := &x.at[seg[j]]
		if j < 64 {
			lo &= m[0]>>j | m[1]<<(64-j)
			hi &= m[1] >> j
		} else {
			lo &= m[1] >> (j - 64)
			hi = 0
		}
	}
	switch {
	case lo != 0:
		return bits.TrailingZeros64(lo)
	case hi != 0:
		return 64 + bits.TrailingZeros64(hi)
	}
	return -1
}

// span returns the 128-bit set of the positions a through b, with
// 0 <= a <= b < 128.
func span(a, b int) (lo, hi uint64) {
	lo, hi = ^uint64(0), ^uint64(0)
	if a < 64 {
		lo <<= a
	} else {
		lo, hi = 0, hi<<(a-64)
	}
	if b < 64 {
		lo &= ^uint64(0) >> (63 - b)
		hi = 0
	} else {
		hi &= ^uint64(0) >> (127 - b)
	}
	return lo, hi
}
