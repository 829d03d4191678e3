//go:build unix

package policy

import (
	"fmt"
	"syscall"
)

// mapBytes returns n zeroed bytes of anonymous private memory, which the
// Go heap does not count, and which the kernel backs only once touched.
func mapBytes(n int) ([]byte, error) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes: %w", n, err)
	}
	return b, nil
}

func unmapBytes(b []byte) error { return syscall.Munmap(b) }
