package main

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/understudy-ml/understudy/pkg/oip/inferencepb"
)

// Ensure the Open Inference Protocol front ends route by the key too and
// say who answered: model_name and model_version in the body, and
// X-Understudy-Model (REST) or x-understudy-model header metadata (gRPC).
func TestCanaryOIP(t *testing.T) {
	m := startServer(t, demoDir(t), append([]string{"--primary", "iris-v1"}, fastWatch...)...)
	mustConfigure(t, m.URL(), "iris-v2", `{"mode": "canary", "weight": 1}`)
	v2 := findVersion(t, m.URL(), "iris-v2")
	body := []byte(`{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]}`)
	r := oipPost(t, m.URL()+"/v2/models/iris-v1/infer", body, map[string]string{"X-Understudy-Key": "user-7"})
	var v struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
	}
	json.Unmarshal(r.Body, &v)
	if r.Status != 200 || v.ModelName != "iris-v2" || v.ModelVersion != v2 || r.Header.Get("X-Understudy-Model") != "iris-v2@"+v2 {
		t.Errorf("REST: %d %s, header %q", r.Status, r.Body, r.Header.Get("X-Understudy-Model"))
	}
	// A pinned version is the client asking for that exact model: no canary.
	r = oipPost(t, m.URL()+"/v2/models/iris-v1/versions/"+findVersion(t, m.URL(), "iris-v1")+"/infer", body, nil)
	if !strings.HasPrefix(r.Header.Get("X-Understudy-Model"), "iris-v1@") {
		t.Errorf("pinned version answered by %q", r.Header.Get("X-Understudy-Model"))
	}

	c := oipClient(t, m)
	ctx := metadata.AppendToOutgoingContext(oipCtx(t), "x-understudy-key", "user-7")
	in := &pb.ModelInferRequest_InferInputTensor{Name: "input", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &pb.InferTensorContents{Fp32Contents: []float32{5.1, 3.5, 1.4, 0.2}}}
	var hdr metadata.MD
	resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "iris-v1", Inputs: []*pb.ModelInferRequest_InferInputTensor{in}}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelName != "iris-v2" || resp.ModelVersion != v2 || strings.Join(hdr.Get("x-understudy-model"), ",") != "iris-v2@"+v2 {
		t.Errorf("gRPC: %s@%s, header %v", resp.ModelName, resp.ModelVersion, hdr)
	}
}
