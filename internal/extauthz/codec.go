package extauthz

import (
	"strings"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Codec is the gRPC codec for Tollgate's server (grpc.ForceServerCodecV2).
// It is gRPC's protobuf codec except in one case: a CheckRequest whose
// string fields hold bytes that are not UTF-8. Envoy sends header values
// and the path as it received them, and Go's protobuf refuses such a
// message, which would make Check a gRPC error, and an error is an allow
// where an operator set failure_mode_allow. Codec instead replaces the
// invalid bytes with U+FFFD and marks the request, and Check denies it
// (request_invalid).
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name is the codec's content subtype: it stands in for "proto".
func (Codec) Name() string { return "proto" }

// Marshal encodes as gRPC's protobuf codec does.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2("proto").Marshal(v)
}

// Unmarshal decodes as gRPC's protobuf codec does, repairing a CheckRequest
// whose only fault is invalid UTF-8 in strings.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	err := encoding.GetCodecV2("proto").Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, v)
	cr, ok := v.(*authv3.CheckRequest)
	if err == nil || !ok {
		return err
	}
	fixed, changed := repairUTF8(b, cr.ProtoReflect().Descriptor(), 0)
	if !changed {
		return err
	}
	proto.Reset(cr)
	if err2 := proto.Unmarshal(fixed, cr); err2 != nil {
		return err
	}
	m := cr.ProtoReflect()
	m.SetUnknown(append(m.GetUnknown(), repairMark...))
	return nil
}

// repairMarkField is the number of the unknown field that marks a repaired
// request: the highest a field may have, far from any Envoy will use. A
// client that sends it only gets its own request denied.
const repairMarkField = protowire.Number(536870911)

var repairMark = protowire.AppendVarint(protowire.AppendTag(nil, repairMarkField, protowire.VarintType), 1)

// hasRepairMark reports whether Codec repaired cr. It costs nothing for a
// request without unknown fields, which is every request Envoy sends.
func hasRepairMark(cr *authv3.CheckRequest) bool {
	if cr == nil {
		return false
	}
	for b := cr.ProtoReflect().GetUnknown(); len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		if num == repairMarkField {
			return true
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return false
		}
		b = b[n+m:]
	}
	return false
}

// maxRepairDepth bounds the nesting repairUTF8 follows; Envoy's
// CheckRequest is a few levels deep.
const maxRepairDepth = 16

// repairUTF8 re-encodes the message b of type md with every string field
// that is not UTF-8 made valid, and reports whether it changed anything.
func repairUTF8(b []byte, md protoreflect.MessageDescriptor, depth int) ([]byte, bool) {
	out := make([]byte, 0, len(b))
	changed := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, false
		}
		field := b[:n+m]
		b = b[n+m:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		switch {
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			v = []byte(strings.ToValidUTF8(string(v), "\uFFFD"))
		case fd.Kind() == protoreflect.MessageKind && depth < maxRepairDepth:
			fixed, ok := repairUTF8(v, fd.Message(), depth+1)
			if !ok {
				out = append(out, field...)
				continue
			}
			v = fixed
		default:
			out = append(out, field...)
			continue
		}
		changed = true
		out = protowire.AppendTag(out, num, typ)
		out = protowire.AppendBytes(out, v)
	}
	return out, changed
}
