package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	fastjson "github.com/segmentio/encoding/json"
	"github.com/understudy-ml/understudy/pkg/serving"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

type predictRequest struct {
	ID     string                     `json:"id"`
	Inputs map[string]json.RawMessage `json:"inputs"`
	Input  json.RawMessage            `json:"input"`
}

// initialBodyBuffer is the most readBody allocates before the bytes arrive.
// Content-Length is only a claim: sizing the buffer from it alone would let
// each slow client hold --max-body of memory for one byte sent.
const initialBodyBuffer = 64 << 10

// readBody reads the whole body, mapping an oversize body to ETOOLARGE and
// one that arrives slower than BodyTimeout to EINVALID.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	max := s.MaxBody
	if max <= 0 {
		max = 16 << 20
	}
	if r.ContentLength > max {
		return nil, understudy.Errorf(understudy.ETOOLARGE, "request body is %d bytes, over the limit of %d bytes (--max-body)", r.ContentLength, max)
	}
	timeout := s.BodyTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if r.ContentLength == 0 {
		// No body (http.NoBody): nothing to wait for. A deadline set now
		// would be the one net/http's watch for the client going away
		// already reads under, and would end it, and the request's
		// context, after the timeout.
		return []byte{}, nil
	}
	// A deadline for the body only, tighter than the server's ReadTimeout.
	// net/http lifts it when a read reaches the body's end, as it starts
	// watching the connection for the client going away, so a long run
	// afterwards is never cut short. After a failed read it stays, so that
	// net/http's attempt to drain the rest of the body before answering
	// fails fast too. Writers that cannot set deadlines (tests' recorders)
	// simply go without.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
	var body []byte
	var err error
	if n := r.ContentLength; n > 0 {
		// net/http's body reader stops at the declared length, checked
		// against max above.
		body, err = readDeclared(r.Body, n)
		if err == nil {
			// Reach the end, if the last read did not report it: that
			// is what lifts the deadline, at no cost, where lifting it
			// here cost as much as setting it.
			var none [0]byte
			_, _ = r.Body.Read(none[:])
		}
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, understudy.Errorf(understudy.ETOOLARGE, "request body is over the limit of %d bytes (--max-body)", max)
		case errors.Is(err, os.ErrDeadlineExceeded):
			got := fmt.Sprintf("%d bytes", len(body))
			if r.ContentLength > 0 {
				got = fmt.Sprintf("%d of %d bytes", len(body), r.ContentLength)
			}
			return nil, understudy.Errorf(understudy.EINVALID, "the request body did not arrive within %v: %s came in time; send the whole body without pauses", timeout, got)
		}
		return nil, understudy.Errorf(understudy.EINVALID, "could not read the request body: %v", err)
	}
	return body, nil
}

// readDeclared reads exactly n bytes, starting with a buffer of at most
// initialBodyBuffer and doubling it, capped at n, as the bytes arrive. On
// error it returns what was read.
func readDeclared(r io.Reader, n int64) ([]byte, error) {
	body := make([]byte, 0, min(n, initialBodyBuffer))
	for int64(len(body)) < n {
		if len(body) == cap(body) {
			grown := make([]byte, len(body), min(2*int64(cap(body)), n))
			copy(grown, body)
			body = grown
		}
		k, err := io.ReadFull(r, body[len(body):cap(body)])
		body = body[:len(body)+k]
		if err != nil {
			return body, err
		}
	}
	return body, nil
}

// maxDepth bounds how deeply a request body may nest arrays and objects.
// The decoder recurses once per level with no limit of its own, and a Go
// stack overflow is fatal, not a panic; tensors need 32 levels at most.
const maxDepth = 64

// checkDepth refuses bodies nested deeper than maxDepth, in one pass that
// skips over strings. It judges nothing else: malformed JSON is left to the
// decoder to report.
func checkDepth(body []byte, want string) error {
	depth := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '"':
			for i++; i < len(body) && body[i] != '"'; i++ {
				if body[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			depth++
			if depth > maxDepth {
				return understudy.Errorf(understudy.EINVALID, "malformed JSON at byte %d: arrays and objects nested deeper than %d levels; want %s", i, maxDepth, want)
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}

// decodeJSON decodes body into v, refusing unknown fields so that typos are
// reported instead of silently ignored. segmentio's decoder is a drop-in for
// encoding/json that scans large numeric bodies several times faster.
func decodeJSON(body []byte, v any, want string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return understudy.Errorf(understudy.EINVALID, "request body is empty; want %s", want)
	}
	if err := checkDepth(body, want); err != nil {
		return err
	}
	// ZeroCopy: strings and raw messages point into body, which is never
	// reused, instead of copying it again.
	rest, err := fastjson.Parse(body, v, fastjson.DisallowUnknownFields|fastjson.ZeroCopy)
	if err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			msg := strings.TrimSuffix(strings.TrimPrefix(se.Error(), "json: "), ": ")
			if se.Offset == 0 {
				// The decoder gives no position for some errors, such as a
				// body that ends inside an array; byte 0 would mislead.
				return understudy.Errorf(understudy.EINVALID, "malformed JSON: %s; want %s", msg, want)
			}
			return understudy.Errorf(understudy.EINVALID, "malformed JSON at byte %d: %s; want %s", se.Offset, msg, want)
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "the body"
			}
			return understudy.Errorf(understudy.EINVALID, "%s must be %s, got JSON %s; want %s", field, te.Type, te.Value, want)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return understudy.Errorf(understudy.EINVALID, "malformed JSON: unexpected end of body; want %s", want)
		}
		return understudy.Errorf(understudy.EINVALID, "malformed JSON: %s; want %s", strings.TrimPrefix(err.Error(), "json: "), want)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return understudy.Errorf(understudy.EINVALID, "malformed JSON: more than one value in the body; want %s", want)
	}
	return nil
}

const predictShape = `{"inputs": {"<input name>": <nested array>}, "id": "<optional>"}`

// decodeInputs turns the request's inputs into tensors checked against sig.
func decodeInputs(req *predictRequest, sig *understudy.Signature) (map[string]*understudy.Tensor, error) {
	// Built only for a message: formatting it costs more than a small
	// model's run.
	expected := func() string { return describeInputs(sig) }
	raw := req.Inputs
	switch {
	case req.Input != nil && raw != nil:
		return nil, understudy.Errorf(understudy.EINVALID, `give either "input" or "inputs", not both`)
	case req.Input != nil:
		if len(sig.Inputs) != 1 {
			return nil, understudy.Errorf(understudy.EINVALID, `"input" works only for models with one input; this model has %d: %s; use {"inputs": {...}}`, len(sig.Inputs), expected())
		}
		// The one input, without a map built to hold it.
		in := sig.Inputs[0]
		t, err := understudy.DecodeTensor(req.Input, in)
		if err != nil {
			return nil, err
		}
		return map[string]*understudy.Tensor{in.Name: t}, nil
	case raw == nil:
		return nil, understudy.Errorf(understudy.EINVALID, `no "inputs" in the request; want %s with inputs %s`, predictShape, expected())
	}
	for name := range raw {
		if _, ok := sig.Input(name); !ok {
			return nil, understudy.Errorf(understudy.EINVALID, "unknown input %q; the model's inputs are %s", name, expected())
		}
	}
	out := make(map[string]*understudy.Tensor, len(sig.Inputs))
	var missing []string
	for _, in := range sig.Inputs {
		v, ok := raw[in.Name]
		if !ok {
			missing = append(missing, strconv.Quote(in.Name))
			continue
		}
		t, err := understudy.DecodeTensor(v, in)
		if err != nil {
			return nil, err
		}
		out[in.Name] = t
	}
	if len(missing) > 0 {
		return nil, understudy.Errorf(understudy.EINVALID, "missing input %s; the model's inputs are %s", strings.Join(missing, ", "), expected())
	}
	return out, nil
}

func describeInputs(sig *understudy.Signature) string {
	parts := make([]string, len(sig.Inputs))
	for i, in := range sig.Inputs {
		parts[i] = fmt.Sprintf("%q (%v %s)", in.Name, in.DType, understudy.FormatShape(in.Dims))
	}
	return strings.Join(parts, ", ")
}

// handlePredict is the router's POST /predict. The outer handler calls
// predict directly for every POST to that path, so this serves only a
// caller of the router itself; the route is there for the router's 405
// and Allow header on other methods.
func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) {
	s.predict(w, r, RequestID(r), s.received(r))
}

// predict serves POST /predict. id is the request's id until the body
// names one, received when the request arrived.
func (s *Server) predict(w http.ResponseWriter, r *http.Request, id string, received time.Time) {
	flight := s.Serving.Begin()
	defer flight.End()
	body, err := s.readBody(w, r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var req predictRequest
	if !scanPredict(body, &req) {
		if err := decodeJSON(body, &req, predictShape); err != nil {
			s.error(w, r, err)
			return
		}
	}
	id, ok := s.bodyID(w, r, req.ID, id, `"id"`)
	if !ok {
		return
	}
	if s.LogPayloads {
		s.Log.Debug().Str("request_id", id).RawJSON("body", body).Msg("predict payload")
	}
	ans, err := s.Serving.Infer(r.Context(), serving.Call{ID: id, Received: received, BodySize: len(body), Flight: flight, Key: headerValue(r.Header, keyHeader),
		Decode: func(sig *understudy.Signature) (map[string]*understudy.Tensor, error) { return decodeInputs(&req, sig) }})
	if err != nil {
		s.inferError(w, r, id, err)
		return
	}
	m, outputs := ans.Model, ans.Outputs
	bp := answerBuffers.Get().(*[]byte)
	defer putAnswerBuffer(bp)
	buf := (*bp)[:0]
	buf = append(buf, `{"id":`...)
	buf = understudy.AppendJSONString(buf, id)
	buf = append(buf, `,"model":{"name":`...)
	buf = understudy.AppendJSONString(buf, m.Name)
	buf = append(buf, `,"version":`...)
	buf = understudy.AppendJSONString(buf, m.Version)
	buf = append(buf, `},"outputs":{`...)
	var names [8]string
	for i, n := range outputNames(&m.Signature, outputs, names[:0]) {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = understudy.AppendJSONString(buf, n)
		buf = append(buf, ':')
		buf = understudy.AppendJSON(buf, outputs[n])
	}
	buf = append(buf, `},"latency_us":`...)
	buf = strconv.AppendInt(buf, ans.Latency.Microseconds(), 10)
	buf = append(buf, "}\n"...)
	// Canonical keys set directly, with a shared value for the fixed one:
	// Header.Set would allocate both on every request.
	h := w.Header()
	h["Content-Type"] = jsonContentType
	if len(buf) > smallAnswer {
		// Past its buffer net/http would send the answer chunked.
		h["Content-Length"] = []string{strconv.Itoa(len(buf))}
	}
	h[modelHeader] = s.modelHeaderValue(m)
	// net/http copies the answer into its own buffer: buf is free again
	// once Write returns.
	_, _ = w.Write(buf)
	*bp = buf
}

// answerBuffers holds the buffers answers are encoded in: 256 bytes, a
// twentieth of what a request on the demo model allocated, for every
// request.
var answerBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func putAnswerBuffer(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		answerBuffers.Put(bp)
	}
}

// smallAnswer is net/http's buffer before it chunks an answer (its
// bufferBeforeChunkingSize): a handler that writes no more than this and
// returns gets a Content-Length computed by net/http without allocating.
const smallAnswer = 2048

// keyHeader routes a request to the canary or not, stably per key, and
// modelHeader says which model answered (name@version).
const (
	keyHeader   = "X-Understudy-Key"
	modelHeader = "X-Understudy-Model"
)

// bodyID returns the request id: the one the body names, checked, else
// given, the one the outer handler gave. It answers the request itself when
// the body's id is refused.
func (s *Server) bodyID(w http.ResponseWriter, r *http.Request, id, given, what string) (string, bool) {
	if id == "" {
		return given, true
	}
	if err := understudy.CheckRequestID(id, what); err != nil {
		s.error(w, r, err)
		return "", false
	}
	// The decoder's strings point into the body (ZeroCopy): a copy, so
	// that the stored row does not keep the whole body alive.
	id = strings.Clone(id)
	w.Header()["X-Request-Id"] = []string{id}
	return id, true
}

// inferError answers a request whose run failed; a client that went away
// gets nothing, since nobody reads the answer.
func (s *Server) inferError(w http.ResponseWriter, r *http.Request, id string, err error) {
	if r.Context().Err() != nil {
		s.Log.Info().Str("request_id", id).Err(err).Msg("client went away during the run")
		return
	}
	s.error(w, r, err)
}

// outputNames lists outputs in the model's order, or sorted by name when
// the runner answered with other names than the signature declares.
func outputNames(sig *understudy.Signature, outputs map[string]*understudy.Tensor, names []string) []string {
	for _, o := range sig.Outputs {
		if _, ok := outputs[o.Name]; ok {
			names = append(names, o.Name)
		}
	}
	if len(names) != len(outputs) {
		names = names[:0]
		for n := range outputs {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	return names
}

// jsonContentType is shared by every response; net/http only reads it.
var jsonContentType = []string{"application/json"}
