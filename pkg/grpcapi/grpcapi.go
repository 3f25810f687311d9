// Package grpcapi serves the Open Inference Protocol v2 over gRPC: KServe's
// inference.GRPCInferenceService, with gRPC health and server reflection so
// that grpcurl and Kubernetes probes work. Requests run through the same
// serving path as HTTP (package serving), so they are mirrored to shadows
// and stored alike. It imports the domain, serving, oip and the generated
// stubs; never another adapter.
package grpcapi

import (
	"context"
	"net"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/understudy-ml/understudy/pkg/oip"
	pb "github.com/understudy-ml/understudy/pkg/oip/inferencepb"
	"github.com/understudy-ml/understudy/pkg/serving"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Server answers GRPCInferenceService.
type Server struct {
	pb.UnimplementedGRPCInferenceServiceServer

	Models  understudy.Models
	Serving *serving.Service
	// Ready reports whether a primary is loaded and warm.
	Ready   func() bool
	Log     zerolog.Logger
	Version string
	// MaxMessage caps a request message, in bytes, as --max-body caps an
	// HTTP body.
	MaxMessage int

	grpc   *grpc.Server
	health *health.Server
	stop   chan struct{}
	done   chan struct{}
}

// idKey is the metadata key that carries a request id, as the
// X-Request-Id header does over HTTP.
const idKey = "x-request-id"

// keyKey routes a call to the canary or not, stably per key, and modelKey
// (response header metadata) says which model answered, as name@version.
const (
	keyKey   = "x-understudy-key"
	modelKey = "x-understudy-model"
)

func routingKey(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(keyKey); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// serviceName is the service health reports on besides the server as a
// whole ("").
const serviceName = "inference.GRPCInferenceService"

// Serve serves on ln until Stop. It returns once serving has started.
func (s *Server) Serve(ln net.Listener) {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.recoverer, s.accessLog),
		// Calls run on a fixed set of goroutines instead of one new one
		// each: a call grows its stack through the ONNX Runtime's cgo call,
		// and a new goroutine pays for copying it every time (7% of the
		// CPU under load, in a profile of the demo model).
		grpc.NumStreamWorkers(uint32(runtime.NumCPU())),
	}
	if s.MaxMessage > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(s.MaxMessage))
	}
	s.grpc = grpc.NewServer(opts...)
	pb.RegisterGRPCInferenceServiceServer(s.grpc, s)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	s.setHealth()
	go s.watchHealth()
	go func() {
		if err := s.grpc.Serve(ln); err != nil {
			s.Log.Error().Err(err).Msg("grpc server stopped")
		}
	}()
}

// watchHealth keeps the health service in step with readiness: a primary
// can come and go while the server runs.
func (s *Server) watchHealth() {
	defer close(s.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.setHealth()
		}
	}
}

func (s *Server) setHealth() {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if s.Ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(serviceName, st)
}

// Stop lets calls in progress finish until ctx is done, then ends the rest.
func (s *Server) Stop(ctx context.Context) {
	if s.grpc == nil {
		return
	}
	close(s.stop)
	<-s.done
	s.health.Shutdown()
	// Unary calls end by themselves; a health Watch stream, which
	// Envoy and gRPC clients keep open, never does and would hold
	// GracefulStop until ctx's deadline, eating the time the shadows and
	// the store need to drain. So the wait is short.
	wait, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-wait.Done():
		s.grpc.Stop()
		<-stopped
	}
}

// toStatus maps an error to a gRPC status through the one table of codes;
// internal errors keep their text in the log only.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := understudy.ErrorCode(err)
	if code == understudy.EINTERNAL {
		s.Log.Error().Str("request_id", requestID(ctx)).Str("method", method).Err(err).Msg("internal error")
	}
	return status.Error(understudy.StatusOf(err).GRPC, understudy.ErrorMessage(err))
}

func (s *Server) recoverer(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.Log.Error().Str("method", info.FullMethod).Interface("panic", p).Bytes("stack", debug.Stack()).Msg("handler panicked")
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return next(ctx, req)
}

type idCtxKey struct{}

// requestID is the id the access log gave the call.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(idCtxKey{}).(*string)
	if id == nil {
		return ""
	}
	return *id
}

// accessLog gives each call a request id (the client's x-request-id when
// it is usable), logs the call as the HTTP side logs requests, and maps
// errors to statuses.
func (s *Server) accessLog(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	start := time.Now()
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(idKey); len(v) > 0 && v[0] != "" && understudy.CheckRequestID(v[0], "") == nil {
			id = v[0]
		}
	}
	if id == "" {
		id = serving.NewID()
	}
	ctx = context.WithValue(ctx, idCtxKey{}, &id)
	resp, err := next(ctx, req)
	if err != nil {
		err = s.toStatus(ctx, info.FullMethod, err)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(idKey, id))
	code := status.Code(err)
	ev := s.Log.Info()
	if code == codes.Internal || code == codes.Unknown {
		ev = s.Log.Error()
	}
	ev.Str("request_id", id).Str("method", info.FullMethod).Str("code", code.String()).
		Dur("latency", time.Since(start)).Msg("grpc request")
	return resp, err
}

// ServerLive implements the protocol: the process answers, so it is live.
func (s *Server) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

// ServerReady is true once a primary is loaded and warm.
func (s *Server) ServerReady(context.Context, *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: s.Ready()}, nil
}

// ModelReady is true for the primary only: a shadow is loaded but does not
// answer requests. Unknown models are NotFound.
func (s *Server) ModelReady(_ context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	ready, err := oip.Ready(s.Models.List(), req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	return &pb.ModelReadyResponse{Ready: ready}, nil
}

// ServerMetadata names the server and its protocol extensions.
func (s *Server) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	return &pb.ServerMetadataResponse{Name: oip.ServerName, Version: s.Version, Extensions: oip.Extensions}, nil
}

// ModelMetadata describes a loaded model's versions, inputs and outputs.
func (s *Server) ModelMetadata(_ context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	md, err := oip.Describe(s.Models.List(), req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	tensors := func(ts []oip.TensorMetadata) []*pb.ModelMetadataResponse_TensorMetadata {
		out := make([]*pb.ModelMetadataResponse_TensorMetadata, len(ts))
		for i, t := range ts {
			out[i] = &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape}
		}
		return out
	}
	return &pb.ModelMetadataResponse{Name: md.Name, Versions: md.Versions, Platform: md.Platform,
		Inputs: tensors(md.Inputs), Outputs: tensors(md.Outputs)}, nil
}

// ModelInfer runs the primary, mirrored and stored as /predict is. The
// answer comes in raw_output_contents when the request came raw (Triton's
// clients read only that) or when an output has no typed array (FP16),
// else in typed contents.
func (s *Server) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	flight := s.Serving.Begin()
	defer flight.End()
	received := time.Now()
	id := req.Id
	if id != "" {
		if err := understudy.CheckRequestID(id, `"id"`); err != nil {
			return nil, err
		}
		if p, ok := ctx.Value(idCtxKey{}).(*string); ok {
			*p = id
		}
	} else {
		id = requestID(ctx)
	}
	ins, err := inputs(req)
	if err != nil {
		return nil, err
	}
	requested := make([]string, len(req.Outputs))
	for i, o := range req.Outputs {
		if o.Name == "" {
			return nil, understudy.Errorf(understudy.EINVALID, "outputs[%d] has no name", i)
		}
		for k := range o.Parameters {
			if err := oip.OutputParameter(o.Name, k); err != nil {
				return nil, err
			}
		}
		requested[i] = o.Name
	}
	var names []string
	ans, err := s.Serving.Infer(ctx, serving.Call{ID: id, Model: req.ModelName, Version: req.ModelVersion, Received: received,
		BodySize: proto.Size(req), Flight: flight, Key: routingKey(ctx),
		Decode: func(sig *understudy.Signature) (map[string]*understudy.Tensor, error) {
			var err error
			if names, err = oip.OutputNames(requested, sig); err != nil {
				return nil, err
			}
			return oip.DecodeInputs(ins, sig)
		}})
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, err
	}
	names = oip.Present(names, ans.Outputs)
	_ = grpc.SetHeader(ctx, metadata.Pairs(modelKey, ans.Model.Name+"@"+ans.Model.Version))
	resp := &pb.ModelInferResponse{ModelName: ans.Model.Name, ModelVersion: ans.Model.Version, Id: id,
		Outputs: make([]*pb.ModelInferResponse_InferOutputTensor, len(names))}
	raw := len(req.RawInputContents) > 0
	for _, n := range names {
		raw = raw || ans.Outputs[n].DType == understudy.Float16
	}
	for i, n := range names {
		t := ans.Outputs[n]
		o := &pb.ModelInferResponse_InferOutputTensor{Name: n, Datatype: oip.Datatype(t.DType), Shape: t.Shape}
		if raw {
			resp.RawOutputContents = append(resp.RawOutputContents, understudy.AppendRaw(make([]byte, 0, understudy.RawSize(t)), t))
		} else {
			o.Contents = contents(t)
		}
		resp.Outputs[i] = o
	}
	return resp, nil
}
