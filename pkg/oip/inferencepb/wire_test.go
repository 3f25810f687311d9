package inferencepb

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The wire contract with every other Open Inference Protocol (KServe v2)
// peer: full names, field numbers and kinds. A hand edit of the .proto that
// renumbers or retypes a field makes this fail.

func TestServiceAndRPCs(t *testing.T) {
	fd := File_pkg_oip_inferencepb_grpc_predict_v2_proto
	if got := fd.Package(); got != "inference" {
		t.Fatalf("package = %q, want inference", got)
	}
	sd := fd.Services().ByName("GRPCInferenceService")
	if sd == nil {
		t.Fatal("service GRPCInferenceService missing")
	}
	if got := sd.FullName(); got != "inference.GRPCInferenceService" {
		t.Fatalf("service full name = %q", got)
	}
	if GRPCInferenceService_ServiceDesc.ServiceName != "inference.GRPCInferenceService" {
		t.Fatalf("grpc ServiceDesc name = %q", GRPCInferenceService_ServiceDesc.ServiceName)
	}
	rpcs := []struct{ name, in, out string }{
		{"ServerLive", "ServerLiveRequest", "ServerLiveResponse"},
		{"ServerReady", "ServerReadyRequest", "ServerReadyResponse"},
		{"ModelReady", "ModelReadyRequest", "ModelReadyResponse"},
		{"ServerMetadata", "ServerMetadataRequest", "ServerMetadataResponse"},
		{"ModelMetadata", "ModelMetadataRequest", "ModelMetadataResponse"},
		{"ModelInfer", "ModelInferRequest", "ModelInferResponse"},
	}
	if n := sd.Methods().Len(); n != len(rpcs) {
		t.Errorf("service has %d rpcs, want %d", n, len(rpcs))
	}
	for _, r := range rpcs {
		md := sd.Methods().ByName(protoreflect.Name(r.name))
		if md == nil {
			t.Errorf("rpc %s missing", r.name)
			continue
		}
		if md.IsStreamingClient() || md.IsStreamingServer() {
			t.Errorf("rpc %s is streaming, want unary", r.name)
		}
		if got := md.Input().FullName(); got != protoreflect.FullName("inference."+r.in) {
			t.Errorf("rpc %s input = %s, want inference.%s", r.name, got, r.in)
		}
		if got := md.Output().FullName(); got != protoreflect.FullName("inference."+r.out) {
			t.Errorf("rpc %s output = %s, want inference.%s", r.name, got, r.out)
		}
	}
}

type field struct {
	name     string
	number   protoreflect.FieldNumber
	kind     protoreflect.Kind
	repeated bool // a list or a map
}

func TestFieldNumbers(t *testing.T) {
	str, i64, b, msg := protoreflect.StringKind, protoreflect.Int64Kind, protoreflect.BoolKind, protoreflect.MessageKind
	want := map[string][]field{
		"ServerLiveRequest":     nil,
		"ServerLiveResponse":    {{"live", 1, b, false}},
		"ServerReadyRequest":    nil,
		"ServerReadyResponse":   {{"ready", 1, b, false}},
		"ModelReadyRequest":     {{"name", 1, str, false}, {"version", 2, str, false}},
		"ModelReadyResponse":    {{"ready", 1, b, false}},
		"ServerMetadataRequest": nil,
		"ServerMetadataResponse": {
			{"name", 1, str, false}, {"version", 2, str, false}, {"extensions", 3, str, true},
		},
		"ModelMetadataRequest": {{"name", 1, str, false}, {"version", 2, str, false}},
		"ModelMetadataResponse": {
			{"name", 1, str, false}, {"versions", 2, str, true}, {"platform", 3, str, false},
			{"inputs", 4, msg, true}, {"outputs", 5, msg, true},
		},
		"ModelMetadataResponse.TensorMetadata": {
			{"name", 1, str, false}, {"datatype", 2, str, false}, {"shape", 3, i64, true},
		},
		"ModelInferRequest": {
			{"model_name", 1, str, false}, {"model_version", 2, str, false}, {"id", 3, str, false},
			{"parameters", 4, msg, true}, {"inputs", 5, msg, true}, {"outputs", 6, msg, true},
			{"raw_input_contents", 7, protoreflect.BytesKind, true},
		},
		"ModelInferRequest.InferInputTensor": {
			{"name", 1, str, false}, {"datatype", 2, str, false}, {"shape", 3, i64, true},
			{"parameters", 4, msg, true}, {"contents", 5, msg, false},
		},
		"ModelInferRequest.InferRequestedOutputTensor": {
			{"name", 1, str, false}, {"parameters", 2, msg, true},
		},
		"ModelInferResponse": {
			{"model_name", 1, str, false}, {"model_version", 2, str, false}, {"id", 3, str, false},
			{"parameters", 4, msg, true}, {"outputs", 5, msg, true},
			{"raw_output_contents", 6, protoreflect.BytesKind, true},
		},
		"ModelInferResponse.InferOutputTensor": {
			{"name", 1, str, false}, {"datatype", 2, str, false}, {"shape", 3, i64, true},
			{"parameters", 4, msg, true}, {"contents", 5, msg, false},
		},
		"InferParameter": {
			{"bool_param", 1, b, false}, {"int64_param", 2, i64, false}, {"string_param", 3, str, false},
			{"double_param", 4, protoreflect.DoubleKind, false}, {"uint64_param", 5, protoreflect.Uint64Kind, false},
		},
		"InferTensorContents": {
			{"bool_contents", 1, b, true}, {"int_contents", 2, protoreflect.Int32Kind, true},
			{"int64_contents", 3, i64, true}, {"uint_contents", 4, protoreflect.Uint32Kind, true},
			{"uint64_contents", 5, protoreflect.Uint64Kind, true}, {"fp32_contents", 6, protoreflect.FloatKind, true},
			{"fp64_contents", 7, protoreflect.DoubleKind, true}, {"bytes_contents", 8, protoreflect.BytesKind, true},
		},
	}

	files := File_pkg_oip_inferencepb_grpc_predict_v2_proto
	for name, fields := range want {
		d, err := findMessage(files, "inference."+name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if n := d.Fields().Len(); n != len(fields) {
			t.Errorf("%s has %d fields, want %d", name, n, len(fields))
		}
		for _, f := range fields {
			fd := d.Fields().ByName(protoreflect.Name(f.name))
			if fd == nil {
				t.Errorf("%s.%s missing", name, f.name)
				continue
			}
			if fd.Number() != f.number {
				t.Errorf("%s.%s is field %d, want %d", name, f.name, fd.Number(), f.number)
			}
			if fd.Kind() != f.kind {
				t.Errorf("%s.%s kind = %v, want %v", name, f.name, fd.Kind(), f.kind)
			}
			if got := fd.Cardinality() == protoreflect.Repeated; got != f.repeated {
				t.Errorf("%s.%s repeated = %v, want %v", name, f.name, got, f.repeated)
			}
		}
	}
}

func TestParameterMapsAndOneof(t *testing.T) {
	files := File_pkg_oip_inferencepb_grpc_predict_v2_proto
	for _, name := range []string{
		"ModelInferRequest", "ModelInferResponse",
		"ModelInferRequest.InferInputTensor", "ModelInferRequest.InferRequestedOutputTensor",
		"ModelInferResponse.InferOutputTensor",
	} {
		d, err := findMessage(files, "inference."+name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fd := d.Fields().ByName("parameters")
		if fd == nil || !fd.IsMap() {
			t.Fatalf("%s.parameters is not a map", name)
		}
		if fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Message().FullName() != "inference.InferParameter" {
			t.Errorf("%s.parameters is not map<string, InferParameter>", name)
		}
	}

	d, err := findMessage(files, "inference.InferParameter")
	if err != nil {
		t.Fatal(err)
	}
	od := d.Oneofs().ByName("parameter_choice")
	if od == nil {
		t.Fatal("InferParameter.parameter_choice missing")
	}
	if od.Fields().Len() != d.Fields().Len() {
		t.Errorf("InferParameter: %d of %d fields in parameter_choice", od.Fields().Len(), d.Fields().Len())
	}
}

// findMessage looks a message up by full name among the registered files and
// checks that it was declared by this package's .proto.
func findMessage(fd protoreflect.FileDescriptor, full string) (protoreflect.MessageDescriptor, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(full))
	if err != nil {
		return nil, err
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is a %T, not a message", full, d)
	}
	if md.ParentFile() != fd {
		return nil, fmt.Errorf("%s comes from %s", full, md.ParentFile().Path())
	}
	return md, nil
}
