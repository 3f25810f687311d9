package grpcapi

import (
	"github.com/understudy-ml/understudy/pkg/oip"
	pb "github.com/understudy-ml/understudy/pkg/oip/inferencepb"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file converts between the protocol's InferTensorContents and the
// domain's tensors. Checking the values against the model is the domain's
// job (understudy.FromValues, DecodeRaw); here only the typed array is
// picked.

// inputs turns the request's input tensors into the protocol's transport-
// neutral form. Raw contents, when present, must cover every input in
// order, as Triton's clients send them.
func inputs(req *pb.ModelInferRequest) ([]oip.Input, error) {
	raw := req.RawInputContents
	if len(raw) > 0 && len(raw) != len(req.Inputs) {
		return nil, understudy.Errorf(understudy.EINVALID, "raw_input_contents has %d entries, but the request has %d inputs; give one per input, in the order of inputs", len(raw), len(req.Inputs))
	}
	out := make([]oip.Input, len(req.Inputs))
	for i, in := range req.Inputs {
		if in.Name == "" {
			return nil, understudy.Errorf(understudy.EINVALID, "inputs[%d] has no name", i)
		}
		for k := range in.Parameters {
			if err := oip.InputParameter(in.Name, k); err != nil {
				return nil, err
			}
		}
		o := oip.Input{Name: in.Name, Datatype: in.Datatype, Shape: in.Shape}
		field, values, err := typed(in.Name, in.Contents)
		if err != nil {
			return nil, err
		}
		// Data in both forms is left for oip.DecodeInputs to refuse, in
		// the same words as over REST.
		if len(raw) > 0 {
			o.Raw, o.HasRaw = raw[i], true
		}
		if field != "" {
			dt, known := oip.ParseDatatype(in.Datatype)
			want := oip.ContentsField(dt)
			switch {
			case known && want == "":
				return nil, understudy.Errorf(understudy.EINVALID, "input %q: %s has no typed contents; send it in raw_input_contents", in.Name, in.Datatype)
			case known && field != want:
				return nil, understudy.Errorf(understudy.EINVALID, "input %q: datatype %s takes %s, but %s was given", in.Name, in.Datatype, want, field)
			}
			o.Values, o.ValuesField = values, field
		}
		out[i] = o
	}
	return out, nil
}

// typed returns the one typed array that holds data, if any.
func typed(name string, c *pb.InferTensorContents) (field string, values any, err error) {
	if c == nil {
		return "", nil, nil
	}
	for _, f := range []struct {
		name   string
		n      int
		values any
	}{
		{"bool_contents", len(c.BoolContents), c.BoolContents},
		{"int_contents", len(c.IntContents), c.IntContents},
		{"int64_contents", len(c.Int64Contents), c.Int64Contents},
		{"uint_contents", len(c.UintContents), c.UintContents},
		{"uint64_contents", len(c.Uint64Contents), c.Uint64Contents},
		{"fp32_contents", len(c.Fp32Contents), c.Fp32Contents},
		{"fp64_contents", len(c.Fp64Contents), c.Fp64Contents},
		{"bytes_contents", len(c.BytesContents), c.BytesContents},
	} {
		if f.n == 0 {
			continue
		}
		if field != "" {
			return "", nil, understudy.Errorf(understudy.EINVALID, "input %q: contents has both %s and %s; give one typed array", name, field, f.name)
		}
		field, values = f.name, f.values
	}
	return field, values, nil
}

// contents returns t's elements as the typed array of its datatype.
func contents(t *understudy.Tensor) *pb.InferTensorContents {
	c := &pb.InferTensorContents{}
	switch d := t.Data.(type) {
	case []bool:
		c.BoolContents = d
	case []float32:
		c.Fp32Contents = d
	case []float64:
		c.Fp64Contents = d
	case []int64:
		c.Int64Contents = d
	case []uint64:
		c.Uint64Contents = d
	case []int8:
		c.IntContents = widen[int32](d)
	case []int16:
		c.IntContents = widen[int32](d)
	case []int32:
		c.IntContents = d
	case []uint8:
		c.UintContents = widen[uint32](d)
	case []uint16: // not float16: that has no typed array
		c.UintContents = widen[uint32](d)
	case []uint32:
		c.UintContents = d
	case []string:
		c.BytesContents = make([][]byte, len(d))
		for i, s := range d {
			c.BytesContents[i] = []byte(s)
		}
	}
	return c
}

func widen[W int32 | uint32, N int8 | int16 | uint8 | uint16](d []N) []W {
	out := make([]W, len(d))
	for i, v := range d {
		out[i] = W(v)
	}
	return out
}
