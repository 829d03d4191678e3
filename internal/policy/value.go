package policy

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
)

// A token value is "pk_" or "sk_", at least valueRandomLen random base62
// characters, then a checksumLen-character base62 CRC32 of everything before
// it (GitHub's scheme). The checksum lets Check refuse a mistyped or made-up
// token without touching the cache or the database.
const (
	valueRandomLen = 32
	checksumLen    = 6
	prefixLen      = 3 // "pk_" / "sk_"
	// MaxValueLen bounds what is even looked at; real values are 41 bytes.
	MaxValueLen = 128
	// displayLen is how much of a value is kept to tell tokens apart in lists.
	displayLen = prefixLen + 6
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62Index maps a byte to its base62 digit, or -1.
var base62Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(base62); i++ {
		t[base62[i]] = int8(i)
	}
	return t
}()

// Hash is the SHA-256 of a token value: the only form in which a value is
// stored, cached or logged.
type Hash [sha256.Size]byte

// HashValue returns the hash a token value is stored and looked up under.
func HashValue(value string) Hash {
	// Values Check sees fit on the stack; copying one there saves the
	// allocation a []byte conversion would make on every request.
	var buf [MaxValueLen]byte
	if len(value) <= len(buf) {
		n := copy(buf[:], value)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(value))
}

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash parses a hex-encoded hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if hex.DecodedLen(len(s)) != len(h) {
		return h, Errorf(EInvalid, "policy: hash must be %d hex characters", 2*len(h))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, Errorf(EInvalid, "policy: hash is not hex")
	}
	return h, nil
}

// NewValue returns a fresh random token value of the given kind.
func NewValue(k Kind) string {
	b := make([]byte, 0, prefixLen+valueRandomLen+checksumLen)
	b = append(b, k.valuePrefix()...)
	b = append(b, randomBase62(valueRandomLen)...)
	return string(appendChecksum(b, crc32.ChecksumIEEE(b)))
}

// ParseValue checks a token value's shape and checksum and returns its kind.
// It does no look-up: a value that passes may still be unknown.
func ParseValue(v string) (Kind, error) {
	if len(v) < prefixLen+valueRandomLen+checksumLen || len(v) > MaxValueLen {
		return 0, errMalformed
	}
	var k Kind
	switch v[:prefixLen] {
	case "pk_":
		k = Publishable
	case "sk_":
		k = Secret
	default:
		return 0, errMalformed
	}
	body := v[:len(v)-checksumLen]
	for i := prefixLen; i < len(v); i++ {
		if base62Index[v[i]] < 0 {
			return 0, errMalformed
		}
	}
	var sum [checksumLen]byte
	if string(appendChecksum(sum[:0], checksumString(body))) != v[len(body):] {
		return 0, errMalformed
	}
	return k, nil
}

// checksumString is crc32.ChecksumIEEE of s without copying s into a
// byte slice, which would put the copy on the heap on every Check (the
// slice escapes into the assembly routine).
func checksumString(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ (crc >> 8)
	}
	return ^crc
}

var errMalformed = Errorf(EInvalid, "policy: token value is malformed or its checksum does not match")

// DisplayPrefix returns the part of a value that may be shown and stored in
// clear to tell tokens apart, e.g. "pk_3kT9aQ".
func DisplayPrefix(v string) string {
	if len(v) < displayLen {
		return v
	}
	return v[:displayLen]
}

// appendChecksum appends c as checksumLen base62 digits, most significant
// first, zero-padded.
func appendChecksum(b []byte, c uint32) []byte {
	var d [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		d[i] = base62[c%62]
		c /= 62
	}
	return append(b, d[:]...)
}

// randomBase62 returns n characters drawn uniformly from base62 using the
// operating system's CSPRNG.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:]) // never returns an error (crypto/rand's contract)
		for _, c := range buf {
			// 248 = 4*62: rejecting the rest keeps every digit equally likely.
			if c < 248 && len(out) < n {
				out = append(out, base62[c%62])
			}
		}
	}
	return string(out)
}

// NewID returns a new identifier: prefix, "_", and 16 random base62
// characters (95 bits), e.g. "tok_4Vq1J9zQ0bXr7LmN". Identifiers are not
// secrets; they appear in logs, headers and URLs.
func NewID(prefix string) string { return prefix + "_" + randomBase62(idRandomLen) }

const idRandomLen = 16

// NewSigningSecret returns a fresh signing secret for signed requests:
// "tss_" and 40 random base62 characters (238 bits).
func NewSigningSecret() string { return "tss_" + randomBase62(40) }
