package main

import (
	"bytes"
	"context"
	binenc "encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/understudy-ml/understudy/pkg/oip/inferencepb"
	"github.com/understudy-ml/understudy/pkg/onnxbuild"
)

// This file tests the Open Inference Protocol v2 end to end: REST on the
// HTTP listener and gRPC on --grpc-addr, against real ONNX Runtime sessions
// and a real store. Expected outputs are computed in the test (Dense.Predict,
// encoding/binary), never by the server's own encoders.

// oipDial connects a gRPC client to m, closed when the test ends.
func oipDial(tb testing.TB, m *Main) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// oipClient is the inference service client of m.
func oipClient(tb testing.TB, m *Main) pb.GRPCInferenceServiceClient {
	tb.Helper()
	return pb.NewGRPCInferenceServiceClient(oipDial(tb, m))
}

// oipCtx bounds one test's gRPC calls.
func oipCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// oipPost posts body with the given headers; Content-Type is JSON unless
// the headers say otherwise.
func oipPost(tb testing.TB, url string, body []byte, header map[string]string) response {
	tb.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		tb.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b.Bytes()}
}

// oipBinary returns a body of JSON header js followed by the binary data,
// and the header that says where the JSON ends.
func oipBinary(js string, bin ...[]byte) ([]byte, map[string]string) {
	body := []byte(js)
	for _, b := range bin {
		body = append(body, b...)
	}
	return body, map[string]string{"Inference-Header-Content-Length": strconv.Itoa(len(js)), "Content-Type": "application/octet-stream"}
}

type oipOutput struct {
	Name       string          `json:"name"`
	Datatype   string          `json:"datatype"`
	Shape      []int64         `json:"shape"`
	Parameters map[string]any  `json:"parameters"`
	Data       json.RawMessage `json:"data"`
}

type oipAnswer struct {
	ModelName    string      `json:"model_name"`
	ModelVersion string      `json:"model_version"`
	ID           string      `json:"id"`
	Outputs      []oipOutput `json:"outputs"`
	// Binary holds the binary data of the outputs sent that way, by name.
	Binary map[string][]byte `json:"-"`
}

// oipDecode reads a successful REST infer response, splitting off the
// binary data as Inference-Header-Content-Length and each output's
// binary_data_size say.
func oipDecode(tb testing.TB, r response) oipAnswer {
	tb.Helper()
	if r.Status != 200 {
		tb.Fatalf("status = %d, want 200: %s", r.Status, r.Body)
	}
	js, bin := r.Body, []byte(nil)
	if v := r.Header.Get("Inference-Header-Content-Length"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n > len(r.Body) {
			tb.Fatalf("Inference-Header-Content-Length = %q for a body of %d bytes", v, len(r.Body))
		}
		js, bin = r.Body[:n], r.Body[n:]
	}
	var a oipAnswer
	if err := json.Unmarshal(js, &a); err != nil {
		tb.Fatalf("response is not JSON: %v: %s", err, js)
	}
	a.Binary = map[string][]byte{}
	for _, o := range a.Outputs {
		size, ok := o.Parameters["binary_data_size"].(float64)
		if !ok {
			continue
		}
		if int(size) > len(bin) {
			tb.Fatalf("output %q: binary_data_size %v, but %d bytes are left", o.Name, size, len(bin))
		}
		a.Binary[o.Name], bin = bin[:int(size)], bin[int(size):]
	}
	if len(bin) > 0 {
		tb.Fatalf("%d bytes of binary data are claimed by no output", len(bin))
	}
	return a
}

func (a oipAnswer) names() []string {
	var out []string
	for _, o := range a.Outputs {
		out = append(out, o.Name)
	}
	return out
}

func (a oipAnswer) output(tb testing.TB, name string) oipOutput {
	tb.Helper()
	for _, o := range a.Outputs {
		if o.Name == name {
			return o
		}
	}
	tb.Fatalf("no output %q in %v", name, a.names())
	return oipOutput{}
}

// oipLE is v in the protocol's raw form, little-endian, by encoding/binary.
func oipLE(v any) []byte {
	b, err := binenc.Append(nil, binenc.LittleEndian, v)
	if err != nil {
		panic(err)
	}
	return b
}

// oipRawStrings is BYTES elements in the raw form: each a 4-byte
// little-endian length and its bytes.
func oipRawStrings(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = binenc.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func oipFloats32(tb testing.TB, raw []byte) []float32 {
	tb.Helper()
	if len(raw)%4 != 0 {
		tb.Fatalf("%d bytes are not whole float32s", len(raw))
	}
	out := make([]float32, len(raw)/4)
	if err := binenc.Read(bytes.NewReader(raw), binenc.LittleEndian, out); err != nil {
		tb.Fatal(err)
	}
	return out
}

func oipInt64s(tb testing.TB, raw []byte) []int64 {
	tb.Helper()
	if len(raw)%8 != 0 {
		tb.Fatalf("%d bytes are not whole int64s", len(raw))
	}
	out := make([]int64, len(raw)/8)
	if err := binenc.Read(bytes.NewReader(raw), binenc.LittleEndian, out); err != nil {
		tb.Fatal(err)
	}
	return out
}

// oipHalf decodes IEEE 754 half-precision bits, written out here so that the
// test does not share the server's conversion.
func oipHalf(bits uint16) float64 {
	sign := 1.0
	if bits&0x8000 != 0 {
		sign = -1
	}
	exp, frac := int(bits>>10&0x1f), float64(bits&0x3ff)
	switch exp {
	case 0:
		return sign * frac * math.Pow(2, -24)
	case 31:
		if frac != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	}
	return sign * (1024 + frac) * math.Pow(2, float64(exp-25))
}

// oipHalfBits finds the half-precision bits of f, which must be exactly
// representable, by searching every pattern.
func oipHalfBits(tb testing.TB, f float64) uint16 {
	tb.Helper()
	for b := range 1 << 16 {
		h := oipHalf(uint16(b))
		if h == f && math.Signbit(h) == math.Signbit(f) {
			return uint16(b)
		}
	}
	tb.Fatalf("%v is not a float16 value", f)
	return 0
}

func oipNarrow[T uint8 | uint16 | uint32 | uint64 | int8 | int16 | int32 | int64, S int64 | uint64](v []S) []T {
	out := make([]T, len(v))
	for i, x := range v {
		out[i] = T(x)
	}
	return out
}

// oipJSONAsRaw turns the JSON data of an output of datatype into the raw
// form, by Go's JSON decoding and encoding/binary, to compare it with the
// bytes a case expects.
func oipJSONAsRaw(tb testing.TB, datatype string, data json.RawMessage) []byte {
	tb.Helper()
	var err error
	var raw []byte
	switch datatype {
	case "BOOL":
		var v []bool
		err = json.Unmarshal(data, &v)
		raw = oipLE(v)
	case "UINT8", "UINT16", "UINT32", "UINT64":
		var v []uint64
		err = json.Unmarshal(data, &v)
		raw = map[string]func() []byte{
			"UINT8":  func() []byte { return oipLE(oipNarrow[uint8](v)) },
			"UINT16": func() []byte { return oipLE(oipNarrow[uint16](v)) },
			"UINT32": func() []byte { return oipLE(oipNarrow[uint32](v)) },
			"UINT64": func() []byte { return oipLE(v) },
		}[datatype]()
	case "INT8", "INT16", "INT32", "INT64":
		var v []int64
		err = json.Unmarshal(data, &v)
		raw = map[string]func() []byte{
			"INT8":  func() []byte { return oipLE(oipNarrow[int8](v)) },
			"INT16": func() []byte { return oipLE(oipNarrow[int16](v)) },
			"INT32": func() []byte { return oipLE(oipNarrow[int32](v)) },
			"INT64": func() []byte { return oipLE(v) },
		}[datatype]()
	case "FP16":
		// Written as the shortest text that reads back as the same float32.
		var v []float32
		err = json.Unmarshal(data, &v)
		bits := make([]uint16, len(v))
		for i, f := range v {
			bits[i] = oipHalfBits(tb, float64(f))
		}
		raw = oipLE(bits)
	case "FP32":
		var v []float32
		err = json.Unmarshal(data, &v)
		raw = oipLE(v)
	case "FP64":
		var v []float64
		err = json.Unmarshal(data, &v)
		raw = oipLE(v)
	case "BYTES":
		var v []string
		err = json.Unmarshal(data, &v)
		raw = oipRawStrings(v...)
	default:
		tb.Fatalf("unknown datatype %s", datatype)
	}
	if err != nil {
		tb.Fatalf("%s data %s: %v", datatype, data, err)
	}
	return raw
}

// oipStatus returns err's gRPC status, failing the test on an error that
// is not one.
func oipStatus(tb testing.TB, err error) *status.Status {
	tb.Helper()
	st, ok := status.FromError(err)
	if !ok {
		tb.Fatalf("error %v is not a gRPC status", err)
	}
	return st
}

// oipStored polls GET /api/requests/{id} until the request is stored with
// at least shadows shadow results and, if label, a label.
func oipStored(tb testing.TB, m *Main, id string, shadows int, label bool) oipDetail {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := testRequest(tb, "GET", m.URL()+"/api/requests/"+url.PathEscape(id), nil)
		var d oipDetail
		if r.Status == 200 {
			if err := json.Unmarshal(r.Body, &d); err != nil {
				tb.Fatalf("request %s: %v: %s", id, err, r.Body)
			}
			if !d.PredictionMissing && len(d.Shadows) >= shadows && (!label || d.Label != nil) {
				return d
			}
		} else if r.Status != 404 {
			tb.Fatalf("GET /api/requests/%s: %d %s", id, r.Status, r.Body)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("request %q not stored with %d shadow results (label %v) in time: %d %s", id, shadows, label, r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// oipDetail is the part of GET /api/requests/{id} these tests read.
type oipDetail struct {
	RequestID         string   `json:"request_id"`
	PredictionMissing bool     `json:"prediction_missing"`
	Model             string   `json:"model"`
	Version           string   `json:"version"`
	Status            string   `json:"status"`
	Inputs            string   `json:"inputs"`
	Outputs           string   `json:"outputs"`
	Label             *float64 `json:"label"`
	Shadows           []struct {
		Shadow       string `json:"shadow"`
		PrimaryModel string `json:"primary_model"`
		Status       string `json:"status"`
		Comparison   struct {
			Agreement    *float64 `json:"agreement"`
			PrimaryClass *int64   `json:"primary_class"`
			ShadowClass  *int64   `json:"shadow_class"`
			MaxAbsDiff   *float64 `json:"max_abs_diff"`
		} `json:"comparison"`
	} `json:"shadows"`
}

func oipVersion(tb testing.TB, m *onnxbuild.Model) string {
	tb.Helper()
	data, err := m.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return sha12(data)
}

// oipTensors formats tensor metadata as "name DATATYPE [dims]" so that REST
// and gRPC answers (where an empty shape may be nil) compare alike.
func oipTensors[T interface {
	GetName() string
	GetDatatype() string
	GetShape() []int64
}](ts []T) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = fmt.Sprintf("%s %s %v", t.GetName(), t.GetDatatype(), t.GetShape())
	}
	return out
}

type oipRESTTensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (t oipRESTTensor) GetName() string     { return t.Name }
func (t oipRESTTensor) GetDatatype() string { return t.Datatype }
func (t oipRESTTensor) GetShape() []int64   { return t.Shape }

type oipModelMetadata struct {
	Name       string          `json:"name"`
	Versions   []string        `json:"versions"`
	Platform   string          `json:"platform"`
	Inputs     []oipRESTTensor `json:"inputs"`
	Outputs    []oipRESTTensor `json:"outputs"`
	Parameters map[string]any  `json:"parameters"`
}
