// Package inferencepb is the generated Go code of the Open Inference
// Protocol v2 (KServe's V2 inference protocol) over gRPC: the messages and
// the client and server stubs of inference.GRPCInferenceService, generated
// from grpc_predict_v2.proto beside them. The *.pb.go files are generated:
// do not edit them; change the .proto and run `make proto` (`make
// proto-check` checks that they are up to date).
//
// It owns the wire format only. It imports protobuf and gRPC and never a
// package of Understudy's; only the gRPC adapter (pkg/grpcapi), the tests
// and the bench import it, and the transport-free side of the protocol is
// in pkg/oip.
package inferencepb
