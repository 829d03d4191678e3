package extauthz_test

import (
	"bytes"
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/tollgate/tollgate/internal/extauthz"
	"github.com/tollgate/tollgate/internal/policy"
)

// encodeWithBytes encodes r with the bytes of placeholder replaced by as
// many 0xff: what Envoy sends for a header value or path that is not UTF-8.
func encodeWithBytes(tb testing.TB, r httpReq, placeholder string) []byte {
	tb.Helper()
	b, err := proto.Marshal(r.check())
	if err != nil {
		tb.Fatal(err)
	}
	i := bytes.Index(b, []byte(placeholder))
	if i < 0 {
		tb.Fatal("placeholder not in the encoding")
	}
	copy(b[i:], bytes.Repeat([]byte{0xff}, len(placeholder)))
	return b
}

// TestCodecInvalidUTF8: a CheckRequest whose strings are not UTF-8
// decodes, and Check denies it (request_invalid) instead of failing.
func TestCodecInvalidUTF8(t *testing.T) {
	ext := map[string]string{"api": "data"}
	tests := map[string][]byte{
		"header value":    encodeWithBytes(t, httpReq{path: "/v1/x?token=" + tokA, headers: map[string]string{"x-note": "PLACEHOLDER"}, ext: ext}, "PLACEHOLDER"),
		"path":            encodeWithBytes(t, httpReq{path: "/v1/PLACEHOLDER?token=" + tokA, ext: ext}, "PLACEHOLDER"),
		"header name":     encodeWithBytes(t, httpReq{path: "/v1/x", headers: map[string]string{"x-PLACEHOLDER": "1"}, ext: ext}, "PLACEHOLDER"),
		"extension value": encodeWithBytes(t, httpReq{path: "/v1/x", ext: map[string]string{"api": "data", "dataset": "PLACEHOLDER"}}, "PLACEHOLDER"),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if err := proto.Unmarshal(b, &authv3.CheckRequest{}); err == nil {
				t.Fatalf("protobuf accepts the encoding: the test does not test anything")
			}
			var cr authv3.CheckRequest
			if err := (extauthz.Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &cr); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			d := &fakeDecider{}
			resp, err := extauthz.NewServer(d, extauthz.Config{}, discard, nil).Check(context.Background(), &cr)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			expectRefused(t, resp, policy.CodeRequestInvalid)
			if _, err := proto.Marshal(resp); err != nil {
				t.Errorf("the answer cannot be sent: %v", err)
			}
		})
	}
	t.Run("valid request unmarked", func(t *testing.T) {
		b, err := proto.Marshal(httpReq{path: "/v1/x?token=" + tokA, ext: ext}.check())
		if err != nil {
			t.Fatal(err)
		}
		var cr authv3.CheckRequest
		if err := (extauthz.Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &cr); err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		if _, err := extauthz.NewServer(&fakeDecider{}, extauthz.Config{}, discard, nil).Check(context.Background(), &cr); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if len(cr.ProtoReflect().GetUnknown()) != 0 {
			t.Errorf("a valid request was marked")
		}
	})
}

// FuzzCodec: whatever bytes arrive, the codec either refuses them or
// yields a CheckRequest that can be re-encoded (every string UTF-8), and
// marks it only when protobuf alone would have refused it.
func FuzzCodec(f *testing.F) {
	for _, r := range []httpReq{{path: "/v1/x?token=" + tokA}, {path: "/", headers: map[string]string{"a": "b"}, ext: map[string]string{"api": "data"}}} {
		b, err := proto.Marshal(r.check())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(append(bytes.Clone(b[:len(b)-1]), 0xff))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var cr authv3.CheckRequest
		if err := (extauthz.Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &cr); err != nil {
			return
		}
		if _, err := proto.Marshal(&cr); err != nil {
			t.Fatalf("decoded request cannot be re-encoded: %v", err)
		}
		plain := proto.Unmarshal(b, &authv3.CheckRequest{}) == nil
		resp, err := extauthz.NewServer(&fakeDecider{}, extauthz.Config{}, discard, nil).Check(context.Background(), &cr)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if code := resp.GetDynamicMetadata().GetFields()["code"].GetStringValue(); !plain && code != string(policy.CodeRequestInvalid) {
			t.Fatalf("a repaired request answered %q, want %s", code, policy.CodeRequestInvalid)
		}
	})
}
