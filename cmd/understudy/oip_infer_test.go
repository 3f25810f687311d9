package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	pb "github.com/understudy-ml/understudy/pkg/oip/inferencepb"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// oipMLP is the classifier the inference tests run: 4 features, 3 classes.
func oipMLP(seed int64) onnxbuild.Dense {
	return onnxbuild.RandomMLP(seed, 4, []int{8}, 3)
}

var oipRows = [][]float32{
	{0.5, -1.25, 3.3, 0.7},
	{-2, 0.1, 0.4, 1.9},
	{1.1, 1.1, -0.3, -2.5},
	{3, -0.5, -1, 0.25},
}

func oipFlat(rows [][]float32) []float32 {
	var out []float32
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// oipCheckMLP compares labels and probabilities with d.Predict on rows;
// nil skips one that was not requested.
func oipCheckMLP(tb testing.TB, d onnxbuild.Dense, rows [][]float32, labels []int64, probs []float32) {
	tb.Helper()
	wantLabels, wantProbs := d.Predict(rows)
	if labels != nil && !slices.Equal(labels, wantLabels) {
		tb.Errorf("labels = %v, want %v", labels, wantLabels)
	}
	if probs == nil {
		return
	}
	flat := oipFlat(wantProbs)
	if len(probs) != len(flat) {
		tb.Fatalf("%d probabilities, want %d", len(probs), len(flat))
	}
	for i := range flat {
		if math.Abs(float64(probs[i]-flat[i])) > 1e-5 {
			tb.Errorf("probabilities[%d] = %v, want %v", i, probs[i], flat[i])
		}
	}
}

// Ensure inference over REST (flat, nested, binary in and out) and gRPC
// (typed and raw) gives the labels and probabilities the network computes
// in Go, with the model's name, version and the request's id, and that a
// requested subset of outputs comes back alone and in the requested order.
func TestOIPInferMLP(t *testing.T) {
	d := oipMLP(7)
	dir := t.TempDir()
	model := d.Model("mlp")
	writeModel(t, dir, "mlp", model, time.Time{})
	m := startServer(t, dir)
	c := oipClient(t, m)
	ctx := oipCtx(t)
	version := oipVersion(t, model)
	infer := m.URL() + "/v2/models/mlp/infer"
	flat, _ := json.Marshal(oipFlat(oipRows))
	nested, _ := json.Marshal(oipRows)
	labels, _ := d.Predict(oipRows)
	if slices.Min(labels) == slices.Max(labels) {
		t.Fatalf("every row has label %d; the rows do not exercise the classifier", labels[0])
	}

	// checkREST checks every output of a REST answer against the network,
	// reading each from JSON data or binary data, whichever it came in.
	checkREST := func(t *testing.T, a oipAnswer, id string, wantNames []string) {
		t.Helper()
		if a.ModelName != "mlp" || a.ModelVersion != version || a.ID != id {
			t.Errorf("answer names model %s@%s id %q, want mlp@%s id %q", a.ModelName, a.ModelVersion, a.ID, version, id)
		}
		if !slices.Equal(a.names(), wantNames) {
			t.Fatalf("outputs %v, want %v", a.names(), wantNames)
		}
		var gotLabels []int64
		var gotProbs []float32
		for _, o := range a.Outputs {
			bin, isBin := a.Binary[o.Name]
			switch o.Name {
			case "label":
				if o.Datatype != "INT64" || !slices.Equal(o.Shape, []int64{4}) {
					t.Errorf("label is %s %v, want INT64 [4]", o.Datatype, o.Shape)
				}
				if isBin {
					gotLabels = oipInt64s(t, bin)
				} else if err := json.Unmarshal(o.Data, &gotLabels); err != nil {
					t.Fatal(err)
				}
			case "probabilities":
				if o.Datatype != "FP32" || !slices.Equal(o.Shape, []int64{4, 3}) {
					t.Errorf("probabilities is %s %v, want FP32 [4,3]", o.Datatype, o.Shape)
				}
				if isBin {
					gotProbs = oipFloats32(t, bin)
				} else if err := json.Unmarshal(o.Data, &gotProbs); err != nil {
					t.Fatal(err)
				}
			}
			if isBin && o.Data != nil {
				t.Errorf("output %s has both binary data and data %s", o.Name, o.Data)
			}
		}
		oipCheckMLP(t, d, oipRows, gotLabels, gotProbs)
	}
	both := []string{"label", "probabilities"}

	t.Run("REST flat", func(t *testing.T) {
		body := fmt.Sprintf(`{"id": "flat-1", "inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 4], "data": %s}]}`, flat)
		r := oipPost(t, infer, []byte(body), nil)
		if got := r.Header.Get("X-Request-Id"); got != "flat-1" {
			t.Errorf("X-Request-Id = %q, want flat-1", got)
		}
		checkREST(t, oipDecode(t, r), "flat-1", both)
	})
	t.Run("REST nested, version in the path", func(t *testing.T) {
		body := fmt.Sprintf(`{"id": "nested-1", "inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 4], "data": %s}]}`, nested)
		checkREST(t, oipDecode(t, oipPost(t, m.URL()+"/v2/models/mlp/versions/"+version+"/infer", []byte(body), nil)), "nested-1", both)
	})
	t.Run("REST binary input", func(t *testing.T) {
		raw := oipLE(oipFlat(oipRows))
		body, h := oipBinary(fmt.Sprintf(`{"id": "bin-in", "inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 4], "parameters": {"binary_data_size": %d}}]}`, len(raw)), raw)
		r := oipPost(t, infer, body, h)
		if r.Header.Get("Inference-Header-Content-Length") != "" {
			t.Errorf("binary input alone gave a binary answer: %q", r.Header)
		}
		checkREST(t, oipDecode(t, r), "bin-in", both)
	})
	t.Run("REST binary_data_output", func(t *testing.T) {
		body := fmt.Sprintf(`{"id": "bin-out", "inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 4], "data": %s}], "parameters": {"binary_data_output": true}}`, flat)
		r := oipPost(t, infer, []byte(body), nil)
		a := oipDecode(t, r)
		if len(a.Binary) != 2 {
			t.Errorf("binary outputs %v, want both", a.Binary)
		}
		checkREST(t, a, "bin-out", both)
	})
	t.Run("REST binary input and one binary output, reordered", func(t *testing.T) {
		raw := oipLE(oipFlat(oipRows))
		body, h := oipBinary(fmt.Sprintf(`{"id": "bin-both", "inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 4], "parameters": {"binary_data_size": %d}}],
			"outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}, {"name": "label", "parameters": {"binary_data": false}}]}`, len(raw)), raw)
		a := oipDecode(t, oipPost(t, infer, body, h))
		if _, ok := a.Binary["probabilities"]; !ok || len(a.Binary) != 1 {
			t.Errorf("binary outputs %v, want probabilities alone", a.Binary)
		}
		checkREST(t, a, "bin-both", []string{"probabilities", "label"})
	})
	t.Run("REST requested subset", func(t *testing.T) {
		body := fmt.Sprintf(`{"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 4], "data": %s}], "outputs": [{"name": "probabilities"}]}`, flat)
		r := oipPost(t, infer, []byte(body), nil)
		checkREST(t, oipDecode(t, r), r.Header.Get("X-Request-Id"), []string{"probabilities"})
	})

	grpcIn := func(raw bool) *pb.ModelInferRequest {
		in := &pb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: "FP32", Shape: []int64{4, 4}}
		req := &pb.ModelInferRequest{ModelName: "mlp", Id: "grpc-1", Inputs: []*pb.ModelInferRequest_InferInputTensor{in}}
		if raw {
			req.RawInputContents = [][]byte{oipLE(oipFlat(oipRows))}
		} else {
			in.Contents = &pb.InferTensorContents{Fp32Contents: oipFlat(oipRows)}
		}
		return req
	}
	checkMeta := func(t *testing.T, resp *pb.ModelInferResponse, names ...string) {
		t.Helper()
		if resp.ModelName != "mlp" || resp.ModelVersion != version || resp.Id != "grpc-1" {
			t.Errorf("answer names %s@%s id %q, want mlp@%s id grpc-1", resp.ModelName, resp.ModelVersion, resp.Id, version)
		}
		var got []string
		for _, o := range resp.Outputs {
			got = append(got, fmt.Sprintf("%s %s %v", o.Name, o.Datatype, o.Shape))
		}
		want := map[string]string{"label": "label INT64 [4]", "probabilities": "probabilities FP32 [4 3]"}
		var wantList []string
		for _, n := range names {
			wantList = append(wantList, want[n])
		}
		if !slices.Equal(got, wantList) {
			t.Fatalf("outputs %v, want %v", got, wantList)
		}
	}
	t.Run("gRPC typed", func(t *testing.T) {
		resp, err := c.ModelInfer(ctx, grpcIn(false))
		if err != nil {
			t.Fatal(err)
		}
		checkMeta(t, resp, both...)
		if len(resp.RawOutputContents) != 0 {
			t.Errorf("typed request got raw_output_contents: %d entries", len(resp.RawOutputContents))
		}
		oipCheckMLP(t, d, oipRows, resp.Outputs[0].GetContents().GetInt64Contents(), resp.Outputs[1].GetContents().GetFp32Contents())
	})
	t.Run("gRPC raw", func(t *testing.T) {
		resp, err := c.ModelInfer(ctx, grpcIn(true))
		if err != nil {
			t.Fatal(err)
		}
		checkMeta(t, resp, both...)
		if len(resp.RawOutputContents) != 2 {
			t.Fatalf("raw request got %d raw_output_contents, want 2", len(resp.RawOutputContents))
		}
		for _, o := range resp.Outputs {
			if o.Contents != nil {
				t.Errorf("output %s has typed contents %v beside raw", o.Name, o.Contents)
			}
		}
		oipCheckMLP(t, d, oipRows, oipInt64s(t, resp.RawOutputContents[0]), oipFloats32(t, resp.RawOutputContents[1]))
	})
	t.Run("gRPC requested subset", func(t *testing.T) {
		req := grpcIn(false)
		req.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "probabilities"}}
		resp, err := c.ModelInfer(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		checkMeta(t, resp, "probabilities")
		oipCheckMLP(t, d, oipRows, nil, resp.Outputs[0].GetContents().GetFp32Contents())

		req = grpcIn(true)
		req.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "probabilities"}, {Name: "label"}}
		if resp, err = c.ModelInfer(ctx, req); err != nil {
			t.Fatal(err)
		}
		checkMeta(t, resp, "probabilities", "label")
		if len(resp.RawOutputContents) != 2 {
			t.Fatalf("%d raw_output_contents, want 2", len(resp.RawOutputContents))
		}
		oipCheckMLP(t, d, oipRows, oipInt64s(t, resp.RawOutputContents[1]), oipFloats32(t, resp.RawOutputContents[0]))
	})
}

// Ensure inputs bind by name whatever their order, INT64 inputs and a
// rank-0 output travel over REST and gRPC, and values match MultiIO's
// arithmetic: sum = a+a, b_doubled = 2b, total = the sum of a.
func TestOIPInferMultiIO(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "multi", onnxbuild.MultiIO(), time.Time{})
	m := startServer(t, dir)
	c := oipClient(t, m)
	ctx := oipCtx(t)
	a, b := []float32{1, 2, 3, 4, 5, 6.5}, []int64{7, -8, math.MaxInt64 / 2, math.MinInt64 / 2}
	wantSum, wantB, wantTotal := []float32{2, 4, 6, 8, 10, 13}, []int64{14, -16, math.MaxInt64 - 1, math.MinInt64}, float32(21.5)

	t.Run("REST", func(t *testing.T) {
		body := `{"inputs": [{"name": "b", "datatype": "INT64", "shape": [2, 2], "data": [7, -8, 4611686018427387903, -4611686018427387904]},
			{"name": "a", "datatype": "FP32", "shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6.5]]}]}`
		ans := oipDecode(t, oipPost(t, m.URL()+"/v2/models/multi/infer", []byte(body), nil))
		if got := ans.names(); !slices.Equal(got, []string{"sum", "b_doubled", "total"}) {
			t.Fatalf("outputs %v, want the model's order", got)
		}
		var sum, total []float32
		var bd []int64
		for name, v := range map[string]any{"sum": &sum, "b_doubled": &bd, "total": &total} {
			if err := json.Unmarshal(ans.output(t, name).Data, v); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if tot := ans.output(t, "total"); len(tot.Shape) != 0 || tot.Datatype != "FP32" {
			t.Errorf("total is %s %v, want FP32 []", tot.Datatype, tot.Shape)
		}
		if !slices.Equal(sum, wantSum) || !slices.Equal(bd, wantB) || !slices.Equal(total, []float32{wantTotal}) {
			t.Errorf("sum %v b_doubled %v total %v, want %v %v %v", sum, bd, total, wantSum, wantB, wantTotal)
		}
	})
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("gRPC raw=%v", raw), func(t *testing.T) {
			req := &pb.ModelInferRequest{ModelName: "multi", Inputs: []*pb.ModelInferRequest_InferInputTensor{
				{Name: "b", Datatype: "INT64", Shape: []int64{2, 2}},
				{Name: "a", Datatype: "FP32", Shape: []int64{2, 3}},
			}}
			if raw {
				req.RawInputContents = [][]byte{oipLE(b), oipLE(a)}
			} else {
				req.Inputs[0].Contents = &pb.InferTensorContents{Int64Contents: b}
				req.Inputs[1].Contents = &pb.InferTensorContents{Fp32Contents: a}
			}
			resp, err := c.ModelInfer(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range resp.Outputs {
				got = append(got, fmt.Sprintf("%s %s %v", o.Name, o.Datatype, o.Shape))
			}
			if want := []string{"sum FP32 [2 3]", "b_doubled INT64 [2 2]", "total FP32 []"}; !slices.Equal(got, want) {
				t.Fatalf("outputs %v, want %v", got, want)
			}
			var sum, total []float32
			var bd []int64
			if raw {
				if len(resp.RawOutputContents) != 3 {
					t.Fatalf("%d raw outputs, want 3", len(resp.RawOutputContents))
				}
				sum, bd, total = oipFloats32(t, resp.RawOutputContents[0]), oipInt64s(t, resp.RawOutputContents[1]), oipFloats32(t, resp.RawOutputContents[2])
			} else {
				sum, bd, total = resp.Outputs[0].GetContents().GetFp32Contents(), resp.Outputs[1].GetContents().GetInt64Contents(), resp.Outputs[2].GetContents().GetFp32Contents()
			}
			if !slices.Equal(sum, wantSum) || !slices.Equal(bd, wantB) || !slices.Equal(total, []float32{wantTotal}) {
				t.Errorf("sum %v b_doubled %v total %v, want %v %v [%v]", sum, bd, total, wantSum, wantB, wantTotal)
			}
		})
	}
}
