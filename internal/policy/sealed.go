package policy

// SealedKind says which of a token's sealed values a Sealed is.
type SealedKind uint8

const (
	// SealedSigningSecret is a token's signing secret, sealed for its id.
	SealedSigningSecret SealedKind = iota
	// SealedValue is a publishable token's kept value, sealed for its id
	// followed by "#value".
	SealedValue
)

// String names the kind as the reseal report does.
func (k SealedKind) String() string {
	if k == SealedValue {
		return "value"
	}
	return "signing secret"
}

// Sealed is one sealed value of a token, as stored: what re-sealing under
// a new encryption key reads and replaces.
type Sealed struct {
	TokenID string
	Kind    SealedKind
	Bytes   []byte
}

// Resealed replaces a Sealed's bytes with New, if they are still the
// bytes it was read with.
type Resealed struct {
	Sealed
	New []byte
}
