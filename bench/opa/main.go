// Command opaauthz is the benchmark's OPA row: an Envoy ext_authz v3 gRPC
// server that decides each Check with OPA the way opa-envoy-plugin does —
// the CheckRequest turned into the policy's input through protojson (with
// parsed_path and parsed_query beside it), a query prepared once and
// evaluated per request inside a store transaction with metrics and a
// non-deterministic builtin cache, and the result object's allowed, headers,
// response_headers_to_add, http_status, body and dynamic_metadata turned
// into the CheckResponse. The policy (policy.rego) is Tollgate's cache-hit
// check; the data (-data, written by the benchmark) holds the benchmark's
// tokens by SHA-256.
//
// It lives in a module of its own so that OPA never enters Tollgate's
// go.mod; the benchmark script builds it.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/util"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

//go:embed policy.rego
var policy string

func main() {
	addr := flag.String("grpc-addr", ":9193", "ext_authz gRPC listen address")
	data := flag.String("data", "", "JSON document to serve as data (the benchmark's tokens)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *data); err != nil {
		fmt.Fprintln(os.Stderr, "opaauthz:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr, dataPath string) error {
	s, err := newServer(ctx, dataPath)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	fmt.Fprintf(os.Stderr, "opaauthz: serving on %s\n", lis.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	gs.GracefulStop()
	return nil
}

type server struct {
	authv3.UnimplementedAuthorizationServer
	store storage.Store
	query rego.PreparedEvalQuery
}

func newServer(ctx context.Context, dataPath string) (*server, error) {
	raw, err := os.ReadFile(dataPath)
	if err != nil {
		return nil, fmt.Errorf("read data: %w", err)
	}
	var data map[string]any
	if err := util.UnmarshalJSON(raw, &data); err != nil {
		return nil, fmt.Errorf("parse data: %w", err)
	}
	store := inmem.NewFromObject(data)
	q, err := rego.New(
		rego.Query("data.envoy.authz.result"),
		rego.Module("policy.rego", policy),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare policy: %w", err)
	}
	return &server{store: store, query: q}, nil
}

// Check is opa-envoy's check: input, evaluation in a read transaction,
// result to response.
func (s *server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	input, err := toInput(req)
	if err != nil {
		return nil, err
	}
	v, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, err
	}
	var decision any
	m := metrics.New()
	err = storage.Txn(ctx, s.store, storage.TransactionParams{}, func(txn storage.Transaction) error {
		rs, err := s.query.Eval(ctx,
			rego.EvalParsedInput(v),
			rego.EvalTransaction(txn),
			rego.EvalMetrics(m),
			rego.EvalNDBuiltinCache(builtins.NDBCache{}),
		)
		if err != nil {
			return err
		}
		if len(rs) == 0 || len(rs[0].Expressions) == 0 {
			return fmt.Errorf("undefined decision")
		}
		decision = rs[0].Expressions[0].Value
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	return toResponse(decision)
}

// toInput is opa-envoy's RequestToInput without a body: the request as
// protojson, decoded, with the path and query parsed.
func toInput(req *authv3.CheckRequest) (map[string]any, error) {
	bs, err := protojson.Marshal(req)
	if err != nil {
		return nil, err
	}
	var input map[string]any
	if err := util.UnmarshalJSON(bs, &input); err != nil {
		return nil, err
	}
	u, err := url.Parse(req.GetAttributes().GetRequest().GetHttp().GetPath())
	if err != nil {
		return nil, err
	}
	var parsedPath []any
	for _, seg := range strings.Split(strings.TrimLeft(u.Path, "/"), "/") {
		parsedPath = append(parsedPath, seg)
	}
	parsedQuery := map[string]any{}
	for k, vs := range u.Query() {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		parsedQuery[k] = l
	}
	input["parsed_path"] = parsedPath
	input["parsed_query"] = parsedQuery
	input["parsed_body"] = nil
	input["truncated_body"] = false
	input["version"] = map[string]any{"encoding": "protojson", "ext_authz": "v3"}
	return input, nil
}

// toResponse turns the policy's result object into a CheckResponse, as
// opa-envoy reads it.
func toResponse(decision any) (*authv3.CheckResponse, error) {
	res, ok := decision.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("decision is %T, not an object", decision)
	}
	allowed, _ := res["allowed"].(bool)
	headers := headerOptions(res["headers"])
	resp := &authv3.CheckResponse{}
	if md, ok := res["dynamic_metadata"].(map[string]any); ok {
		s, err := structpb.NewStruct(normalize(md).(map[string]any))
		if err != nil {
			return nil, fmt.Errorf("dynamic_metadata: %w", err)
		}
		resp.DynamicMetadata = s
	}
	if allowed {
		resp.Status = &rpcstatus.Status{Code: int32(codes.OK)}
		resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              headers,
			ResponseHeadersToAdd: headerOptions(res["response_headers_to_add"]),
		}}
		return resp, nil
	}
	status := int64(403)
	if n, ok := res["http_status"].(json.Number); ok {
		status, _ = n.Int64()
	}
	body, _ := res["body"].(string)
	code, _ := res["code"].(string)
	resp.Status = &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: code}
	resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
		Headers: headers,
		Body:    body,
	}}
	return resp, nil
}

func headerOptions(v any) []*corev3.HeaderValueOption {
	m, _ := v.(map[string]any)
	out := make([]*corev3.HeaderValueOption, 0, len(m))
	for k, v := range m {
		s, _ := v.(string)
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: s},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return out
}

// normalize turns OPA's json.Numbers into float64s for structpb.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return v
}
