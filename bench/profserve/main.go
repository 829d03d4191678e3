// Command profserve is the tollgate command line with net/http/pprof on
// the side, for profiling "tollgate serve" under the load benchmark
// ("tollgate-bench -profile"): tollgate itself has no pprof endpoint. It
// runs exactly what cmd/tollgate runs; PPROF_ADDR says where pprof
// listens (default 127.0.0.1:6060).
package main

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	_ "net/http/pprof" // the profiling endpoints, on the default mux
	"os"
	"os/signal"
	"syscall"

	"github.com/tollgate/tollgate/internal/cli"
)

func main() {
	addr := cmp.Or(os.Getenv("PPROF_ADDR"), "127.0.0.1:6060")
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			fmt.Fprintln(os.Stderr, "profserve: pprof:", err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Version: "profserve"})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "profserve:", err)
		os.Exit(1)
	}
}
