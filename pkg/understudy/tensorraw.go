package understudy

import (
	"encoding/binary"
	"math"
	"reflect"
	"unsafe"
)

// This file holds the binary and typed-array forms of tensors that the Open
// Inference Protocol uses beside JSON: raw little-endian bytes in row-major
// order (gRPC raw_*_contents and the REST binary data extension), and the
// typed arrays of gRPC's InferTensorContents. Every form ends in the same
// Tensor, checked by the same rules.

// DecodeRaw reads a tensor of type dt and the client's shape from raw
// bytes: little-endian, row-major, and for strings each element as a 4-byte
// little-endian length followed by its bytes. Every fault is an EINVALID
// error naming the input and the size expected.
func DecodeRaw(raw []byte, dt DType, shape []int64, name string) (*Tensor, error) {
	n, err := shapeElems(shape, name, "shape")
	if err != nil {
		return nil, err
	}
	// The sizes are checked before anything is allocated: the shape is
	// the client's word, the bytes are what it sent.
	size := dt.Size()
	switch {
	case dt == String && len(raw) < 4*n:
		return nil, Errorf(EINVALID, "input %q: raw data is %d bytes, too few for the %d strings that shape %s holds; each is a 4-byte little-endian length and its bytes", name, len(raw), n, FormatShape(shape))
	case dt != String && len(raw) != n*size:
		return nil, Errorf(EINVALID, "input %q: raw data is %d bytes, but shape %s of %v needs %d (%d elements of %d bytes)", name, len(raw), FormatShape(shape), dt, n*size, n, size)
	}
	t, err := NewTensor(dt, shape)
	if err != nil {
		return nil, Errorf(EINVALID, "input %q: element type %v is not supported", name, dt)
	}
	if dt == String {
		if err := decodeRawStrings(raw, t.Data.([]string), shape, name); err != nil {
			return nil, err
		}
		return t, nil
	}
	le := binary.LittleEndian
	switch d := t.Data.(type) {
	case []float32:
		for i := range d {
			d[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case []float64:
		for i := range d {
			d[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
	case []uint16: // also float16 bits
		for i := range d {
			d[i] = le.Uint16(raw[2*i:])
		}
	case []int8:
		for i := range d {
			d[i] = int8(raw[i])
		}
	case []uint8:
		copy(d, raw)
	case []int16:
		for i := range d {
			d[i] = int16(le.Uint16(raw[2*i:]))
		}
	case []int32:
		for i := range d {
			d[i] = int32(le.Uint32(raw[4*i:]))
		}
	case []uint32:
		for i := range d {
			d[i] = le.Uint32(raw[4*i:])
		}
	case []int64:
		for i := range d {
			d[i] = int64(le.Uint64(raw[8*i:]))
		}
	case []uint64:
		for i := range d {
			d[i] = le.Uint64(raw[8*i:])
		}
	case []bool:
		for i := range d {
			if raw[i] > 1 {
				return nil, Errorf(EINVALID, "input %q: raw bool element %d is byte 0x%02x; want 0 or 1", name, i, raw[i])
			}
			d[i] = raw[i] == 1
		}
	}
	return t, nil
}

func decodeRawStrings(raw []byte, d []string, shape []int64, name string) error {
	pos := 0
	for i := range d {
		if len(raw)-pos < 4 {
			return Errorf(EINVALID, "input %q: raw data ends after %d of the %d strings that shape %s holds; each is a 4-byte little-endian length and its bytes", name, i, len(d), FormatShape(shape))
		}
		l := int(binary.LittleEndian.Uint32(raw[pos:]))
		pos += 4
		if l > len(raw)-pos {
			return Errorf(EINVALID, "input %q: raw string %d claims %d bytes, but only %d remain", name, i, l, len(raw)-pos)
		}
		d[i] = string(raw[pos : pos+l])
		if err := checkNUL(name, FormatShape([]int64{int64(i)}), d[i]); err != nil {
			return err
		}
		pos += l
	}
	if pos != len(raw) {
		return Errorf(EINVALID, "input %q: raw data has %d bytes after the %d strings that shape %s holds", name, len(raw)-pos, len(d), FormatShape(shape))
	}
	return nil
}

// AppendRaw appends t in the raw form DecodeRaw reads.
func AppendRaw(b []byte, t *Tensor) []byte {
	le := binary.LittleEndian
	switch d := t.Data.(type) {
	case []float32:
		for _, v := range d {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
	case []float64:
		for _, v := range d {
			b = le.AppendUint64(b, math.Float64bits(v))
		}
	case []uint16:
		for _, v := range d {
			b = le.AppendUint16(b, v)
		}
	case []int8:
		b = append(b, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(d))), len(d))...)
	case []uint8:
		b = append(b, d...)
	case []int16:
		for _, v := range d {
			b = le.AppendUint16(b, uint16(v))
		}
	case []int32:
		for _, v := range d {
			b = le.AppendUint32(b, uint32(v))
		}
	case []uint32:
		for _, v := range d {
			b = le.AppendUint32(b, v)
		}
	case []int64:
		for _, v := range d {
			b = le.AppendUint64(b, uint64(v))
		}
	case []uint64:
		for _, v := range d {
			b = le.AppendUint64(b, v)
		}
	case []bool:
		for _, v := range d {
			if v {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	case []string:
		for _, v := range d {
			b = le.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

// RawSize returns the length of t in the raw form.
func RawSize(t *Tensor) int {
	if d, ok := t.Data.([]string); ok {
		n := 0
		for _, v := range d {
			n += 4 + len(v)
		}
		return n
	}
	return t.Len() * t.DType.Size()
}

// FromValues builds a tensor of type dt and the client's shape from a typed
// array: []bool, []int32, []int64, []uint32, []uint64, []float32, []float64
// or [][]byte (for strings). Narrower integer types arrive widened, as gRPC's
// contents carry them, and are range-checked. what names the array in
// messages, e.g. "int_contents".
func FromValues(dt DType, shape []int64, name, what string, src any) (*Tensor, error) {
	n, err := shapeElems(shape, name, "shape")
	if err != nil {
		return nil, err
	}
	if !valuesFit(dt, src) {
		return nil, Errorf(EINTERNAL, "input %q: %T cannot hold %v", name, src, dt)
	}
	if got := reflect.ValueOf(src).Len(); got != n {
		return nil, Errorf(EINVALID, "input %q: %s has %d elements, but shape %s holds %d", name, what, got, FormatShape(shape), n)
	}
	t, err := NewTensor(dt, shape)
	if err != nil {
		return nil, Errorf(EINVALID, "input %q: element type %v is not supported", name, dt)
	}
	// The same words as the JSON parser's, so that a value out of range
	// reads alike over every transport.
	outOfRange := func(i int, v any) error {
		where := FormatShape([]int64{int64(i)})
		if _, unsigned := v.(uint32); unsigned {
			return Errorf(EINVALID, "input %q: element %s value %v is out of range for %s (0 to %d)", name, where, v, dt, dt.uintMax())
		}
		lo, hi := dt.intRange()
		return Errorf(EINVALID, "input %q: element %s value %v is out of range for %s (%d to %d)", name, where, v, dt, lo, hi)
	}
	switch s := src.(type) {
	case []bool:
		copy(t.Data.([]bool), s)
	case []float32:
		copy(t.Data.([]float32), s)
	case []float64:
		copy(t.Data.([]float64), s)
	case []int64:
		copy(t.Data.([]int64), s)
	case []uint64:
		copy(t.Data.([]uint64), s)
	case []int32:
		lo, hi := dt.intRange()
		for i, v := range s {
			if int64(v) < lo || int64(v) > hi {
				return nil, outOfRange(i, v)
			}
			switch d := t.Data.(type) {
			case []int8:
				d[i] = int8(v)
			case []int16:
				d[i] = int16(v)
			case []int32:
				d[i] = v
			}
		}
	case []uint32:
		for i, v := range s {
			if uint64(v) > dt.uintMax() {
				return nil, outOfRange(i, v)
			}
			switch d := t.Data.(type) {
			case []uint8:
				d[i] = uint8(v)
			case []uint16:
				d[i] = uint16(v)
			case []uint32:
				d[i] = v
			}
		}
	case [][]byte:
		d := t.Data.([]string)
		for i, v := range s {
			d[i] = string(v)
			if err := checkNUL(name, FormatShape([]int64{int64(i)}), d[i]); err != nil {
				return nil, err
			}
		}
	default:
		return nil, Errorf(EINTERNAL, "FromValues: unsupported source %T", src)
	}
	return t, nil
}

// valuesFit reports whether FromValues can fill a dt tensor from src.
func valuesFit(dt DType, src any) bool {
	switch src.(type) {
	case []bool:
		return dt == Bool
	case []float32:
		return dt == Float32
	case []float64:
		return dt == Float64
	case []int64:
		return dt == Int64
	case []uint64:
		return dt == Uint64
	case []int32:
		return dt == Int8 || dt == Int16 || dt == Int32
	case []uint32:
		return dt == Uint8 || dt == Uint16 || dt == Uint32
	case [][]byte:
		return dt == String
	}
	return false
}

// AppendJSONFlat appends t's elements as one flat JSON array in row-major
// order, with the same element encoding as AppendJSON.
func AppendJSONFlat(b []byte, t *Tensor) []byte {
	b = append(b, '[')
	for i, n := 0, t.Len(); i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendElem(b, t, i)
	}
	return append(b, ']')
}
