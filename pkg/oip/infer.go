package oip

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Input is one input tensor of an inference request as a transport read
// it: its data in exactly one of three forms.
type Input struct {
	Name     string
	Datatype string
	Shape    []int64
	// JSON is REST's "data": flat in row-major order or nested to Shape.
	JSON []byte
	// Raw holds little-endian row-major bytes (REST's binary data
	// extension, gRPC's raw_input_contents) when HasRaw is set.
	Raw    []byte
	HasRaw bool
	// Values is a typed array of gRPC's InferTensorContents, named by
	// ValuesField; see understudy.FromValues for the types.
	Values      any
	ValuesField string
}

// DecodeInputs turns a request's inputs into tensors checked against the
// model's signature: each named input once, every input present, the
// datatype the model takes, and the shape and data checked by the same
// domain rules as /predict. Every fault is an EINVALID error that says what
// was expected.
func DecodeInputs(inputs []Input, sig *understudy.Signature) (map[string]*understudy.Tensor, error) {
	if len(inputs) == 0 {
		return nil, understudy.Errorf(understudy.EINVALID, "the request has no inputs; want one tensor with name, datatype, shape and data for each of the model's inputs: %s", DescribeInputs(sig))
	}
	out := make(map[string]*understudy.Tensor, len(inputs))
	for i := range inputs {
		in := &inputs[i]
		info, ok := sig.Input(in.Name)
		if !ok {
			return nil, understudy.Errorf(understudy.EINVALID, "unknown input %q; the model's inputs are %s", in.Name, DescribeInputs(sig))
		}
		if _, dup := out[info.Name]; dup {
			return nil, understudy.Errorf(understudy.EINVALID, "input %q is given twice; give each input once", in.Name)
		}
		t, err := decodeInput(in, info)
		if err != nil {
			return nil, err
		}
		// The signature's name, not the request's: a transport may decode
		// names that point into the request's body, which the stored
		// prediction must not keep alive.
		out[info.Name] = t
	}
	if len(out) < len(sig.Inputs) {
		var missing []string
		for _, info := range sig.Inputs {
			if _, ok := out[info.Name]; !ok {
				missing = append(missing, strconv.Quote(info.Name))
			}
		}
		return nil, understudy.Errorf(understudy.EINVALID, "missing input %s; the model's inputs are %s", strings.Join(missing, ", "), DescribeInputs(sig))
	}
	return out, nil
}

func decodeInput(in *Input, info understudy.TensorInfo) (*understudy.Tensor, error) {
	dt, ok := ParseDatatype(in.Datatype)
	if !ok {
		return nil, understudy.Errorf(understudy.EINVALID, "input %q: datatype %q is not one of %s; the model expects %s", in.Name, in.Datatype, datatypeNames(), Datatype(info.DType))
	}
	if dt != info.DType {
		return nil, understudy.Errorf(understudy.EINVALID, "input %q: datatype %s, but the model expects %s with shape %s", in.Name, in.Datatype, Datatype(info.DType), understudy.FormatShape(info.Dims))
	}
	forms := 0
	for _, given := range []bool{in.JSON != nil, in.HasRaw, in.Values != nil} {
		if given {
			forms++
		}
	}
	switch {
	case forms == 0:
		return nil, understudy.Errorf(understudy.EINVALID, "input %q: no data; want %s elements holding shape %s", in.Name, in.Datatype, understudy.FormatShape(in.Shape))
	case forms > 1:
		return nil, understudy.Errorf(understudy.EINVALID, "input %q: data is given in more than one form; give it once, as data, as binary or raw contents, or as typed contents", in.Name)
	case in.JSON != nil:
		return understudy.DecodeShaped(in.JSON, in.Shape, info)
	}
	if err := understudy.CheckShape(in.Shape, info); err != nil {
		return nil, err
	}
	var t *understudy.Tensor
	var err error
	if in.HasRaw {
		t, err = understudy.DecodeRaw(in.Raw, dt, in.Shape, in.Name)
	} else {
		t, err = understudy.FromValues(dt, in.Shape, in.Name, in.ValuesField, in.Values)
	}
	if err != nil {
		return nil, err
	}
	if err := understudy.CheckTensor(t, info); err != nil {
		return nil, err
	}
	return t, nil
}

// InputParameter refuses the input parameters of protocol extensions the
// server does not implement; others are ignored, as the protocol allows.
func InputParameter(input, key string) error {
	if key == "shared_memory_region" {
		return understudy.Errorf(understudy.EINVALID, "input %q: shared memory is not supported; send the data in the request", input)
	}
	return nil
}

// OutputParameter refuses the output parameters of protocol extensions
// the server does not implement.
func OutputParameter(output, key string) error {
	switch key {
	case "classification":
		return understudy.Errorf(understudy.EINVALID, "output %q: the classification extension is not supported; request the output itself", output)
	case "shared_memory_region":
		return understudy.Errorf(understudy.EINVALID, "output %q: shared memory is not supported", output)
	}
	return nil
}

// OutputNames returns the outputs to send back, in order: the requested
// ones as requested, or with none requested every output in the model's
// order. An output the model does not have is EINVALID, so that a client's
// typo is caught before the model runs.
func OutputNames(requested []string, sig *understudy.Signature) ([]string, error) {
	if len(requested) == 0 {
		names := make([]string, len(sig.Outputs))
		for i, o := range sig.Outputs {
			names[i] = o.Name
		}
		return names, nil
	}
	seen := make(map[string]bool, len(requested))
	for _, name := range requested {
		if !hasOutput(sig, name) {
			return nil, understudy.Errorf(understudy.EINVALID, "unknown output %q requested; the model's outputs are %s", name, describe(sig.Outputs))
		}
		if seen[name] {
			return nil, understudy.Errorf(understudy.EINVALID, "output %q is requested twice; request each output once", name)
		}
		seen[name] = true
	}
	return requested, nil
}

func hasOutput(sig *understudy.Signature, name string) bool {
	for _, o := range sig.Outputs {
		if o.Name == name {
			return true
		}
	}
	return false
}

// DescribeInputs lists a model's inputs in the protocol's terms, for
// messages.
func DescribeInputs(sig *understudy.Signature) string { return describe(sig.Inputs) }

func describe(infos []understudy.TensorInfo) string {
	parts := make([]string, len(infos))
	for i, t := range infos {
		parts[i] = fmt.Sprintf("%q (%s %s)", t.Name, Datatype(t.DType), understudy.FormatShape(t.Dims))
	}
	return strings.Join(parts, ", ")
}

// Present keeps the names that the run answered: a runner may leave out an
// output its signature declares (ONNX allows optional outputs).
func Present(names []string, outputs map[string]*understudy.Tensor) []string {
	out := names[:0:0]
	for _, n := range names {
		if outputs[n] != nil {
			out = append(out, n)
		}
	}
	return out
}
