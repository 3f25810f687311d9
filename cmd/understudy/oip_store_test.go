package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	pb "github.com/understudy-ml/understudy/pkg/oip/inferencepb"
)

// Ensure requests to a primary that was promoted away are refused with
// 409/FailedPrecondition naming the new primary, and the new primary
// answers under its name and as the default of gRPC.
func TestOIPPromotedPrimary(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := oipMLP(1).Model("mlp"), oipMLP(2).Model("mlp")
	writeModel(t, dir, "mlp", v1, time.Time{})
	writeModel(t, dir, "mlp2", v2, time.Time{})
	m := startServer(t, dir, "--primary", "mlp", "--admin-token", adminToken)
	c := oipClient(t, m)
	ctx := oipCtx(t)
	if r := admin(t, "POST", m.URL()+"/models/mlp2/promote", adminToken, nil); r.Status != 200 {
		t.Fatalf("promote: %d %s", r.Status, r.Body)
	}
	body := []byte(`{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}`)
	in := []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}
	for _, path := range []string{"/v2/models/mlp/infer", "/v2/models/mlp/versions/" + oipVersion(t, v1) + "/infer"} {
		r := oipPost(t, m.URL()+path, body, nil)
		if msg, _ := r.json(t)["error"].(string); r.Status != 409 || !strings.Contains(msg, "shadow") || !strings.Contains(msg, "the primary is mlp2@") {
			t.Errorf("POST %s = %d %s, want 409 saying mlp is a shadow and naming mlp2", path, r.Status, r.Body)
		}
	}
	_, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "mlp", Inputs: in})
	if st := oipStatus(t, err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "the primary is mlp2@") {
		t.Errorf("ModelInfer(mlp) = %v, want FailedPrecondition naming mlp2", err)
	}
	if r := testRequest(t, "GET", m.URL()+"/v2/models/mlp/ready", nil); r.Status != 503 {
		t.Errorf("mlp ready = %d, want 503", r.Status)
	}
	if r := testRequest(t, "GET", m.URL()+"/v2/models/mlp2/ready", nil); r.Status != 200 {
		t.Errorf("mlp2 ready = %d, want 200", r.Status)
	}
	if a := oipDecode(t, oipPost(t, m.URL()+"/v2/models/mlp2/infer", body, nil)); a.ModelName != "mlp2" || a.ModelVersion != oipVersion(t, v2) {
		t.Errorf("mlp2 answered as %s@%s", a.ModelName, a.ModelVersion)
	}
	resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{Inputs: in})
	if err != nil || resp.ModelName != "mlp2" {
		t.Errorf("ModelInfer with no model name = %v, %v; want mlp2's answer", resp, err)
	}
}

// Ensure OIP requests over both transports are mirrored to the shadow and
// stored under their ids with comparisons that match the two networks run
// in Go, and that feedback by an OIP id joins the label to its request.
func TestOIPMirroredAndStored(t *testing.T) {
	primary, shadow := oipMLP(11), oipMLP(12)
	dir := t.TempDir()
	writeModel(t, dir, "mlp", primary.Model("mlp"), time.Time{})
	writeModel(t, dir, "mlp2", shadow.Model("mlp2"), time.Time{})
	m := startServer(t, dir, "--primary", "mlp", "--shed-when-busy=false")
	c := oipClient(t, m)
	ctx := oipCtx(t)
	rows := [][]float32{
		{0.5, -1.25, 3.3, 0.7}, {-2, 0.1, 0.4, 1.9}, {1.1, 1.1, -0.3, -2.5}, {3, -0.5, -1, 0.25},
		{-0.7, 2.2, 0.9, -1.4}, {0, 0, 0, 0}, {2.5, 2.5, -2.5, 1}, {-3, 1, 2, -1},
	}
	pLabels, pProbs := primary.Predict(rows)
	sLabels, sProbs := shadow.Predict(rows)
	disagree := 0
	for i := range rows {
		if pLabels[i] != sLabels[i] {
			disagree++
		}
	}
	if disagree == 0 || disagree == len(rows) {
		t.Fatalf("the networks disagree on %d of %d rows; want some of each to exercise the comparison", disagree, len(rows))
	}

	ids := make([]string, len(rows))
	for i, x := range rows {
		row, _ := json.Marshal(x)
		switch i % 4 {
		case 0: // REST JSON
			ids[i] = fmt.Sprintf("oip-rest-%d", i)
			a := oipDecode(t, oipPost(t, m.URL()+"/v2/models/mlp/infer",
				[]byte(fmt.Sprintf(`{"id": %q, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": %s}]}`, ids[i], row)), nil))
			if a.ID != ids[i] {
				t.Errorf("answer id %q, want %q", a.ID, ids[i])
			}
		case 1: // REST binary
			ids[i] = fmt.Sprintf("oip-rest-bin-%d", i)
			raw := oipLE(x)
			body, h := oipBinary(fmt.Sprintf(`{"id": %q, "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": %d}}]}`, ids[i], len(raw)), raw)
			oipDecode(t, oipPost(t, m.URL()+"/v2/models/mlp/infer", body, h))
		case 2, 3: // gRPC typed, raw
			ids[i] = fmt.Sprintf("oip-grpc-%d", i)
			in := &pb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}}
			req := &pb.ModelInferRequest{ModelName: "mlp", Id: ids[i], Inputs: []*pb.ModelInferRequest_InferInputTensor{in}}
			if i%4 == 2 {
				in.Contents = &pb.InferTensorContents{Fp32Contents: x}
			} else {
				req.RawInputContents = [][]byte{oipLE(x)}
			}
			resp, err := c.ModelInfer(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Id != ids[i] {
				t.Errorf("answer id %q, want %q", resp.Id, ids[i])
			}
		}
	}

	for i, id := range ids {
		d := oipStored(t, m, id, 1, false)
		if d.Model != "mlp" || d.Status != "ok" || len(d.Shadows) != 1 {
			t.Fatalf("%s: stored %+v, want an ok prediction of mlp and one shadow result", id, d)
		}
		// Whatever the transport, the store holds the tensors alike.
		var stored struct {
			Input struct {
				DType string      `json:"dtype"`
				Shape []int64     `json:"shape"`
				Data  [][]float32 `json:"data"`
			} `json:"input"`
		}
		var out struct {
			Label struct {
				Data []int64 `json:"data"`
			} `json:"label"`
		}
		if err := json.Unmarshal([]byte(d.Inputs), &stored); err != nil || stored.Input.DType != "float32" ||
			!slices.Equal(stored.Input.Shape, []int64{1, 4}) || len(stored.Input.Data) != 1 || !slices.Equal(stored.Input.Data[0], rows[i]) {
			t.Errorf("%s: stored inputs %s, want float32 [1,4] %v", id, d.Inputs, rows[i])
		}
		if err := json.Unmarshal([]byte(d.Outputs), &out); err != nil || !slices.Equal(out.Label.Data, pLabels[i:i+1]) {
			t.Errorf("%s: stored outputs %s, want label %d", id, d.Outputs, pLabels[i])
		}
		s := d.Shadows[0]
		cmp := s.Comparison
		if s.Shadow != "mlp2" || s.PrimaryModel != "mlp" || s.Status != "ok" || cmp.Agreement == nil || cmp.PrimaryClass == nil || cmp.ShadowClass == nil {
			t.Fatalf("%s: shadow result %+v", id, s)
		}
		wantAgree := 0.0
		if pLabels[i] == sLabels[i] {
			wantAgree = 1
		}
		if *cmp.Agreement != wantAgree || *cmp.PrimaryClass != pLabels[i] || *cmp.ShadowClass != sLabels[i] {
			t.Errorf("%s: agreement %v classes %d/%d, want %v %d/%d", id, *cmp.Agreement, *cmp.PrimaryClass, *cmp.ShadowClass, wantAgree, pLabels[i], sLabels[i])
		}
		var maxDiff float64
		for k := range pProbs[i] {
			maxDiff = math.Max(maxDiff, math.Abs(float64(pProbs[i][k]-sProbs[i][k])))
		}
		if cmp.MaxAbsDiff == nil || math.Abs(*cmp.MaxAbsDiff-maxDiff) > 1e-5 {
			t.Errorf("%s: max |Δ| = %v, want %v", id, cmp.MaxAbsDiff, maxDiff)
		}
	}

	for _, f := range []struct {
		id    string
		label int
	}{{ids[0], 2}, {ids[2], 1}} {
		r := testRequest(t, "POST", m.URL()+"/feedback", []byte(fmt.Sprintf(`{"id": %q, "label": %d}`, f.id, f.label)))
		if r.Status != 200 {
			t.Fatalf("feedback for %s: %d %s", f.id, r.Status, r.Body)
		}
		if d := oipStored(t, m, f.id, 1, true); *d.Label != float64(f.label) {
			t.Errorf("%s: label %v, want %d", f.id, *d.Label, f.label)
		}
	}
}

// Ensure the request id is the OIP body id when given (in the answer, the
// X-Request-Id header or x-request-id header metadata, and the store), else
// the client's X-Request-Id header or x-request-id metadata, else a
// generated one, and that an unusable id in metadata is replaced.
func TestOIPRequestID(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "mlp", oipMLP(3).Model("mlp"), time.Time{})
	m := startServer(t, dir)
	c := oipClient(t, m)
	in := []*pb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}
	long := strings.Repeat("m", 200)

	grpcTests := []struct {
		name     string
		metadata string // x-request-id sent; "" for none
		bodyID   string
		want     string // "" for a generated id
	}{
		{"metadata only", "grpc-md-1", "", "grpc-md-1"},
		{"body id over metadata", "grpc-md-2", "grpc-body-2", "grpc-body-2"},
		{"body id only", "", "grpc-body-3", "grpc-body-3"},
		{"neither", "", "", ""},
		{"metadata too long", long, "", ""},
	}
	for _, tt := range grpcTests {
		t.Run("gRPC "+tt.name, func(t *testing.T) {
			ctx := oipCtx(t)
			if tt.metadata != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", tt.metadata)
			}
			var hdr metadata.MD
			resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "mlp", Id: tt.bodyID, Inputs: in}, grpc.Header(&hdr))
			if err != nil {
				t.Fatal(err)
			}
			got := resp.Id
			if tt.want != "" && got != tt.want {
				t.Errorf("answer id %q, want %q", got, tt.want)
			}
			if tt.want == "" && (got == "" || got == tt.metadata) {
				t.Errorf("answer id %q, want a generated one", got)
			}
			if h := hdr.Get("x-request-id"); len(h) != 1 || h[0] != got {
				t.Errorf("x-request-id header metadata %v, want [%s]", h, got)
			}
			oipStored(t, m, got, 0, false)
			if tt.metadata != "" && tt.metadata != got && len(tt.metadata) <= 128 {
				if r := testRequest(t, "GET", m.URL()+"/api/requests/"+tt.metadata, nil); r.Status != 404 {
					t.Errorf("the metadata's id %s was stored too: %d %s", tt.metadata, r.Status, r.Body)
				}
			}
		})
	}

	restTests := []struct {
		name   string
		header string
		bodyID string
		want   string
	}{
		{"header only", "rest-h-1", "", "rest-h-1"},
		{"body id over header", "rest-h-2", "rest-body-2", "rest-body-2"},
		{"body id only", "", "rest-body-3", "rest-body-3"},
		{"neither", "", "", ""},
	}
	for _, tt := range restTests {
		t.Run("REST "+tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.header != "" {
				h["X-Request-Id"] = tt.header
			}
			idField := ""
			if tt.bodyID != "" {
				idField = fmt.Sprintf(`"id": %q, `, tt.bodyID)
			}
			r := oipPost(t, m.URL()+"/v2/models/mlp/infer", []byte(`{`+idField+`"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}`), h)
			got := oipDecode(t, r).ID
			if tt.want != "" && got != tt.want {
				t.Errorf("answer id %q, want %q", got, tt.want)
			}
			if got == "" {
				t.Error("answer has no id")
			}
			if hdr := r.Header.Get("X-Request-Id"); hdr != got {
				t.Errorf("X-Request-Id = %q, want the answer's id %q", hdr, got)
			}
			oipStored(t, m, got, 0, false)
		})
	}
}
