package onnxbuild_test

import (
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// fields is one decoded protobuf message, kept in wire order so tests can check repeated
// fields and their order.
type fields []field

type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64 // varint, fixed32 or fixed64 value
	b   []byte // bytes value
}

func parse(tb testing.TB, b []byte) fields {
	tb.Helper()
	var out fields
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			tb.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.v = uint64(v)
		case protowire.Fixed64Type:
			f.v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			tb.Fatalf("field %d: unexpected wire type %d", num, typ)
		}
		if n < 0 {
			tb.Fatalf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		out = append(out, f)
	}
	return out
}

func (fs fields) all(num protowire.Number) []field {
	var out []field
	for _, f := range fs {
		if f.num == num {
			out = append(out, f)
		}
	}
	return out
}

func (fs fields) has(num protowire.Number) bool { return len(fs.all(num)) > 0 }

func (fs fields) str(num protowire.Number) string {
	all := fs.all(num)
	if len(all) == 0 {
		return ""
	}
	return string(all[len(all)-1].b)
}

func (fs fields) strs(num protowire.Number) []string {
	var out []string
	for _, f := range fs.all(num) {
		out = append(out, string(f.b))
	}
	return out
}

func (fs fields) int(num protowire.Number) int64 {
	all := fs.all(num)
	if len(all) == 0 {
		return 0
	}
	return int64(all[len(all)-1].v)
}

// ints reads a repeated integer field whether it was written packed or one tag per element.
func (fs fields) ints(tb testing.TB, num protowire.Number) []int64 {
	tb.Helper()
	var out []int64
	for _, f := range fs.all(num) {
		if f.typ != protowire.BytesType {
			out = append(out, int64(f.v))
			continue
		}
		for b := f.b; len(b) > 0; {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				tb.Fatalf("field %d: %v", num, protowire.ParseError(n))
			}
			out = append(out, int64(v))
			b = b[n:]
		}
	}
	return out
}

// floats reads a repeated float field whether packed or not.
func (fs fields) floats(tb testing.TB, num protowire.Number) []float32 {
	tb.Helper()
	var out []float32
	for _, f := range fs.all(num) {
		if f.typ == protowire.Fixed32Type {
			out = append(out, math.Float32frombits(uint32(f.v)))
			continue
		}
		for b := f.b; len(b) > 0; {
			v, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				tb.Fatalf("field %d: %v", num, protowire.ParseError(n))
			}
			out = append(out, math.Float32frombits(v))
			b = b[n:]
		}
	}
	return out
}

func (fs fields) msg(tb testing.TB, num protowire.Number) fields {
	tb.Helper()
	all := fs.all(num)
	if len(all) != 1 {
		tb.Fatalf("field %d occurs %d times, want 1", num, len(all))
	}
	return parse(tb, all[0].b)
}

func (fs fields) msgs(tb testing.TB, num protowire.Number) []fields {
	tb.Helper()
	var out []fields
	for _, f := range fs.all(num) {
		out = append(out, parse(tb, f.b))
	}
	return out
}
