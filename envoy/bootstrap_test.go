// Package envoy_test validates the Envoy configurations shipped in envoy/
// without an Envoy binary: each bootstrap is decoded strictly into
// go-control-plane's protos (unknown fields, wrong types and unresolvable
// typed_config types fail), then validated with the protoc-gen-validate
// rules, including every message packed inside a google.protobuf.Any, which
// the generated ValidateAll does not look into.
package envoy_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// The typed_config types the configurations use. protojson resolves an
	// Any's "@type" through the global registry, which knows a type only if
	// its package is linked in: a config that uses a new extension fails with
	// "unable to resolve" until its package is imported here.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/formatter/req_without_query/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// nonEnvoyFiles are the YAML files in envoy/ that are not Envoy bootstraps.
// Any other YAML file must decode as a bootstrap, so a broken config cannot
// hide by not looking like one.
var nonEnvoyFiles = map[string]bool{
	"route-rules.yaml": true,
}

// TestBootstraps decodes and validates every Envoy bootstrap in envoy/.
func TestBootstraps(t *testing.T) {
	paths := bootstrapPaths(t)
	if len(paths) == 0 {
		t.Fatal("found no Envoy bootstrap in envoy/")
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := LoadBootstrap(data); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		})
	}
}

// bootstrapPaths lists the Envoy bootstraps under envoy/, skipping istio/
// (Istio resources, tested in istio_test.go) and nonEnvoyFiles.
func bootstrapPaths(tb testing.TB) []string {
	tb.Helper()
	var paths []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path == "istio" {
			return fs.SkipDir
		}
		ext := filepath.Ext(path)
		if d.IsDir() || (ext != ".yaml" && ext != ".yml") || nonEnvoyFiles[path] {
			return nil
		}
		paths = append(paths, path)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return paths
}

// MustLoadBootstrap reads and validates the bootstrap at path.
func MustLoadBootstrap(tb testing.TB, path string) *bootstrapv3.Bootstrap {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := LoadBootstrap(data)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return b
}

// LoadBootstrap decodes YAML the way Envoy does (YAML to JSON, then the
// proto's JSON mapping, rejecting unknown fields) and validates the result.
func LoadBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	b, err := decodeBootstrap(js)
	if err != nil {
		return nil, err
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	if err := ValidateTree(b); err != nil {
		return nil, err
	}
	return b, nil
}

// decodeBootstrap decodes JSON strictly. DiscardUnknown stays false: Envoy
// rejects unknown fields, so must we. Each Any's "@type" must resolve.
func decodeBootstrap(js []byte) (*bootstrapv3.Bootstrap, error) {
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return b, nil
}

type validator interface{ ValidateAll() error }

// ValidateTree walks m and every message below it, unpacking each Any,
// validating the unpacked message, and rejecting deprecated fields and enum
// values (Envoy warns on them, and some are fatal by default).
func ValidateTree(m proto.Message) error {
	var errs []error
	walk(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().Name()), &errs)
	return errors.Join(errs...)
}

func walk(m protoreflect.Message, path string, errs *[]error) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: resolve %q: %w (import its package in bootstrap_test.go)", path, a.GetTypeUrl(), err))
			return
		}
		name := inner.ProtoReflect().Descriptor().FullName()
		if name == "xds.type.v3.TypedStruct" || name == "udpa.type.v1.TypedStruct" {
			*errs = append(*errs, fmt.Errorf("%s: %s hides its content from validation; use the typed message", path, name))
			return
		}
		path = fmt.Sprintf("%s<%s>", path, name)
		if v, ok := inner.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				*errs = append(*errs, fmt.Errorf("%s: validate: %w", path, err))
			}
		}
		walk(inner.ProtoReflect(), path, errs)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		fpath := path + "." + string(fd.Name())
		if fd.Options().(*descriptorpb.FieldOptions).GetDeprecated() {
			*errs = append(*errs, fmt.Errorf("%s: field is deprecated", fpath))
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				visit(fd, l.Get(i), fmt.Sprintf("%s[%d]", fpath, i), errs)
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				visit(fd.MapValue(), mv, fmt.Sprintf("%s[%s]", fpath, k.String()), errs)
				return true
			})
		default:
			visit(fd, v, fpath, errs)
		}
		return true
	})
}

// visit checks one value of field fd: it recurses into messages and rejects
// deprecated enum values.
func visit(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string, errs *[]error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		walk(v.Message(), path, errs)
	case protoreflect.EnumKind:
		ev := fd.Enum().Values().ByNumber(v.Enum())
		if ev != nil && ev.Options().(*descriptorpb.EnumValueOptions).GetDeprecated() {
			*errs = append(*errs, fmt.Errorf("%s: enum value %s is deprecated", path, ev.Name()))
		}
	}
}

// TestNonEnvoyFilesExist keeps nonEnvoyFiles honest.
func TestNonEnvoyFilesExist(t *testing.T) {
	for name := range nonEnvoyFiles {
		if _, err := os.Stat(name); err != nil {
			t.Errorf("nonEnvoyFiles lists %s: %v", name, err)
		}
		if strings.Contains(name, string(filepath.Separator)) {
			t.Errorf("nonEnvoyFiles entry %s: want a name in envoy/", name)
		}
	}
}
