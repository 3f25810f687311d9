package main

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/understudy-ml/understudy/pkg/oip/inferencepb"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// oipDatatypeCase is one datatype's edge values, six elements for shape
// [3, 2], in each form the protocol carries them.
type oipDatatypeCase struct {
	datatype string
	dt       onnxbuild.DType
	json     string
	raw      []byte
	// typed is the gRPC typed array; nil for FP16, which has none.
	typed *pb.InferTensorContents
}

func oipDatatypeCases() []oipDatatypeCase {
	negZero32, negZero64 := float32(math.Copysign(0, -1)), math.Copysign(0, -1)
	f32 := []float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, negZero32, 0.1, 1}
	f64 := []float64{math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, negZero64, 0.1, 1}
	strs := []string{"", "hello", "ünïcødé €", `say "hi"`, "tab\there\nnewline", "0"}
	bytesOf := func(ss []string) [][]byte {
		out := make([][]byte, len(ss))
		for i, s := range ss {
			out[i] = []byte(s)
		}
		return out
	}
	return []oipDatatypeCase{
		{"BOOL", onnxbuild.Bool, `[true, false, false, true, true, false]`,
			oipLE([]bool{true, false, false, true, true, false}),
			&pb.InferTensorContents{BoolContents: []bool{true, false, false, true, true, false}}},
		{"UINT8", onnxbuild.Uint8, `[0, 255, 1, 128, 254, 7]`,
			oipLE([]uint8{0, 255, 1, 128, 254, 7}),
			&pb.InferTensorContents{UintContents: []uint32{0, 255, 1, 128, 254, 7}}},
		{"UINT16", onnxbuild.Uint16, `[0, 65535, 1, 32768, 65534, 7]`,
			oipLE([]uint16{0, 65535, 1, 32768, 65534, 7}),
			&pb.InferTensorContents{UintContents: []uint32{0, 65535, 1, 32768, 65534, 7}}},
		{"UINT32", onnxbuild.Uint32, `[0, 4294967295, 1, 2147483648, 4294967294, 7]`,
			oipLE([]uint32{0, 4294967295, 1, 2147483648, 4294967294, 7}),
			&pb.InferTensorContents{UintContents: []uint32{0, 4294967295, 1, 2147483648, 4294967294, 7}}},
		{"UINT64", onnxbuild.Uint64, `[0, 18446744073709551615, 1, 9223372036854775808, 18446744073709551614, 7]`,
			oipLE([]uint64{0, 18446744073709551615, 1, 9223372036854775808, 18446744073709551614, 7}),
			&pb.InferTensorContents{Uint64Contents: []uint64{0, 18446744073709551615, 1, 9223372036854775808, 18446744073709551614, 7}}},
		{"INT8", onnxbuild.Int8, `[-128, 127, 0, -1, 1, -127]`,
			oipLE([]int8{-128, 127, 0, -1, 1, -127}),
			&pb.InferTensorContents{IntContents: []int32{-128, 127, 0, -1, 1, -127}}},
		{"INT16", onnxbuild.Int16, `[-32768, 32767, 0, -1, 1, -32767]`,
			oipLE([]int16{-32768, 32767, 0, -1, 1, -32767}),
			&pb.InferTensorContents{IntContents: []int32{-32768, 32767, 0, -1, 1, -32767}}},
		{"INT32", onnxbuild.Int32, `[-2147483648, 2147483647, 0, -1, 1, -2147483647]`,
			oipLE([]int32{-2147483648, 2147483647, 0, -1, 1, -2147483647}),
			&pb.InferTensorContents{IntContents: []int32{-2147483648, 2147483647, 0, -1, 1, -2147483647}}},
		{"INT64", onnxbuild.Int64, `[-9223372036854775808, 9223372036854775807, 0, -1, 1, -9223372036854775807]`,
			oipLE([]int64{-9223372036854775808, 9223372036854775807, 0, -1, 1, -9223372036854775807}),
			&pb.InferTensorContents{Int64Contents: []int64{-9223372036854775808, 9223372036854775807, 0, -1, 1, -9223372036854775807}}},
		// 1.5, -2, the largest finite values, the smallest subnormal and -0.
		{"FP16", onnxbuild.Float16, `[1.5, -2, 65504, -65504, 5.960464477539063e-08, -0]`,
			oipLE([]uint16{0x3e00, 0xc000, 0x7bff, 0xfbff, 0x0001, 0x8000}), nil},
		{"FP32", onnxbuild.Float, `[3.4028234663852886e+38, -3.4028234663852886e+38, 1e-45, -0, 0.1, 1]`,
			oipLE(f32), &pb.InferTensorContents{Fp32Contents: f32}},
		{"FP64", onnxbuild.Double, `[1.7976931348623157e+308, -1.7976931348623157e+308, 5e-324, -0, 0.1, 1]`,
			oipLE(f64), &pb.InferTensorContents{Fp64Contents: f64}},
		{"BYTES", onnxbuild.String, `["", "hello", "ünïcødé €", "say \"hi\"", "tab\there\nnewline", "0"]`,
			oipRawStrings(strs...), &pb.InferTensorContents{BytesContents: bytesOf(strs)}},
	}
}

// Ensure every datatype is echoed unchanged by an Identity primary over
// REST JSON, REST binary, gRPC typed and gRPC raw, at the edges of its
// range, and that FP16, which has no typed array, is refused typed with a
// message pointing to raw contents.
func TestOIPDatatypes(t *testing.T) {
	for _, tc := range oipDatatypeCases() {
		t.Run(tc.datatype, func(t *testing.T) {
			dir := t.TempDir()
			writeModel(t, dir, "echo", onnxbuild.Identity(tc.dt, []int64{-1, 2}), time.Time{})
			m := startServer(t, dir)
			c := oipClient(t, m)
			ctx := oipCtx(t)
			infer := m.URL() + "/v2/models/echo/infer"
			// check is one answer's only output: y, of the case's datatype
			// and shape [3, 2], holding the case's values.
			check := func(t *testing.T, name, datatype string, shape []int64, raw []byte) {
				t.Helper()
				if name != "y" || datatype != tc.datatype || !slices.Equal(shape, []int64{3, 2}) {
					t.Errorf("output %s %s %v, want y %s [3 2]", name, datatype, shape, tc.datatype)
				}
				if !bytes.Equal(raw, tc.raw) {
					t.Errorf("values (raw form)\n got %x\nwant %x", raw, tc.raw)
				}
			}

			t.Run("REST JSON", func(t *testing.T) {
				body := fmt.Sprintf(`{"inputs": [{"name": "x", "datatype": %q, "shape": [3, 2], "data": %s}]}`, tc.datatype, tc.json)
				a := oipDecode(t, oipPost(t, infer, []byte(body), nil))
				if len(a.Outputs) != 1 {
					t.Fatalf("outputs %v, want y alone", a.names())
				}
				o := a.Outputs[0]
				check(t, o.Name, o.Datatype, o.Shape, oipJSONAsRaw(t, tc.datatype, o.Data))
			})
			t.Run("REST binary", func(t *testing.T) {
				body, h := oipBinary(fmt.Sprintf(`{"inputs": [{"name": "x", "datatype": %q, "shape": [3, 2], "parameters": {"binary_data_size": %d}}], "parameters": {"binary_data_output": true}}`,
					tc.datatype, len(tc.raw)), tc.raw)
				a := oipDecode(t, oipPost(t, infer, body, h))
				if len(a.Outputs) != 1 {
					t.Fatalf("outputs %v, want y alone", a.names())
				}
				o := a.Outputs[0]
				if o.Data != nil {
					t.Errorf("binary output also has data %s", o.Data)
				}
				check(t, o.Name, o.Datatype, o.Shape, a.Binary["y"])
			})
			t.Run("gRPC typed", func(t *testing.T) {
				in := &pb.ModelInferRequest_InferInputTensor{Name: "x", Datatype: tc.datatype, Shape: []int64{3, 2}, Contents: tc.typed}
				if tc.typed == nil {
					// What a client might try: the values as FP32.
					in.Contents = &pb.InferTensorContents{Fp32Contents: []float32{1.5, -2, 65504, -65504, 0, 0}}
				}
				resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "echo", Inputs: []*pb.ModelInferRequest_InferInputTensor{in}})
				if tc.typed == nil {
					if st := oipStatus(t, err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "raw") {
						t.Errorf("typed FP16: %v, want InvalidArgument saying to send raw contents", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Outputs) != 1 || len(resp.RawOutputContents) != 0 {
					t.Fatalf("answer %v, want one typed output", resp)
				}
				o := resp.Outputs[0]
				if !proto.Equal(o.Contents, tc.typed) {
					t.Errorf("contents\n got %v\nwant %v", o.Contents, tc.typed)
				}
				check(t, o.Name, o.Datatype, o.Shape, tc.raw)
			})
			t.Run("gRPC raw", func(t *testing.T) {
				resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "echo",
					Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: tc.datatype, Shape: []int64{3, 2}}},
					RawInputContents: [][]byte{tc.raw}})
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Outputs) != 1 || len(resp.RawOutputContents) != 1 {
					t.Fatalf("answer %v, want one raw output", resp)
				}
				if resp.Outputs[0].Contents != nil {
					t.Errorf("raw answer also has typed contents %v", resp.Outputs[0].Contents)
				}
				o := resp.Outputs[0]
				check(t, o.Name, o.Datatype, o.Shape, resp.RawOutputContents[0])
			})
		})
	}
}

// Ensure BYTES elements that are not UTF-8 come back unchanged, and that an
// element with a NUL byte, which ONNX Runtime's string tensors would cut
// short, is refused over every transport instead of silently altered.
func TestOIPBytesNotText(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "echo", onnxbuild.Identity(onnxbuild.String, []int64{-1}), time.Time{})
	m := startServer(t, dir)
	c := oipClient(t, m)
	ctx := oipCtx(t)
	binary := []string{"\xff\xfe not utf-8", "é"}
	withNUL := []string{"nul\x00inside", "ok"}
	t.Run("gRPC raw", func(t *testing.T) {
		raw := oipRawStrings(binary...)
		resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "echo",
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "BYTES", Shape: []int64{2}}},
			RawInputContents: [][]byte{raw}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.RawOutputContents[0]; !bytes.Equal(got, raw) {
			t.Errorf("echo of %q\n got %q\nwant %q", binary, got, raw)
		}
		_, err = c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "echo",
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "BYTES", Shape: []int64{2}}},
			RawInputContents: [][]byte{oipRawStrings(withNUL...)}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "NUL byte") {
			t.Errorf("NUL: %v, want InvalidArgument naming the NUL byte", err)
		}
	})
	t.Run("gRPC typed", func(t *testing.T) {
		typed := &pb.InferTensorContents{BytesContents: [][]byte{[]byte(binary[0]), []byte(binary[1])}}
		resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "echo",
			Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "BYTES", Shape: []int64{2}, Contents: typed}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Outputs[0].Contents; !proto.Equal(got, typed) {
			t.Errorf("echo of %q\n got %q\nwant %q", binary, got.GetBytesContents(), typed.BytesContents)
		}
		nul := &pb.InferTensorContents{BytesContents: [][]byte{[]byte(withNUL[0]), []byte(withNUL[1])}}
		_, err = c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "echo",
			Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "BYTES", Shape: []int64{2}, Contents: nul}}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "NUL byte") {
			t.Errorf("NUL: %v, want InvalidArgument naming the NUL byte", err)
		}
	})
	t.Run("REST JSON", func(t *testing.T) {
		r := oipPost(t, m.URL()+"/v2/models/echo/infer", []byte(`{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["nul\u0000inside"]}]}`), nil)
		if r.Status != 400 || !strings.Contains(string(r.Body), "NUL byte") {
			t.Errorf("NUL: %d %s, want 400 naming the NUL byte", r.Status, r.Body)
		}
		r = testRequest(t, "POST", m.URL()+"/predict", []byte(`{"input": ["nul\u0000inside"]}`))
		if r.Status != 400 || !strings.Contains(string(r.Body), "NUL byte") {
			t.Errorf("/predict with NUL: %d %s, want 400 naming the NUL byte", r.Status, r.Body)
		}
	})
	t.Run("REST binary", func(t *testing.T) {
		raw := oipRawStrings(binary...)
		body, h := oipBinary(fmt.Sprintf(`{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": %d}}], "parameters": {"binary_data_output": true}}`, len(raw)), raw)
		r := oipPost(t, m.URL()+"/v2/models/echo/infer", body, h)
		if got := oipDecode(t, r).Binary["y"]; !bytes.Equal(got, raw) {
			t.Errorf("echo of %q\n got %q\nwant %q", binary, got, raw)
		}
		nul := oipRawStrings(withNUL...)
		body, h = oipBinary(fmt.Sprintf(`{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": %d}}]}`, len(nul)), nul)
		if r := oipPost(t, m.URL()+"/v2/models/echo/infer", body, h); r.Status != 400 || !strings.Contains(string(r.Body), "NUL byte") {
			t.Errorf("NUL: %d %s, want 400 naming the NUL byte", r.Status, r.Body)
		}
	})
}
