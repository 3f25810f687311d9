package onnx

import (
	"fmt"
	"slices"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file sizes a run's outputs in Go memory before the run (presizing).

// presizeMismatch reports whether a run failed because an output sized in
// advance had another shape than the run computed, the one failure a run
// with ORT-sized outputs can cure. Any other failure is the model's, and
// running it again would only double its cost.
func presizeMismatch(err error) bool {
	m := err.Error()
	return strings.Contains(m, "pre-allocated output") || strings.Contains(m, "Shape mismatch attempting to re-use buffer")
}

// allocateOutputs fills outs, destroying what they held. The binding cannot
// allocate rank-0 or float16 outputs itself, so those are always allocated
// here; with presize, so are the other numeric outputs whose shape the
// signature and the batch tell. The rest are left nil for ORT to size.
// presized reports whether any output was allocated only to save ORT the
// work, so that a failed run may be worth repeating without.
func (s *Session) allocateOutputs(outs []ort.Value, batch int64, presize bool) (presized bool, err error) {
	for i, info := range s.sig.Outputs {
		if outs[i] != nil {
			outs[i].Destroy()
			outs[i] = nil
		}
		required := len(info.Dims) == 0 || info.DType == understudy.Float16
		if !required && (!presize || info.DType == understudy.String) {
			continue
		}
		shape, ok := outputShape(info.Dims, batch)
		switch {
		case !ok && required:
			return false, fmt.Errorf("output %q: cannot size %v output with dims %v", info.Name, info.DType, info.Dims)
		case !ok:
			continue
		}
		if outs[i], err = emptyValue(info.DType, shape); err != nil {
			return false, fmt.Errorf("output %q: %w", info.Name, err)
		}
		presized = presized || !required
	}
	return presized, nil
}

// outputShape is dims with the batch for a dynamic first dimension; ok is
// false when any other dimension is dynamic or the batch is unknown.
func outputShape(dims []int64, batch int64) (shape ort.Shape, ok bool) {
	shape = make(ort.Shape, len(dims))
	for i, d := range dims {
		if d < 0 {
			if i > 0 || batch <= 0 {
				return nil, false
			}
			d = batch
		}
		shape[i] = d
	}
	return shape, true
}

// presizable reports whether any output's shape follows from the signature
// and the batch: a numeric tensor with fixed dimensions after the first.
func presizable(sig understudy.Signature) bool {
	for _, o := range sig.Outputs {
		if o.DType == understudy.String || o.DType == understudy.Float16 || len(o.Dims) == 0 {
			continue
		}
		if !slices.ContainsFunc(o.Dims[1:], func(d int64) bool { return d < 0 }) {
			return true
		}
	}
	return false
}

// emptyValue allocates a zeroed value in Go memory for ORT to write into: a
// scalar for an empty shape, else a tensor.
func emptyValue(dt understudy.DType, shape ort.Shape) (ort.Value, error) {
	return noTypedNil(newEmptyValue(dt, shape))
}

func newEmptyValue(dt understudy.DType, shape ort.Shape) (ort.Value, error) {
	switch dt {
	case understudy.Float32:
		return empty[float32](shape)
	case understudy.Float64:
		return empty[float64](shape)
	case understudy.Int8:
		return empty[int8](shape)
	case understudy.Uint8:
		return empty[uint8](shape)
	case understudy.Int16:
		return empty[int16](shape)
	case understudy.Uint16:
		return empty[uint16](shape)
	case understudy.Int32:
		return empty[int32](shape)
	case understudy.Uint32:
		return empty[uint32](shape)
	case understudy.Int64:
		return empty[int64](shape)
	case understudy.Uint64:
		return empty[uint64](shape)
	case understudy.Bool:
		return empty[bool](shape)
	case understudy.Float16:
		if len(shape) > 0 {
			return ort.NewCustomDataTensor(shape, make([]byte, shape.FlattenedSize()*2), ort.TensorElementDataTypeFloat16)
		}
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("rank-0 %v outputs are not supported", dt)
	}
	return nil, fmt.Errorf("%v outputs cannot be allocated in Go memory", dt)
}

func empty[T ort.TensorData](shape ort.Shape) (ort.Value, error) {
	if len(shape) == 0 {
		return ort.NewEmptyScalar[T]()
	}
	return ort.NewEmptyTensor[T](shape)
}
