package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	pb "github.com/understudy-ml/understudy/pkg/oip/inferencepb"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// Ensure server and model metadata, liveness and readiness answer alike
// over REST and gRPC: the MultiIO primary's tensors with -1 for dynamic
// dimensions, ready only for the primary, NotFound for unknown names and
// versions, and that gRPC health and reflection serve the inference service.
func TestOIPMetadataAndHealth(t *testing.T) {
	dir := t.TempDir()
	writeModel(t, dir, "multi", onnxbuild.MultiIO(), time.Now().Add(-time.Hour))
	writeModel(t, dir, "multi2", onnxbuild.MultiIO(), time.Time{})
	m := startServer(t, dir)
	conn := oipDial(t, m)
	c := pb.NewGRPCInferenceServiceClient(conn)
	ctx := oipCtx(t)
	version := oipVersion(t, onnxbuild.MultiIO())

	t.Run("server", func(t *testing.T) {
		r := testRequest(t, "GET", m.URL()+"/v2", nil)
		var md struct {
			Name       string   `json:"name"`
			Version    string   `json:"version"`
			Extensions []string `json:"extensions"`
		}
		if err := json.Unmarshal(r.Body, &md); r.Status != 200 || err != nil {
			t.Fatalf("GET /v2: %d %s", r.Status, r.Body)
		}
		if md.Name != "understudy" || md.Version == "" || !slices.Contains(md.Extensions, "binary_tensor_data") {
			t.Errorf("GET /v2 = %+v, want name understudy, a version and the binary_tensor_data extension", md)
		}
		for path, want := range map[string]string{"/v2/health/live": "live", "/v2/health/ready": "ready"} {
			r := testRequest(t, "GET", m.URL()+path, nil)
			if got := r.json(t)[want]; r.Status != 200 || got != true {
				t.Errorf("GET %s = %d %s, want 200 with %q: true", path, r.Status, r.Body, want)
			}
		}

		var hdr metadata.MD
		gmd, err := c.ServerMetadata(ctx, &pb.ServerMetadataRequest{}, grpc.Header(&hdr))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := gmd.Name+" "+gmd.Version+" "+strings.Join(gmd.Extensions, ","), md.Name+" "+md.Version+" "+strings.Join(md.Extensions, ","); got != want {
			t.Errorf("ServerMetadata = %q, want %q as over REST", got, want)
		}
		if len(hdr.Get("x-request-id")) != 1 || hdr.Get("x-request-id")[0] == "" {
			t.Errorf("ServerMetadata header metadata %v, want an x-request-id", hdr)
		}
		if live, err := c.ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil || !live.Live {
			t.Errorf("ServerLive = %v, %v; want live", live, err)
		}
		if ready, err := c.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || !ready.Ready {
			t.Errorf("ServerReady = %v, %v; want ready", ready, err)
		}
	})

	t.Run("model metadata", func(t *testing.T) {
		wantIn := []string{"a FP32 [-1 3]", "b INT64 [-1 2]"}
		wantOut := []string{"sum FP32 [-1 3]", "b_doubled INT64 [-1 2]", "total FP32 []"}
		for _, tt := range []struct{ path, name, version, role string }{
			{"/v2/models/multi", "multi", "", "primary"},
			{"/v2/models/multi/versions/" + version, "multi", version, "primary"},
			{"/v2/models/multi2", "multi2", "", "shadow"},
		} {
			r := testRequest(t, "GET", m.URL()+tt.path, nil)
			var md oipModelMetadata
			if err := json.Unmarshal(r.Body, &md); r.Status != 200 || err != nil {
				t.Fatalf("GET %s: %d %s", tt.path, r.Status, r.Body)
			}
			got := fmt.Sprint(md.Name, md.Versions, md.Platform, oipTensors(md.Inputs), oipTensors(md.Outputs), md.Parameters["role"])
			want := fmt.Sprint(tt.name, []string{version}, "onnxruntime_onnx", wantIn, wantOut, tt.role)
			if got != want {
				t.Errorf("GET %s = %s, want %s", tt.path, got, want)
			}
			gmd, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: tt.name, Version: tt.version})
			if err != nil {
				t.Fatalf("ModelMetadata(%s, %q): %v", tt.name, tt.version, err)
			}
			if got := fmt.Sprint(gmd.Name, gmd.Versions, gmd.Platform, oipTensors(gmd.Inputs), oipTensors(gmd.Outputs), tt.role); got != want {
				t.Errorf("ModelMetadata(%s, %q) = %s, want %s", tt.name, tt.version, got, want)
			}
		}
	})

	t.Run("model ready", func(t *testing.T) {
		tests := []struct {
			name, version string
			status        int
			code          codes.Code
			ready         bool
		}{
			{"multi", "", 200, codes.OK, true},
			{"multi", version, 200, codes.OK, true},
			{"multi2", "", 503, codes.OK, false},
			{"nope", "", 404, codes.NotFound, false},
			{"multi", "nope", 404, codes.NotFound, false},
		}
		for _, tt := range tests {
			t.Run(tt.name+"@"+tt.version, func(t *testing.T) {
				path := "/v2/models/" + tt.name
				if tt.version != "" {
					path += "/versions/" + tt.version
				}
				r := testRequest(t, "GET", m.URL()+path+"/ready", nil)
				body := r.json(t)
				if r.Status != tt.status {
					t.Errorf("GET %s/ready = %d %s, want %d", path, r.Status, r.Body, tt.status)
				}
				if tt.status == 200 && (body["name"] != tt.name || body["ready"] != true) {
					t.Errorf("GET %s/ready = %s, want {name: %s, ready: true}", path, r.Body, tt.name)
				}
				if msg, _ := body["error"].(string); tt.status != 200 && msg == "" {
					t.Errorf("GET %s/ready = %s, want a JSON error", path, r.Body)
				}
				got, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: tt.name, Version: tt.version})
				if code := status.Code(err); code != tt.code {
					t.Fatalf("ModelReady: %v, want code %v", err, tt.code)
				}
				if err == nil && got.Ready != tt.ready {
					t.Errorf("ModelReady = %v, want %v", got.Ready, tt.ready)
				}
			})
		}
	})

	t.Run("unknown model metadata", func(t *testing.T) {
		for _, path := range []string{"/v2/models/nope", "/v2/models/multi/versions/nope"} {
			r := testRequest(t, "GET", m.URL()+path, nil)
			if msg, _ := r.json(t)["error"].(string); r.Status != 404 || !strings.Contains(msg, "nope") {
				t.Errorf("GET %s = %d %s, want 404 naming nope", path, r.Status, r.Body)
			}
		}
		for _, req := range []*pb.ModelMetadataRequest{{Name: "nope"}, {Name: "multi", Version: "nope"}} {
			_, err := c.ModelMetadata(ctx, req)
			if st := oipStatus(t, err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "nope") {
				t.Errorf("ModelMetadata(%v) = %v, want NotFound naming nope", req, err)
			}
		}
	})

	t.Run("grpc health", func(t *testing.T) {
		h := healthpb.NewHealthClient(conn)
		for _, svc := range []string{"", "inference.GRPCInferenceService"} {
			got, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || got.Status != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Check(%q) = %v, %v; want SERVING", svc, got, err)
			}
		}
	})

	t.Run("reflection", func(t *testing.T) {
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.CloseSend()
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		for _, want := range []string{"inference.GRPCInferenceService", "grpc.health.v1.Health"} {
			if !slices.Contains(names, want) {
				t.Errorf("reflection lists %v, want %s among them", names, want)
			}
		}
		// grpcurl needs the service's file descriptor, not just its name.
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "inference.GRPCInferenceService"}}); err != nil {
			t.Fatal(err)
		}
		if resp, err = stream.Recv(); err != nil {
			t.Fatal(err)
		}
		if fds := resp.GetFileDescriptorResponse().GetFileDescriptorProto(); len(fds) == 0 {
			t.Errorf("no file descriptor for inference.GRPCInferenceService: %v", resp)
		}
	})
}

// Ensure that with no primary loaded the server stays live but is not
// ready over REST, gRPC and gRPC health, and inference is Unavailable.
func TestOIPNotReady(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.onnx"), []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startServer(t, dir)
	c := oipClient(t, m)
	ctx := oipCtx(t)
	if r := testRequest(t, "GET", m.URL()+"/v2/health/live", nil); r.Status != 200 {
		t.Errorf("live = %d %s, want 200", r.Status, r.Body)
	}
	if r := testRequest(t, "GET", m.URL()+"/v2/health/ready", nil); r.Status != 503 || r.json(t)["error"] == nil {
		t.Errorf("ready = %d %s, want a 503 JSON error", r.Status, r.Body)
	}
	if got, err := c.ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil || !got.Live {
		t.Errorf("ServerLive = %v, %v; want live", got, err)
	}
	if got, err := c.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || got.Ready {
		t.Errorf("ServerReady = %v, %v; want not ready", got, err)
	}
	h, err := healthpb.NewHealthClient(oipDial(t, m)).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health = %v, %v; want NOT_SERVING", h, err)
	}
	_, err = c.ModelInfer(ctx, &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{1}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1}}}}})
	if st := oipStatus(t, err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "no primary") {
		t.Errorf("ModelInfer = %v, want Unavailable saying there is no primary", err)
	}
}
