package onnx

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file converts domain tensors to ONNX Runtime values and back.

// toValue makes an ONNX Runtime value over t's memory; nil on error.
func toValue(t *understudy.Tensor) (ort.Value, error) {
	return noTypedNil(newValue(t))
}

// noTypedNil returns a nil Value with an error. The binding's constructors
// return a nil pointer, which as a Value is not nil: a caller that destroys
// every non-nil value on its way out would call Destroy on it and panic.
func noTypedNil(v ort.Value, err error) (ort.Value, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

func newValue(t *understudy.Tensor) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	if len(t.Shape) == 0 {
		return scalarValue(t)
	}
	switch d := t.Data.(type) {
	case []float32:
		return ort.NewTensor(shape, d)
	case []float64:
		return ort.NewTensor(shape, d)
	case []int8:
		return ort.NewTensor(shape, d)
	case []uint8:
		return ort.NewTensor(shape, d)
	case []int16:
		return ort.NewTensor(shape, d)
	case []int32:
		return ort.NewTensor(shape, d)
	case []int64:
		return ort.NewTensor(shape, d)
	case []uint32:
		return ort.NewTensor(shape, d)
	case []uint64:
		return ort.NewTensor(shape, d)
	case []bool:
		return ort.NewTensor(shape, d)
	case []uint16:
		if t.DType == understudy.Float16 {
			return ort.NewCustomDataTensor(shape, u16bytes(d), ort.TensorElementDataTypeFloat16)
		}
		return ort.NewTensor(shape, d)
	case []string:
		st, err := ort.NewStringTensor(shape)
		if err != nil {
			return nil, err
		}
		if err := st.SetContents(d); err != nil {
			st.Destroy()
			return nil, err
		}
		return st, nil
	}
	return nil, fmt.Errorf("unsupported tensor data %T", t.Data)
}

func scalarValue(t *understudy.Tensor) (ort.Value, error) {
	switch d := t.Data.(type) {
	case []float32:
		return ort.NewScalar(d[0])
	case []float64:
		return ort.NewScalar(d[0])
	case []int8:
		return ort.NewScalar(d[0])
	case []uint8:
		return ort.NewScalar(d[0])
	case []int16:
		return ort.NewScalar(d[0])
	case []int32:
		return ort.NewScalar(d[0])
	case []int64:
		return ort.NewScalar(d[0])
	case []uint32:
		return ort.NewScalar(d[0])
	case []uint64:
		return ort.NewScalar(d[0])
	case []bool:
		return ort.NewScalar(d[0])
	case []uint16:
		if t.DType != understudy.Float16 {
			return ort.NewScalar(d[0])
		}
	}
	return nil, fmt.Errorf("rank-0 %v inputs are not supported", t.DType)
}

func u16bytes(d []uint16) []byte {
	if len(d) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*2)
}

// fromValue makes a domain tensor of v. With clone its data is a copy,
// for values whose memory the next run reuses (a slot's); otherwise the
// tensor shares v's Go memory.
func fromValue(v ort.Value, dt understudy.DType, clone bool) (*understudy.Tensor, error) {
	if v == nil {
		return nil, errors.New("no value")
	}
	// GetShape returns a copy (nil for a scalar).
	shape := []int64(v.GetShape())
	if shape == nil {
		shape = []int64{}
	}
	t := &understudy.Tensor{DType: dt, Shape: shape}
	// The slices returned by GetData are Go memory (the binding copies
	// auto-allocated outputs), so they stay valid after Destroy.
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[float64]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[int8]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[uint8]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[int16]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[uint16]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[int32]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[int64]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[uint32]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[uint64]:
		t.Data = own(x.GetData(), clone)
	case *ort.Tensor[bool]:
		t.Data = own(x.GetData(), clone)
	case *ort.Scalar[float32]:
		t.Data = []float32{x.GetData()}
	case *ort.Scalar[float64]:
		t.Data = []float64{x.GetData()}
	case *ort.Scalar[int8]:
		t.Data = []int8{x.GetData()}
	case *ort.Scalar[uint8]:
		t.Data = []uint8{x.GetData()}
	case *ort.Scalar[int16]:
		t.Data = []int16{x.GetData()}
	case *ort.Scalar[uint16]:
		t.Data = []uint16{x.GetData()}
	case *ort.Scalar[int32]:
		t.Data = []int32{x.GetData()}
	case *ort.Scalar[int64]:
		t.Data = []int64{x.GetData()}
	case *ort.Scalar[uint32]:
		t.Data = []uint32{x.GetData()}
	case *ort.Scalar[uint64]:
		t.Data = []uint64{x.GetData()}
	case *ort.Scalar[bool]:
		t.Data = []bool{x.GetData()}
	case *ort.CustomDataTensor:
		b := x.GetData()
		h := make([]uint16, len(b)/2)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(h))), len(h)*2), b)
		t.Data = h
	case *ort.StringTensor:
		s, err := x.GetContents()
		if err != nil {
			return nil, err
		}
		t.Data = s
	default:
		return nil, fmt.Errorf("unexpected output value %T", v)
	}
	if t.Len() != lenOf(t.Data) {
		return nil, fmt.Errorf("output has shape %v but %d elements", shape, lenOf(t.Data))
	}
	return t, nil
}

// own returns d, or a copy of it with clone.
func own[T any](d []T, clone bool) []T {
	if clone {
		return slices.Clone(d)
	}
	return d
}

func lenOf(d any) int {
	switch x := d.(type) {
	case []float32:
		return len(x)
	case []float64:
		return len(x)
	case []int8:
		return len(x)
	case []uint8:
		return len(x)
	case []int16:
		return len(x)
	case []uint16:
		return len(x)
	case []int32:
		return len(x)
	case []int64:
		return len(x)
	case []uint32:
		return len(x)
	case []uint64:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	}
	return -1
}
