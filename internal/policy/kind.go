package policy

// Kind says what a token is for.
type Kind uint8

// Token kinds.
const (
	// Publishable tokens ("pk_…") are safe to embed in a web page. They carry
	// only the permissions granted to them; core data read by default.
	Publishable Kind = iota + 1
	// Secret tokens ("sk_…") have full access to their account and belong on
	// servers only. Their value is shown once.
	Secret
)

// String returns "publishable" or "secret".
func (k Kind) String() string {
	switch k {
	case Publishable:
		return "publishable"
	case Secret:
		return "secret"
	}
	return "unknown"
}

func (k Kind) valuePrefix() string {
	if k == Secret {
		return "sk_"
	}
	return "pk_"
}

// ParseKind parses "publishable" or "secret".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "publishable":
		return Publishable, nil
	case "secret":
		return Secret, nil
	}
	return 0, fieldError("kind", "%q is not a token kind: choose publishable or secret.", s)
}

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}
