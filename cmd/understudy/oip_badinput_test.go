package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	pb "github.com/understudy-ml/understudy/pkg/oip/inferencepb"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// oipMixedModel echoes a FP32 [-1,3] and b INT8 [-1,2], so that one primary
// shows faults of datatype, shape, range and the set of inputs.
func oipMixedModel() *onnxbuild.Model {
	return &onnxbuild.Model{Graph: onnxbuild.Graph{
		Name: "mixed",
		Nodes: []onnxbuild.Node{
			{Name: "a_Identity", OpType: "Identity", Inputs: []string{"a"}, Outputs: []string{"a_out"}},
			{Name: "b_Identity", OpType: "Identity", Inputs: []string{"b"}, Outputs: []string{"b_out"}},
		},
		Inputs: []onnxbuild.ValueInfo{
			{Name: "a", DType: onnxbuild.Float, Dims: []int64{-1, 3}},
			{Name: "b", DType: onnxbuild.Int8, Dims: []int64{-1, 2}},
		},
		Outputs: []onnxbuild.ValueInfo{
			{Name: "a_out", DType: onnxbuild.Float, Dims: []int64{-1, 3}},
			{Name: "b_out", DType: onnxbuild.Int8, Dims: []int64{-1, 2}},
		},
	}}
}

// Ensure each bad request gets the same status over REST and gRPC from one
// table (400/InvalidArgument, 404/NotFound, 409/FailedPrecondition,
// 413/ResourceExhausted), a message naming the fault on both, REST errors
// as JSON with an "error" field, and never 500 or Internal.
func TestOIPBadInput(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "mixed", oipMixedModel(), time.Now().Add(-time.Hour))
	writeModel(t, dir, "mixed_shadow", oipMixedModel(), time.Time{})
	m := startServer(t, dir, "--primary", "mixed", "--max-body", "4KiB")
	c := oipClient(t, m)
	ctx := oipCtx(t)

	const (
		okA = `{"name": "a", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}`
		okB = `{"name": "b", "datatype": "INT8", "shape": [1, 2], "data": [1, 2]}`
	)
	body := func(inputs ...string) string { return `{"inputs": [` + strings.Join(inputs, ", ") + `]}` }
	type input = pb.ModelInferRequest_InferInputTensor
	ga := func(datatype string, shape []int64, v ...float32) *input {
		return &input{Name: "a", Datatype: datatype, Shape: shape, Contents: &pb.InferTensorContents{Fp32Contents: v}}
	}
	gb := func(v ...int32) *input {
		return &input{Name: "b", Datatype: "INT8", Shape: []int64{1, 2}, Contents: &pb.InferTensorContents{IntContents: v}}
	}
	okGA, okGB := ga("FP32", []int64{1, 3}, 1, 2, 3), gb(1, 2)
	req := func(ins ...*input) *pb.ModelInferRequest {
		return &pb.ModelInferRequest{ModelName: "mixed", Inputs: ins}
	}
	with := func(r *pb.ModelInferRequest, f func(*pb.ModelInferRequest)) *pb.ModelInferRequest { f(r); return r }
	big := make([]float32, 1200) // 4800 bytes of fp32_contents, over 4KiB
	bigJSON := `[` + strings.Repeat("1.5, ", len(big)-1) + `1.5]`
	nest := strings.Repeat("[", 70) + "1" + strings.Repeat("]", 70)

	tests := []struct {
		name string
		// path is the REST route; empty means the primary's infer.
		path   string
		body   string
		binary []byte            // appended to body, with the header that says where the JSON ends
		header map[string]string // more REST headers
		// grpc is the equivalent gRPC request; nil for REST-only faults.
		grpc   *pb.ModelInferRequest
		status int
		code   codes.Code
		// want are substrings of both transports' messages.
		want []string
		// same says the two messages must be identical: the requests carry
		// the same data in the same form.
		same bool
	}{
		{name: "valid request", body: body(okA, okB), grpc: req(okGA, okGB), status: 200, code: codes.OK},
		{name: "unknown model", same: true, path: "/v2/models/nope/infer", body: body(okA, okB),
			grpc: with(req(okGA, okGB), func(r *pb.ModelInferRequest) { r.ModelName = "nope" }), status: 404, code: codes.NotFound, want: []string{`"nope"`}},
		{name: "unknown version", same: true, path: "/v2/models/mixed/versions/nope/infer", body: body(okA, okB),
			grpc: with(req(okGA, okGB), func(r *pb.ModelInferRequest) { r.ModelVersion = "nope" }), status: 404, code: codes.NotFound, want: []string{"mixed@nope"}},
		{name: "shadow", same: true, path: "/v2/models/mixed_shadow/infer", body: body(okA, okB),
			grpc: with(req(okGA, okGB), func(r *pb.ModelInferRequest) { r.ModelName = "mixed_shadow" }), status: 409, code: codes.FailedPrecondition,
			want: []string{"mixed_shadow", "loaded as shadow", "the primary is mixed@"}},
		{name: "wrong datatype", same: true, body: body(`{"name": "a", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}`, okB),
			grpc:   req(&input{Name: "a", Datatype: "FP64", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{Fp64Contents: []float64{1, 2, 3}}}, okGB),
			status: 400, code: codes.InvalidArgument, want: []string{`input "a": datatype FP64, but the model expects FP32`}},
		{name: "unknown datatype", same: true, body: body(`{"name": "a", "datatype": "FP8", "shape": [1, 3], "data": [1, 2, 3]}`, okB),
			grpc: req(ga("FP8", []int64{1, 3}, 1, 2, 3), okGB), status: 400, code: codes.InvalidArgument, want: []string{`datatype "FP8" is not one of`, "FP32"}},
		{name: "wrong shape", same: true, body: body(`{"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}`, okB),
			grpc: req(ga("FP32", []int64{1, 4}, 1, 2, 3, 4), okGB), status: 400, code: codes.InvalidArgument, want: []string{`input "a": dimension 1 is 4, want 3`}},
		{name: "wrong rank", same: true, body: body(`{"name": "a", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}`, okB),
			grpc: req(ga("FP32", []int64{3}, 1, 2, 3), okGB), status: 400, code: codes.InvalidArgument, want: []string{`input "a": got shape [3] (rank 1), want rank 2`}},
		{name: "negative dimension", same: true, body: body(`{"name": "a", "datatype": "FP32", "shape": [-1, 3], "data": [1, 2, 3]}`, okB),
			grpc: req(ga("FP32", []int64{-1, 3}, 1, 2, 3), okGB), status: 400, code: codes.InvalidArgument, want: []string{"negative dimension"}},
		{name: "shape and data disagree", body: body(`{"name": "a", "datatype": "FP32", "shape": [1, 3], "data": [1, 2]}`, okB),
			grpc: req(ga("FP32", []int64{1, 3}, 1, 2), okGB), status: 400, code: codes.InvalidArgument, want: []string{`input "a"`, "shape [1,3] holds 3"}},
		{name: "unknown input", same: true, body: body(okA, okB, `{"name": "c", "datatype": "FP32", "shape": [1], "data": [1]}`),
			grpc:   req(okGA, okGB, &input{Name: "c", Datatype: "FP32", Shape: []int64{1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}}),
			status: 400, code: codes.InvalidArgument, want: []string{`unknown input "c"`, `"a" (FP32 [-1,3])`, `"b" (INT8 [-1,2])`}},
		{name: "missing input", same: true, body: body(okA), grpc: req(okGA), status: 400, code: codes.InvalidArgument, want: []string{`missing input "b"`}},
		{name: "duplicate input", same: true, body: body(okA, okA, okB), grpc: req(okGA, okGA, okGB), status: 400, code: codes.InvalidArgument, want: []string{`input "a" is given twice`}},
		{name: "no inputs", body: `{"inputs": []}`, grpc: req(), status: 400, code: codes.InvalidArgument, want: []string{"no", "inputs"}},
		{name: "input without data", same: true, body: body(`{"name": "a", "datatype": "FP32", "shape": [1, 3]}`, okB),
			grpc: req(&input{Name: "a", Datatype: "FP32", Shape: []int64{1, 3}}, okGB), status: 400, code: codes.InvalidArgument, want: []string{`input "a": no data`}},
		{name: "shape too large to allocate", same: true, body: body(`{"name": "a", "datatype": "FP32", "shape": [1000000000, 3], "data": [1, 2, 3]}`, okB),
			grpc: req(ga("FP32", []int64{1000000000, 3}, 1, 2, 3), okGB), status: 400, code: codes.InvalidArgument, want: []string{`input "a"`, "[1000000000,3] is too large"}},
		{name: "raw shape too large to allocate", same: true,
			body:   `{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1000000000, 3], "parameters": {"binary_data_size": 12}}, ` + okB + `]}`,
			binary: oipLE([]float32{1, 2, 3}),
			grpc: with(req(&input{Name: "a", Datatype: "FP32", Shape: []int64{1000000000, 3}}, &input{Name: "b", Datatype: "INT8", Shape: []int64{1, 2}}),
				func(r *pb.ModelInferRequest) { r.RawInputContents = [][]byte{oipLE([]float32{1, 2, 3}), {1, 2}} }),
			status: 400, code: codes.InvalidArgument, want: []string{`input "a"`, "[1000000000,3] is too large"}},
		{name: "output requested twice", same: true, body: `{"inputs": [` + okA + `, ` + okB + `], "outputs": [{"name": "a_out"}, {"name": "a_out"}]}`,
			grpc: with(req(okGA, okGB), func(r *pb.ModelInferRequest) {
				r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "a_out"}, {Name: "a_out"}}
			}), status: 400, code: codes.InvalidArgument, want: []string{`output "a_out" is requested twice`}},
		{name: "classification extension", body: `{"inputs": [` + okA + `, ` + okB + `], "outputs": [{"name": "a_out", "parameters": {"classification": 2}}]}`,
			grpc: with(req(okGA, okGB), func(r *pb.ModelInferRequest) {
				r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "a_out",
					Parameters: map[string]*pb.InferParameter{"classification": {ParameterChoice: &pb.InferParameter_Int64Param{Int64Param: 2}}}}}
			}), status: 400, code: codes.InvalidArgument, want: []string{`output "a_out"`, "classification", "not supported"}},
		{name: "unknown output", same: true, body: `{"inputs": [` + okA + `, ` + okB + `], "outputs": [{"name": "zzz"}]}`,
			grpc: with(req(okGA, okGB), func(r *pb.ModelInferRequest) {
				r.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "zzz"}}
			}), status: 400, code: codes.InvalidArgument, want: []string{`unknown output "zzz"`, `"a_out"`}},
		{name: "int8 out of range", body: body(okA, `{"name": "b", "datatype": "INT8", "shape": [1, 2], "data": [128, 0]}`),
			grpc: req(okGA, gb(128, 0)), status: 400, code: codes.InvalidArgument, want: []string{`input "b"`, "128 is out of range for int8"}},
		{name: "int8 below range", body: body(okA, `{"name": "b", "datatype": "INT8", "shape": [1, 2], "data": [0, -129]}`),
			grpc: req(okGA, gb(0, -129)), status: 400, code: codes.InvalidArgument, want: []string{`input "b"`, "-129 is out of range for int8"}},
		{name: "raw contents of the wrong length", same: true,
			body:   `{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 8}}, {"name": "b", "datatype": "INT8", "shape": [1, 2], "parameters": {"binary_data_size": 2}}]}`,
			binary: append(oipLE([]float32{1, 2}), 1, 2),
			grpc: with(req(&input{Name: "a", Datatype: "FP32", Shape: []int64{1, 3}}, &input{Name: "b", Datatype: "INT8", Shape: []int64{1, 2}}),
				func(r *pb.ModelInferRequest) { r.RawInputContents = [][]byte{oipLE([]float32{1, 2}), {1, 2}} }),
			status: 400, code: codes.InvalidArgument, want: []string{`input "a": raw data is 8 bytes, but shape [1,3] of float32 needs 12`}},
		{name: "data given in two forms",
			body:   `{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3], "parameters": {"binary_data_size": 12}}, ` + okB + `]}`,
			binary: oipLE([]float32{1, 2, 3}),
			grpc: with(req(ga("FP32", []int64{1, 3}, 1, 2, 3), &input{Name: "b", Datatype: "INT8", Shape: []int64{1, 2}}),
				func(r *pb.ModelInferRequest) { r.RawInputContents = [][]byte{oipLE([]float32{1, 2, 3}), {1, 2}} }),
			status: 400, code: codes.InvalidArgument, want: []string{`input "a"`, "once"}},
		{name: "id with a control character", body: `{"id": "bad\u0001id", "inputs": [` + okA + `, ` + okB + `]}`,
			grpc:   with(req(okGA, okGB), func(r *pb.ModelInferRequest) { r.Id = "bad\x01id" }),
			status: 400, code: codes.InvalidArgument, want: []string{"control character"}},
		{name: "id too long", body: `{"id": "` + strings.Repeat("x", 129) + `", "inputs": [` + okA + `, ` + okB + `]}`,
			grpc:   with(req(okGA, okGB), func(r *pb.ModelInferRequest) { r.Id = strings.Repeat("x", 129) }),
			status: 400, code: codes.InvalidArgument, want: []string{"129 characters", "128"}},
		{name: "over the size limit", body: body(`{"name": "a", "datatype": "FP32", "shape": [400, 3], "data": `+bigJSON+`}`, okB),
			grpc: req(ga("FP32", []int64{400, 3}, big...), okGB), status: 413, code: codes.ResourceExhausted, want: []string{"4096"}},

		// Faults only gRPC can have.
		{name: "typed array of another datatype", grpc: req(&input{Name: "a", Datatype: "FP32", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{IntContents: []int32{1, 2, 3}}}, okGB),
			status: 400, code: codes.InvalidArgument, want: []string{`input "a": datatype FP32 takes fp32_contents, but int_contents was given`}},
		{name: "two typed arrays", grpc: req(&input{Name: "a", Datatype: "FP32", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3}, Fp64Contents: []float64{1, 2, 3}}}, okGB),
			status: 400, code: codes.InvalidArgument, want: []string{`input "a"`, "fp32_contents and fp64_contents"}},
		{name: "raw contents for some inputs only", grpc: with(req(&input{Name: "a", Datatype: "FP32", Shape: []int64{1, 3}}, okGB),
			func(r *pb.ModelInferRequest) { r.RawInputContents = [][]byte{oipLE([]float32{1, 2, 3})} }),
			status: 400, code: codes.InvalidArgument, want: []string{"raw_input_contents has 1 entries, but the request has 2 inputs"}},
		{name: "input without a name", grpc: req(&input{Datatype: "FP32", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3}}}, okGB),
			status: 400, code: codes.InvalidArgument, want: []string{"inputs[0] has no name"}},

		// Faults only REST can have.
		{name: "malformed JSON", body: `{"inputs": [` + okA, status: 400, want: []string{"malformed JSON"}},
		{name: "unknown field", body: `{"inputz": []}`, status: 400, want: []string{"inputz"}},
		{name: "empty body", body: ``, status: 400, want: []string{"empty"}},
		{name: "JSON nested too deep", body: body(`{"name": "a", "datatype": "FP32", "shape": [1, 3], "data": ` + nest + `}`), status: 400, want: []string{"nested deeper than 64"}},
		{name: "binary header past the body", body: body(okA, okB), header: map[string]string{"Inference-Header-Content-Length": "100000"},
			status: 400, want: []string{"Inference-Header-Content-Length", "100000"}},
		{name: "binary header not a number", body: body(okA, okB), header: map[string]string{"Inference-Header-Content-Length": "ten"},
			status: 400, want: []string{"Inference-Header-Content-Length"}},
		{name: "binary data claimed by no input", body: body(okA, okB), binary: []byte{1, 2, 3}, status: 400, want: []string{"3 bytes of binary data"}},
		{name: "binary_data_size past the data", body: `{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}}, ` + okB + `]}`,
			binary: []byte{1, 2, 3, 4}, status: 400, want: []string{"binary_data_size is 12"}},
		{name: "binary_data_size without the header", body: `{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}}, ` + okB + `]}`,
			status: 400, want: []string{"Inference-Header-Content-Length"}},
		{name: "binary_data_output not a bool", body: `{"inputs": [` + okA + `, ` + okB + `], "parameters": {"binary_data_output": "yes"}}`,
			status: 400, want: []string{"binary_data_output"}},
		{name: "string for a number", body: body(`{"name": "a", "datatype": "FP32", "shape": [1, 3], "data": [1, "2", 3]}`, okB), status: 400, want: []string{"a string"}},
		{name: "data nested against the shape", body: body(`{"name": "a", "datatype": "FP32", "shape": [1, 3], "data": [[1], [2], [3]]}`, okB),
			status: 400, want: []string{"nested to shape [3,1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var restMsg string
			if tt.body != "" || tt.grpc == nil {
				path := tt.path
				if path == "" {
					path = "/v2/models/mixed/infer"
				}
				b, h := []byte(tt.body), map[string]string{}
				if tt.binary != nil {
					b, h = oipBinary(tt.body, tt.binary)
				}
				for k, v := range tt.header {
					h[k] = v
				}
				r := oipPost(t, m.URL()+path, b, h)
				if id := r.Header.Get("X-Request-Id"); id == "" || (tt.status != 200 && r.json(t)["request_id"] != id) {
					t.Errorf("X-Request-Id %q, answer %s: want the same id in both", id, r.Body)
				}
				if r.Status == 500 {
					t.Errorf("REST answered 500: %s", r.Body)
				}
				if r.Status != tt.status {
					t.Errorf("REST status = %d, want %d: %s", r.Status, tt.status, r.Body)
				}
				if tt.status != 200 {
					var e struct {
						Error string `json:"error"`
					}
					if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == "" {
						t.Errorf("REST error is not JSON with an \"error\": %s", r.Body)
					}
					restMsg = e.Error
					for _, w := range tt.want {
						if !strings.Contains(restMsg, w) {
							t.Errorf("REST error %q does not contain %q", restMsg, w)
						}
					}
				}
			}
			if tt.grpc == nil {
				return
			}
			var hdr, trl metadata.MD
			_, err := c.ModelInfer(ctx, tt.grpc, grpc.Header(&hdr), grpc.Trailer(&trl))
			// A message over the limit is refused by the transport before
			// any interceptor runs, so it has no request id.
			if tt.code != codes.ResourceExhausted && len(hdr.Get("x-request-id")) == 0 && len(trl.Get("x-request-id")) == 0 {
				t.Errorf("no x-request-id in the header (%v) or trailer (%v) metadata", hdr, trl)
			}
			st := oipStatus(t, err)
			if st.Code() == codes.Internal || st.Code() == codes.Unknown {
				t.Errorf("gRPC answered %v", err)
			}
			if st.Code() != tt.code {
				t.Errorf("gRPC code = %v, want %v: %s", st.Code(), tt.code, st.Message())
			}
			for _, w := range tt.want {
				if !strings.Contains(st.Message(), w) {
					t.Errorf("gRPC message %q does not contain %q", st.Message(), w)
				}
			}
			switch {
			case tt.same && restMsg != st.Message():
				t.Errorf("messages differ:\n REST %q\n gRPC %q", restMsg, st.Message())
			case tt.body != "" && restMsg != st.Message():
				t.Logf("messages differ:\n REST %q\n gRPC %q", restMsg, st.Message())
			}
		})
	}
}
