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

// EncodeTensors encodes a tensor map as the JSON object stored in the
// database: {"name": {"dtype": "float32", "shape": [..], "data": [..]}}, with
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

// DecodeTensors decodes JSON written by EncodeTensors. NaN and infinities,
// written as strings, decode back to floats; a tensor stored with "data":
// null decodes with nil Data.
func DecodeTensors(raw []byte) (map[string]*understudy.Tensor, error) {
	var stored map[string]*struct {
		DType understudy.DType `json:"dtype"`
		Shape []int64          `json:"shape"`
		Data  json.RawMessage  `json:"data"`
	}
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, fmt.Errorf("decode tensors: %w", err)
	}
	out := make(map[string]*understudy.Tensor, len(stored))
	for name, s := range stored {
		if s == nil {
			out[name] = nil
			continue
		}
		if s.Shape == nil {
			s.Shape = []int64{}
		}
		t, err := decodeTensor(name, s.DType, s.Shape, s.Data)
		if err != nil {
			return nil, fmt.Errorf("decode tensor %q: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
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

// MarshalComparison encodes c as the JSON stored with a shadow result.
// JSON has no NaN or infinity, so a comparison holding one is written with
// those fields left out; a backend's numeric columns still hold them.
func MarshalComparison(c *understudy.Comparison) []byte {
	if b, err := json.Marshal(c); err == nil {
		return b
	}
	finite := func(f *float64) *float64 {
		if f == nil || math.IsNaN(*f) || math.IsInf(*f, 0) {
			return nil
		}
		return f
	}
	cc := *c
	cc.Agreement, cc.MaxAbsDiff, cc.MeanAbsDiff = finite(c.Agreement), finite(c.MaxAbsDiff), finite(c.MeanAbsDiff)
	cc.Outputs = slices.Clone(c.Outputs)
	for i := range cc.Outputs {
		o := &cc.Outputs[i]
		o.MaxAbsDiff, o.MeanAbsDiff = finite(o.MaxAbsDiff), finite(o.MeanAbsDiff)
	}
	b, err := json.Marshal(&cc)
	if err != nil {
		return []byte("null")
	}
	return b
}

// HeadlineOutputs returns the names of the first class output and the first
// float output of c: the outputs its Agreement, classes and differences
// come from.
func HeadlineOutputs(c *understudy.Comparison) (class, float string) {
	for _, o := range c.Outputs {
		if class == "" && o.Kind == understudy.KindClass && o.Rows > 0 {
			class = o.Name
		}
		if float == "" && o.MaxAbsDiff != nil {
			float = o.Name
		}
	}
	return class, float
}
