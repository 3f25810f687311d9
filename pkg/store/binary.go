package store

import (
	"encoding/binary"
	"slices"
	"unsafe"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the binary stored form of tensor maps, v1: its layout and encoder.

// The stored form of a tensor map, since migration 00004, is binary. It is
// what AppendStoredTensors writes, what backends keep in their inputs and
// outputs columns, and what DecodeTensors and TensorsJSON read, together
// with the JSON form of EncodeTensors that older rows hold. The first byte
// tells them apart: JSON text starts with '{' (or "null"), the binary form
// with StoredTensorsV1, which is never the first byte of UTF-8 text.
//
// Layout, version 1 (all integers are unsigned LEB128 varints, "uvarint",
// unless said otherwise; dimensions are zigzag varints, as Go's
// binary.AppendVarint writes them):
//
//	byte     0xB1: StoredTensorsV1, the format and its version
//	uvarint  number of tensors, then each tensor, names in ascending byte order:
//	  uvarint  name length, then the name's UTF-8 bytes
//	  byte     element type, ONNX's TensorProto number as understudy.DType
//	           (1 float32, 2 uint8, 3 int8, 4 uint16, 5 int16, 6 int32,
//	           7 int64, 8 string, 9 bool, 10 float16, 11 float64, 12 uint32,
//	           13 uint64); 0 for a nil tensor, which ends the tensor here
//	  byte     flags: bit 0 set when the data follows; clear when the data
//	           did not match the shape and was not stored (JSON "data": null)
//	  uvarint  rank, then rank dimensions as zigzag varints
//	  data     the elements in row-major order, as many as the shape holds:
//	           little-endian, 1 byte each for int8, uint8 and bool (0 or 1),
//	           2 for int16, uint16 and float16 (IEEE half bits), 4 for
//	           int32, uint32 and float32, 8 for int64, uint64 and float64;
//	           each string element is a uvarint byte length and its bytes
//
// Floats keep their exact bits, NaN payloads and infinities included. The
// JSON form (EncodeTensors) is still what consumers see: the store contract's
// records carry tensors as JSON, and backends convert with TensorsJSON. The
// hash and size of inputs kept over the input cap are those of the JSON form.
const StoredTensorsV1 byte = 0xB1

// IsStoredBinary reports whether raw is in the binary stored form rather
// than the JSON of older rows.
func IsStoredBinary(raw []byte) bool { return len(raw) > 0 && raw[0] == StoredTensorsV1 }

// littleEndian is whether this machine stores numbers as the format does,
// so that their bytes can be copied as they are.
var littleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// StoredTensorsSize returns an upper bound of the bytes AppendStoredTensors
// adds for m, for sizing a buffer.
func StoredTensorsSize(m map[string]*understudy.Tensor) int {
	n := 1 + binary.MaxVarintLen64
	for name, t := range m {
		n += 2*binary.MaxVarintLen64 + len(name) + 2
		if t == nil {
			continue
		}
		n += binary.MaxVarintLen64 * len(t.Shape)
		if s, ok := t.Data.([]string); ok {
			for _, e := range s {
				n += binary.MaxVarintLen64 + len(e)
			}
			continue
		}
		n += 8 * lenOf(t.Data)
	}
	return n
}

// EncodeStoredTensors returns the binary stored form of m.
func EncodeStoredTensors(m map[string]*understudy.Tensor) []byte {
	return AppendStoredTensors(make([]byte, 0, StoredTensorsSize(m)), m)
}

// AppendStoredTensors appends the binary stored form of m to b (see
// StoredTensorsV1 for the layout). Like EncodeTensors it never panics: a
// tensor whose data does not match its shape is stored without its data.
func AppendStoredTensors(b []byte, m map[string]*understudy.Tensor) []byte {
	b = append(b, StoredTensorsV1)
	b = binary.AppendUvarint(b, uint64(len(m)))
	var one [1]string
	names := one[:0]
	if len(m) > 1 {
		names = make([]string, 0, len(m))
	}
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		t := m[name]
		if t == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, byte(t.DType))
		ok := consistent(t) && dataMatches(t)
		if ok {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendUvarint(b, uint64(len(t.Shape)))
		for _, d := range t.Shape {
			b = binary.AppendVarint(b, d)
		}
		if ok {
			b = appendData(b, t.Data)
		}
	}
	return b
}

// dataMatches reports whether t's Go data type is the one its DType
// stores, so that the elements are written at the size the reader expects.
func dataMatches(t *understudy.Tensor) bool {
	var ok bool
	switch t.Data.(type) {
	case []float32:
		ok = t.DType == understudy.Float32
	case []float64:
		ok = t.DType == understudy.Float64
	case []uint16:
		ok = t.DType == understudy.Uint16 || t.DType == understudy.Float16
	case []int8:
		ok = t.DType == understudy.Int8
	case []int16:
		ok = t.DType == understudy.Int16
	case []int32:
		ok = t.DType == understudy.Int32
	case []int64:
		ok = t.DType == understudy.Int64
	case []uint8:
		ok = t.DType == understudy.Uint8
	case []uint32:
		ok = t.DType == understudy.Uint32
	case []uint64:
		ok = t.DType == understudy.Uint64
	case []bool:
		ok = t.DType == understudy.Bool
	case []string:
		ok = t.DType == understudy.String
	}
	return ok
}

func appendData(b []byte, data any) []byte {
	switch d := data.(type) {
	case []float32:
		return appendLE(b, d)
	case []float64:
		return appendLE(b, d)
	case []uint16:
		return appendLE(b, d)
	case []int8:
		return appendLE(b, d)
	case []int16:
		return appendLE(b, d)
	case []int32:
		return appendLE(b, d)
	case []int64:
		return appendLE(b, d)
	case []uint8:
		return append(b, d...)
	case []uint32:
		return appendLE(b, d)
	case []uint64:
		return appendLE(b, d)
	case []bool:
		for _, v := range d {
			if v {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
		return b
	case []string:
		for _, s := range d {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		return b
	}
	return b
}

type fixed interface {
	~float32 | ~float64 | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// appendLE appends d's elements little-endian.
func appendLE[T fixed](b []byte, d []T) []byte {
	if len(d) == 0 {
		return b
	}
	size := int(unsafe.Sizeof(d[0]))
	if littleEndian {
		return append(b, unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*size)...)
	}
	for _, v := range d {
		switch size {
		case 1:
			b = append(b, byte(v))
		case 2:
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		case 4:
			b = binary.LittleEndian.AppendUint32(b, bitsOf32(v))
		default:
			b = binary.LittleEndian.AppendUint64(b, bitsOf64(v))
		}
	}
	return b
}

func bitsOf32[T fixed](v T) uint32 { return *(*uint32)(unsafe.Pointer(&v)) }

func bitsOf64[T fixed](v T) uint64 { return *(*uint64)(unsafe.Pointer(&v)) }

func lenOf(data any) int {
	switch d := data.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []uint16:
		return len(d)
	case []int8:
		return len(d)
	case []int16:
		return len(d)
	case []int32:
		return len(d)
	case []int64:
		return len(d)
	case []uint8:
		return len(d)
	case []uint32:
		return len(d)
	case []uint64:
		return len(d)
	case []bool:
		return len(d)
	case []string:
		return len(d)
	}
	return -1
}
