// Package oip is the Open Inference Protocol v2 (KServe's V2 inference
// protocol, also spoken by Triton and Seldon MLServer) apart from any
// transport: datatype names, model and server metadata, and the decoding of
// a request's input tensors into domain tensors through the domain's own
// checks. The REST handlers (pkg/httpapi) and the gRPC service (pkg/grpcapi)
// both use it, so the two cannot drift apart. It imports the domain only;
// the generated protobuf code lives in oip/inferencepb and is used by the
// gRPC adapter alone.
package oip

import (
	"strings"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Platform is what model metadata reports for every model: ONNX files run
// by ONNX Runtime, in Triton's and KServe's naming.
const Platform = "onnxruntime_onnx"

// ServerName is the server's name in its metadata.
const ServerName = "understudy"

// Extensions lists the protocol extensions the server implements.
var Extensions = []string{"binary_tensor_data"}

var datatypes = []struct {
	name string
	dt   understudy.DType
}{
	{"BOOL", understudy.Bool},
	{"UINT8", understudy.Uint8}, {"UINT16", understudy.Uint16}, {"UINT32", understudy.Uint32}, {"UINT64", understudy.Uint64},
	{"INT8", understudy.Int8}, {"INT16", understudy.Int16}, {"INT32", understudy.Int32}, {"INT64", understudy.Int64},
	{"FP16", understudy.Float16}, {"FP32", understudy.Float32}, {"FP64", understudy.Float64},
	{"BYTES", understudy.String},
}

// Datatype returns the protocol's name for an element type.
func Datatype(dt understudy.DType) string {
	for _, d := range datatypes {
		if d.dt == dt {
			return d.name
		}
	}
	return strings.ToUpper(dt.String())
}

// ParseDatatype returns the element type a protocol datatype names.
func ParseDatatype(name string) (understudy.DType, bool) {
	for _, d := range datatypes {
		if d.name == name {
			return d.dt, true
		}
	}
	return understudy.Invalid, false
}

// datatypeNames lists every datatype the server takes, for messages.
func datatypeNames() string {
	names := make([]string, len(datatypes))
	for i, d := range datatypes {
		names[i] = d.name
	}
	return strings.Join(names, ", ")
}

// ContentsField names the typed array of gRPC's InferTensorContents that
// carries an element type; FP16 has none and travels raw only.
func ContentsField(dt understudy.DType) string {
	switch dt {
	case understudy.Bool:
		return "bool_contents"
	case understudy.Int8, understudy.Int16, understudy.Int32:
		return "int_contents"
	case understudy.Int64:
		return "int64_contents"
	case understudy.Uint8, understudy.Uint16, understudy.Uint32:
		return "uint_contents"
	case understudy.Uint64:
		return "uint64_contents"
	case understudy.Float32:
		return "fp32_contents"
	case understudy.Float64:
		return "fp64_contents"
	case understudy.String:
		return "bytes_contents"
	}
	return ""
}
