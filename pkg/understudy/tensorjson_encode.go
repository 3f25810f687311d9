package understudy

import (
	"encoding/json"
	"math"
	"strconv"
)

// This file writes tensors as JSON.

// AppendJSON appends t as a nested JSON array (a bare value for rank 0).
// NaN and infinities, which JSON cannot hold, are written as the strings
// "NaN", "Infinity" and "-Infinity", as protobuf's JSON mapping does.
func AppendJSON(b []byte, t *Tensor) []byte {
	i := 0
	return appendLevel(b, t, 0, &i)
}

func appendLevel(b []byte, t *Tensor, depth int, i *int) []byte {
	if depth == len(t.Shape) {
		b = appendElem(b, t, *i)
		*i++
		return b
	}
	b = append(b, '[')
	for k := int64(0); k < t.Shape[depth]; k++ {
		if k > 0 {
			b = append(b, ',')
		}
		b = appendLevel(b, t, depth+1, i)
	}
	return append(b, ']')
}

func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

func appendElem(b []byte, t *Tensor, i int) []byte {
	switch d := t.Data.(type) {
	case []float32:
		return appendFloat(b, float64(d[i]), 32)
	case []float64:
		return appendFloat(b, d[i], 64)
	case []uint16:
		if t.DType == Float16 {
			return appendFloat(b, float64(HalfToFloat32(d[i])), 32)
		}
		return strconv.AppendUint(b, uint64(d[i]), 10)
	case []int8:
		return strconv.AppendInt(b, int64(d[i]), 10)
	case []int16:
		return strconv.AppendInt(b, int64(d[i]), 10)
	case []int32:
		return strconv.AppendInt(b, int64(d[i]), 10)
	case []int64:
		return strconv.AppendInt(b, d[i], 10)
	case []uint8:
		return strconv.AppendUint(b, uint64(d[i]), 10)
	case []uint32:
		return strconv.AppendUint(b, uint64(d[i]), 10)
	case []uint64:
		return strconv.AppendUint(b, d[i], 10)
	case []bool:
		return strconv.AppendBool(b, d[i])
	case []string:
		q, _ := json.Marshal(d[i])
		return append(b, q...)
	}
	return append(b, "null"...)
}

// AppendJSONString appends s as a JSON string. Plain ASCII, the usual case
// for ids and names, is copied without going through encoding/json.
func AppendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
