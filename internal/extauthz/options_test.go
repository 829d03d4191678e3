package extauthz_test

import (
	"runtime"
	"testing"

	"google.golang.org/grpc"

	"github.com/tollgate/tollgate/internal/extauthz"
)

// TestServerOptionsStartStreamWorkers: the server the options make keeps
// the configured workers waiting for streams, and none when told 0.
func TestServerOptionsStartStreamWorkers(t *testing.T) {
	for _, workers := range []int{0, 40} {
		before := runtime.NumGoroutine()
		gs := grpc.NewServer(extauthz.ServerOptions(extauthz.Config{StreamWorkers: workers})...)
		added := runtime.NumGoroutine() - before
		gs.Stop()
		if added < workers || (workers == 0 && added > 0) {
			t.Errorf("StreamWorkers %d: %d goroutines started, want %d", workers, added, workers)
		}
	}
	if extauthz.DefaultStreamWorkers() < runtime.GOMAXPROCS(0) {
		t.Errorf("DefaultStreamWorkers %d: fewer than one per CPU", extauthz.DefaultStreamWorkers())
	}
}
