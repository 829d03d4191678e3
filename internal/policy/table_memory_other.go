//go:build !unix

package policy

import "errors"

// mapBytes has no anonymous mappings to offer here (no mmap), so every
// region comes from the Go heap: the table works the same, only with the
// memory cost of a heap that GOGC lets grow to twice its live size.
func mapBytes(int) ([]byte, error) {
	return nil, errors.New("no anonymous memory mappings on this system")
}

func unmapBytes([]byte) error { return nil }
