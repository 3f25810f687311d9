package understudy

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
)

// DType is a tensor element type. The values follow ONNX's TensorProto
// numbering so that adapters can convert without a lookup table.
type DType int

// The element types a model may use for its inputs and outputs.
const (
	Invalid DType = 0
	Float32 DType = 1
	Uint8   DType = 2
	Int8    DType = 3
	Uint16  DType = 4
	Int16   DType = 5
	Int32   DType = 6
	Int64   DType = 7
	String  DType = 8
	Bool    DType = 9
	Float16 DType = 10
	Float64 DType = 11
	Uint32  DType = 12
	Uint64  DType = 13
)

var dtypeNames = map[DType]string{
	Float32: "float32", Uint8: "uint8", Int8: "int8", Uint16: "uint16", Int16: "int16",
	Int32: "int32", Int64: "int64", String: "string", Bool: "bool", Float16: "float16",
	Float64: "float64", Uint32: "uint32", Uint64: "uint64",
}

// String returns the element type's name, as used in signatures and messages.
func (d DType) String() string {
	if n, ok := dtypeNames[d]; ok {
		return n
	}
	return fmt.Sprintf("dtype(%d)", int(d))
}

// MarshalText encodes the type by name so JSON signatures are readable.
func (d DType) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText decodes a type name written by MarshalText.
func (d *DType) UnmarshalText(b []byte) error {
	for k, v := range dtypeNames {
		if v == string(b) {
			*d = k
			return nil
		}
	}
	return fmt.Errorf("unknown element type %q", b)
}

// Supported reports whether the server can convert this type to and from JSON.
func (d DType) Supported() bool { _, ok := dtypeNames[d]; return ok }

// Size is the size in bytes of one element in memory and in the raw
// little-endian form; 0 for strings, whose elements carry their own length.
func (d DType) Size() int {
	switch d {
	case Bool, Int8, Uint8:
		return 1
	case Int16, Uint16, Float16:
		return 2
	case Int32, Uint32, Float32:
		return 4
	case Int64, Uint64, Float64:
		return 8
	}
	return 0
}

// IsFloat reports whether the type holds floating-point numbers.
func (d DType) IsFloat() bool { return d == Float32 || d == Float64 || d == Float16 }

// IsInteger reports whether the type holds signed or unsigned integers.
func (d DType) IsInteger() bool {
	switch d {
	case Uint8, Int8, Uint16, Int16, Int32, Int64, Uint32, Uint64:
		return true
	}
	return false
}

// intRange returns the inclusive bounds of a signed integer type.
func (d DType) intRange() (lo, hi int64) {
	switch d {
	case Int8:
		return math.MinInt8, math.MaxInt8
	case Int16:
		return math.MinInt16, math.MaxInt16
	case Int32:
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

// uintMax returns the upper bound of an unsigned integer type.
func (d DType) uintMax() uint64 {
	switch d {
	case Uint8:
		return math.MaxUint8
	case Uint16:
		return math.MaxUint16
	case Uint32:
		return math.MaxUint32
	}
	return math.MaxUint64
}

// Tensor is a dense, row-major tensor. Data holds a slice whose Go type
// follows DType: []float32, []float64, []int8 … []uint64, []bool, []string,
// and []uint16 holding IEEE half-precision bits for Float16.
type Tensor struct {
	DType DType
	Shape []int64
	Data  any
}

// Len returns the number of elements the shape describes (1 for a scalar).
func (t *Tensor) Len() int {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return int(n)
}

// NewTensor allocates a zeroed tensor of the given type and shape.
func NewTensor(dt DType, shape []int64) (*Tensor, error) {
	t := &Tensor{DType: dt, Shape: append([]int64(nil), shape...)}
	n := t.Len()
	switch dt {
	case Float32:
		t.Data = make([]float32, n)
	case Float64:
		t.Data = make([]float64, n)
	case Float16, Uint16:
		t.Data = make([]uint16, n)
	case Int8:
		t.Data = make([]int8, n)
	case Uint8:
		t.Data = make([]uint8, n)
	case Int16:
		t.Data = make([]int16, n)
	case Int32:
		t.Data = make([]int32, n)
	case Int64:
		t.Data = make([]int64, n)
	case Uint32:
		t.Data = make([]uint32, n)
	case Uint64:
		t.Data = make([]uint64, n)
	case Bool:
		t.Data = make([]bool, n)
	case String:
		t.Data = make([]string, n)
	default:
		return nil, fmt.Errorf("unsupported element type %v", dt)
	}
	return t, nil
}

// Float64s returns the elements converted to float64, for comparisons.
// Strings and unsupported types return nil.
func (t *Tensor) Float64s() []float64 {
	switch d := t.Data.(type) {
	case []float32:
		return conv(d)
	case []float64:
		return d
	case []uint16:
		if t.DType == Float16 {
			out := make([]float64, len(d))
			for i, v := range d {
				out[i] = float64(HalfToFloat32(v))
			}
			return out
		}
		return conv(d)
	case []int8:
		return conv(d)
	case []uint8:
		return conv(d)
	case []int16:
		return conv(d)
	case []int32:
		return conv(d)
	case []int64:
		return conv(d)
	case []uint32:
		return conv(d)
	case []uint64:
		return conv(d)
	case []bool:
		out := make([]float64, len(d))
		for i, v := range d {
			if v {
				out[i] = 1
			}
		}
		return out
	}
	return nil
}

func conv[T int8 | uint8 | int16 | uint16 | int32 | int64 | uint32 | uint64 | float32](d []T) []float64 {
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = float64(v)
	}
	return out
}

// FormatShape writes a shape as [a,b,c], the form used in every message.
func FormatShape(dims []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range dims {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d", d)
	}
	b.WriteByte(']')
	return b.String()
}

// rowLen returns the number of elements in one row (the first dimension).
func (t *Tensor) rowLen() int64 {
	n := int64(1)
	for _, d := range t.Shape[1:] {
		n *= d
	}
	return n
}

// Rows returns rows [from, to) of t, sharing t's data. The result's data is
// capped at its length, so appending to it cannot write into t.
func (t *Tensor) Rows(from, to int64) *Tensor {
	n := t.rowLen()
	shape := append([]int64{to - from}, t.Shape[1:]...)
	d := reflect.ValueOf(t.Data)
	return &Tensor{DType: t.DType, Shape: shape, Data: d.Slice3(int(from*n), int(to*n), int(to*n)).Interface()}
}

// Concat stacks tensors of one type along their first dimension. Their
// other dimensions must be equal.
func Concat(parts []*Tensor) (*Tensor, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("nothing to concatenate")
	}
	first := parts[0]
	if len(first.Shape) == 0 {
		return nil, fmt.Errorf("cannot concatenate scalars")
	}
	var rows int64
	total := 0
	for _, p := range parts {
		if p.DType != first.DType || len(p.Shape) != len(first.Shape) || !slices.Equal(p.Shape[1:], first.Shape[1:]) {
			return nil, fmt.Errorf("cannot stack %v %s on %v %s", p.DType, FormatShape(p.Shape), first.DType, FormatShape(first.Shape))
		}
		rows += p.Shape[0]
		total += reflect.ValueOf(p.Data).Len()
	}
	out := reflect.MakeSlice(reflect.TypeOf(first.Data), 0, total)
	for _, p := range parts {
		out = reflect.AppendSlice(out, reflect.ValueOf(p.Data))
	}
	shape := append([]int64{rows}, first.Shape[1:]...)
	return &Tensor{DType: first.DType, Shape: shape, Data: out.Interface()}, nil
}
