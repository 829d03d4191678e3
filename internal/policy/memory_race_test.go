//go:build race

package policy_test

// raceDetector is on: its shadow memory grows with the heap, so the
// resident memory a test reads is not the cache's.
const raceDetector = true
