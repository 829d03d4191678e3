package extauthz_test

import (
	"bytes"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/tollgate/tollgate/internal/extauthz"
)

// TestServerOptionsStartStreamWorkers: the server the options make keeps
// the configured workers waiting for streams, and none when told 0.
func TestServerOptionsStartStreamWorkers(t *testing.T) {
	for _, workers := range []int{0, 40} {
		// Counted by their stacks, not as a change in the process's
		// goroutine total, which other tests' goroutines move; waited
		// for, since workers start and stop asynchronously.
		if got := waitStreamWorkers(t, 0); got != 0 {
			t.Fatalf("%d workers of an earlier server still running", got)
		}
		gs := grpc.NewServer(extauthz.ServerOptions(extauthz.Config{StreamWorkers: workers})...)
		got := waitStreamWorkers(t, workers)
		gs.Stop()
		if got != workers {
			t.Errorf("StreamWorkers %d: %d workers waiting, want %d", workers, got, workers)
		}
	}
	if extauthz.DefaultStreamWorkers() < runtime.GOMAXPROCS(0) {
		t.Errorf("DefaultStreamWorkers %d: fewer than one per CPU", extauthz.DefaultStreamWorkers())
	}
}

// waitStreamWorkers counts goroutines in grpc-go's stream worker loop
// until there are want of them or five seconds pass, and returns the last
// count.
func waitStreamWorkers(t *testing.T, want int) int {
	t.Helper()
	var got int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var buf bytes.Buffer
		if err := pprof.Lookup("goroutine").WriteTo(&buf, 2); err != nil {
			t.Fatal(err)
		}
		if got = bytes.Count(buf.Bytes(), []byte("grpc.(*Server).serverWorker(")); got == want {
			break
		}
	}
	return got
}
