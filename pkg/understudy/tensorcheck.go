package understudy

import (
	"math"
	"slices"
	"strings"
)

// This file checks tensors and shapes against the inputs they are for.

// CheckTensor checks a tensor built from another encoding (raw bytes, typed
// protobuf contents) against the input it is for, with the same rules and
// messages as DecodeTensor.
func CheckTensor(t *Tensor, info TensorInfo) error {
	if t.DType != info.DType {
		return Errorf(EINVALID, "input %q: got %v, want %v", info.Name, t.DType, info.DType)
	}
	return checkShape(t.Shape, info)
}

// checkNUL refuses a string with a NUL byte: ONNX Runtime's string tensors
// take C strings, so the model would silently see the value cut short.
func checkNUL(name, where, s string) error {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return Errorf(EINVALID, "input %q: element %s has a NUL byte at %d; string tensors end at NUL, so the model would see it cut short", name, where, i)
	}
	return nil
}

// CheckShape checks a client's shape against the input it is for, before
// any data is read or allocated.
func CheckShape(shape []int64, info TensorInfo) error { return checkShape(shape, info) }

// shapeElems returns how many elements a client's shape holds, refusing
// negative dimensions and shapes too large to allocate. what names the
// shape in messages.
func shapeElems(shape []int64, name, what string) (int, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, Errorf(EINVALID, "input %q: %s %s has a negative dimension at %d", name, what, FormatShape(shape), i)
		}
	}
	for _, d := range shape {
		if d != 0 && n > math.MaxInt32/d {
			return 0, Errorf(EINVALID, "input %q: %s %s is too large", name, what, FormatShape(shape))
		}
		n *= d
	}
	return int(n), nil
}

// reshape gives flat t the client's shape, which must hold as many
// elements as t has.
func reshape(t *Tensor, shape []int64, name, what string) error {
	want, err := shapeElems(shape, name, what)
	if err != nil {
		return err
	}
	if int64(want) != t.Shape[0] {
		return Errorf(EINVALID, "input %q: %s %s holds %d elements, but data has %d", name, what, FormatShape(shape), want, t.Shape[0])
	}
	t.Shape = slices.Clone(shape)
	return nil
}

func checkShape(shape []int64, info TensorInfo) error {
	want := func() string { return FormatShape(info.Dims) } // only for messages
	if len(shape) != len(info.Dims) {
		return Errorf(EINVALID, "input %q: got shape %s (rank %d), want rank %d shape %s (-1 = any size)", info.Name, FormatShape(shape), len(shape), len(info.Dims), want())
	}
	for i, d := range shape {
		if d == 0 {
			return Errorf(EINVALID, "input %q: got shape %s, which holds no elements; want shape %s", info.Name, FormatShape(shape), want())
		}
		if w := info.Dims[i]; w >= 0 && w != d {
			return Errorf(EINVALID, "input %q: dimension %d is %d, want %d: got shape %s, want %s (-1 = any size)", info.Name, i, d, w, FormatShape(shape), want())
		}
	}
	return nil
}
