package understudy

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// DecodeTensor parses one input from JSON and checks it against info. The
// value is a nested array (or a bare scalar for a rank-0 input), or the
// explicit form {"shape": [...], "data": [flat array]}. Every failure is an
// EINVALID error that names the input and says what was expected.
func DecodeTensor(raw []byte, info TensorInfo) (*Tensor, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, Errorf(EINVALID, "input %q: no value given; want a nested array of %s with shape %s", info.Name, info.DType, FormatShape(info.Dims))
	}
	var t *Tensor
	var err error
	if raw[0] == '{' {
		t, err = decodeExplicit(raw, info)
	} else {
		t, err = parseNested(raw, info.Name, info.DType)
	}
	if err != nil {
		return nil, err
	}
	if err := checkShape(t.Shape, info); err != nil {
		return nil, err
	}
	return t, nil
}

func decodeExplicit(raw []byte, info TensorInfo) (*Tensor, error) {
	var ex struct {
		Shape *[]int64         `json:"shape"`
		Data  *json.RawMessage `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ex); err != nil {
		return nil, Errorf(EINVALID, "input %q: explicit form must be {\"shape\": [ints], \"data\": [flat array]}: %s", info.Name, jsonErrorText(err))
	}
	if ex.Shape == nil || ex.Data == nil {
		return nil, Errorf(EINVALID, "input %q: explicit form needs both \"shape\" and \"data\"", info.Name)
	}
	if _, err := shapeElems(*ex.Shape, info.Name, "explicit shape"); err != nil {
		return nil, err
	}
	t, err := parseNested(*ex.Data, info.Name, info.DType)
	if err != nil {
		return nil, err
	}
	if len(t.Shape) != 1 {
		return nil, Errorf(EINVALID, "input %q: explicit \"data\" must be a flat array, got shape %s", info.Name, FormatShape(t.Shape))
	}
	if err := reshape(t, *ex.Shape, info.Name, "explicit shape"); err != nil {
		return nil, err
	}
	return t, nil
}

// DecodeShaped parses the data of an input whose shape the client declared
// apart from it, as the Open Inference Protocol does: data may be flat, in
// row-major order, or nested to the declared shape. The result is checked
// against info like DecodeTensor's.
func DecodeShaped(raw []byte, shape []int64, info TensorInfo) (*Tensor, error) {
	if _, err := shapeElems(shape, info.Name, "shape"); err != nil {
		return nil, err
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, Errorf(EINVALID, "input %q: no \"data\" given; want a flat or nested array of %s holding shape %s", info.Name, info.DType, FormatShape(shape))
	}
	t, err := parseNested(raw, info.Name, info.DType)
	if err != nil {
		return nil, err
	}
	switch {
	case len(t.Shape) == 1:
		if err := reshape(t, shape, info.Name, "shape"); err != nil {
			return nil, err
		}
	case !slices.Equal(t.Shape, shape):
		return nil, Errorf(EINVALID, "input %q: \"data\" is nested to shape %s, but \"shape\" is %s; send data flat in row-major order or nested to the shape", info.Name, FormatShape(t.Shape), FormatShape(shape))
	default:
		t.Shape = slices.Clone(shape)
	}
	if err := checkShape(t.Shape, info); err != nil {
		return nil, err
	}
	return t, nil
}

func jsonErrorText(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}
