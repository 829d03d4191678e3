// Command noopauthz is the baseline the load benchmark measures Tollgate
// against: an Envoy ext_authz v3 gRPC server that allows every request at
// once, without reading it. Whatever Tollgate costs beyond it is the price
// of deciding.
//
// It registers gRPC health and reflection like Tollgate does (so ghz and
// grpcurl can find the service), and on SIGTERM or SIGINT stops gracefully.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

func main() {
	addr := flag.String("grpc-addr", ":9192", "ext_authz gRPC listen address")
	grace := flag.Duration("shutdown-timeout", 10*time.Second, "on SIGTERM, wait this long for in-flight checks")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *grace); err != nil {
		fmt.Fprintln(os.Stderr, "noopauthz:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then reports NOT_SERVING and stops
// gracefully, forcing the stop after grace.
func run(ctx context.Context, addr string, grace time.Duration) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, allowAll{resp: &authv3.CheckResponse{
		Status:       &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	fmt.Fprintf(os.Stderr, "noopauthz: serving on %s\n", lis.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grace):
		gs.Stop()
	}
	return nil
}

// allowAll answers every Check with the same OK response, which gRPC only
// reads (to marshal it).
type allowAll struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (a allowAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return a.resp, nil
}
