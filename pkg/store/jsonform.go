package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the JSON form of tensor maps: what consumers see, old rows hold.

// EncodeTensors encodes a tensor map as JSON, the form consumers see and
// the one stored before migration 00004 (backends now store the binary form
// of AppendStoredTensors): {"name": {"dtype": "float32", "shape": [..], "data": [..]}}, with
// data as a nested array written by understudy.AppendJSON. Names are sorted,
// so equal maps encode to equal bytes and hash alike. A tensor whose data does
// not match its shape is written with "data": null rather than panicking.
func EncodeTensors(m map[string]*understudy.Tensor) []byte {
	// Size the buffer once: a float takes about 12 bytes, the framing 64.
	n := 2
	for name, t := range m {
		n += len(name) + 64
		if t != nil && consistent(t) {
			n += 12 * t.Len()
		}
	}
	return appendTensors(make([]byte, 0, n), m)
}

func appendTensors(b []byte, m map[string]*understudy.Tensor) []byte {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	b = append(b, '{')
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = understudy.AppendJSONString(b, n)
		b = append(b, ':')
		t := m[n]
		if t == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, `{"dtype":`...)
		b = understudy.AppendJSONString(b, t.DType.String())
		b = append(b, `,"shape":[`...)
		for k, d := range t.Shape {
			if k > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data":`...)
		if consistent(t) {
			b = understudy.AppendJSON(b, t)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// consistent reports whether AppendJSON can walk t without indexing past its
// data: the store must never crash the server over a malformed tensor.
func consistent(t *understudy.Tensor) bool {
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 || (d > 0 && n > math.MaxInt32/d) {
			return false
		}
		n *= d
	}
	var l int
	switch d := t.Data.(type) {
	case []float32:
		l = len(d)
	case []float64:
		l = len(d)
	case []uint16:
		l = len(d)
	case []int8:
		l = len(d)
	case []int16:
		l = len(d)
	case []int32:
		l = len(d)
	case []int64:
		l = len(d)
	case []uint8:
		l = len(d)
	case []uint32:
		l = len(d)
	case []uint64:
		l = len(d)
	case []bool:
		l = len(d)
	case []string:
		l = len(d)
	default:
		return false
	}
	return int64(l) == n
}

func decodeTensor(name string, dt understudy.DType, shape []int64, data json.RawMessage) (*understudy.Tensor, error) {
	if len(data) == 0 || string(data) == "null" {
		return &understudy.Tensor{DType: dt, Shape: shape}, nil
	}
	empty := false
	for _, d := range shape {
		empty = empty || d == 0
	}
	if empty {
		// A nested array cannot carry the dimensions after a zero one, and
		// DecodeTensor refuses empty inputs; the stored shape says it all.
		return understudy.NewTensor(dt, shape)
	}
	if dt.IsFloat() && bytes.IndexByte(data, '"') >= 0 {
		return decodeSpecialFloats(dt, shape, data)
	}
	return understudy.DecodeTensor(data, understudy.TensorInfo{Name: name, DType: dt, Dims: shape})
}

// decodeSpecialFloats decodes a float tensor holding the strings "NaN",
// "Infinity" or "-Infinity", which DecodeTensor refuses in client input.
func decodeSpecialFloats(dt understudy.DType, shape []int64, data []byte) (*understudy.Tensor, error) {
	t, err := understudy.NewTensor(dt, shape)
	if err != nil {
		return nil, err
	}
	bits := 32
	if dt == understudy.Float64 {
		bits = 64
	}
	i := 0
	for _, tok := range bytes.FieldsFunc(data, func(r rune) bool {
		return r == '[' || r == ']' || r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r'
	}) {
		var f float64
		switch string(tok) {
		case `"NaN"`:
			f = math.NaN()
		case `"Infinity"`:
			f = math.Inf(1)
		case `"-Infinity"`:
			f = math.Inf(-1)
		default:
			if f, err = strconv.ParseFloat(string(tok), bits); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		if i >= t.Len() {
			return nil, fmt.Errorf("more elements than shape %s holds", understudy.FormatShape(shape))
		}
		switch d := t.Data.(type) {
		case []float32:
			d[i] = float32(f)
		case []float64:
			d[i] = f
		case []uint16:
			d[i] = understudy.Float32ToHalf(float32(f))
		}
		i++
	}
	if i != t.Len() {
		return nil, fmt.Errorf("%d elements, shape %s holds %d", i, understudy.FormatShape(shape), t.Len())
	}
	return t, nil
}
