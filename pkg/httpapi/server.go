// Package httpapi serves Understudy over HTTP with chi: prediction, model
// listing, health, admin and the report. It knows the domain types and the
// report's view model only.
//
// It depends on the domain (pkg/understudy), pkg/serving, pkg/oip,
// pkg/report and the store contract (pkg/store), which it reaches through
// the report. Models come in through understudy.Models, so it must not
// import pkg/registry, pkg/onnx or a store adapter (pkg/sqlite,
// pkg/postgres).
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/serving"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// Server holds the handlers' dependencies.
type Server struct {
	Models understudy.Models
	Log    zerolog.Logger
	// MaxBody caps request bodies, in bytes.
	MaxBody int64
	// BodyTimeout bounds how long a client may take to send a request
	// body, so that slow clients cannot hold connections and buffers
	// open; 0 means 30s.
	BodyTimeout time.Duration
	// LogPayloads adds request bodies to debug logs; off by default because
	// inputs may be personal data.
	LogPayloads bool
	// Ready reports whether a primary is loaded and warm.
	Ready func() bool
	// Degraded lists what is wrong while the server still serves: a store
	// that cannot write, a replica that cannot follow the shared
	// deployment. /readyz and /models show it; /readyz stays 200, since
	// taking the replica out of a load balancer would not help.
	Degraded func() []string
	// Serving runs inference requests for every route that takes them.
	Serving *serving.Service
	// Labels stores ground truth sent to POST /feedback.
	Labels func(ctx context.Context, labels []understudy.Label) (replaced []understudy.Label, err error)
	// Admin promotes, rolls back and configures shadows; nil disables it.
	Admin Admin
	// AdminToken guards the admin endpoints; empty turns them off (403).
	AdminToken string
	// Events lists lifecycle events, newest first.
	Events func(ctx context.Context, model string, limit int) ([]understudy.Event, error)
	// Report computes the comparison report for GET /report and
	// GET /api/report; nil answers 503.
	Report func(ctx context.Context, q report.Query) (*report.Report, error)
	// Pairs lists stored primary/shadow pairs for GET /api/pairs.
	Pairs func(ctx context.Context, f report.PairFilter) ([]report.Pair, error)
	// Request returns everything stored about one request, or an
	// ENOTFOUND error, for GET /report/requests/{id} and /api/requests/{id}.
	Request func(ctx context.Context, id string) (*report.RequestDetail, error)
	// ReportToken guards the report pages and /api/*; empty leaves them
	// public. See reportCookie for how browsers present it.
	ReportToken string
	// Now is the clock, replaceable in tests.
	Now func() time.Time

	// Extra mounts more routes (metrics) without this package knowing
	// them.
	Extra func(r chi.Router)

	realClock bool // Now is time.Now
	// answered is the X-Understudy-Model value of the last model that
	// answered, kept so that each answer does not build it again.
	answered atomic.Pointer[modelValue]
}

// modelValue is a model's X-Understudy-Model header value, name@version.
type modelValue struct {
	m   *understudy.ServingModel
	hdr []string
}

// modelHeaderValue returns m's X-Understudy-Model value, shared between
// answers: net/http only reads header values.
func (s *Server) modelHeaderValue(m *understudy.ServingModel) []string {
	if v := s.answered.Load(); v != nil && v.m == m {
		return v.hdr
	}
	v := &modelValue{m: m, hdr: []string{m.Name + "@" + m.Version}}
	s.answered.Store(v)
	return v.hdr
}

// Handler returns the router with all middleware and routes.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
		s.realClock = true
	}
	if s.Serving == nil {
		s.Serving = &serving.Service{Models: s.Models}
	}
	r := chi.NewRouter()
	r.Use(s.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.error(w, r, understudy.Errorf(understudy.ENOTFOUND, "no route for %s %s; see GET /report, GET /models, POST /predict, GET /healthz, GET /readyz", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		allowed := strings.Join(allowedMethods(r, req), ", ")
		w.Header().Set("Allow", allowed)
		writeJSONStatus(w, http.StatusMethodNotAllowed, map[string]any{"error": "method " + req.Method + " is not allowed on " + req.URL.Path + "; allowed: " + allowed, "code": "method_not_allowed", "request_id": RequestID(req)})
	})
	r.Post("/predict", s.handlePredict)
	s.oipRoutes(r)
	r.Post("/feedback", s.handleFeedback)
	r.Get("/models", s.handleModels)
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"status": "alive"})
	})
	r.Get("/readyz", s.handleReady)
	r.Get("/events", s.handleEvents)
	if s.Admin != nil {
		s.adminRoutes(r)
	}
	s.reportRoutes(r)
	if s.Extra != nil {
		s.Extra(r)
	}
	return s.outer(r)
}

// allMethods are the methods allowedMethods tries, in the order the Allow
// header lists them.
var allMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// allowedMethods lists the methods routes serves on req's path. chi keeps
// what it learned while routing to itself, so the path is matched again.
func allowedMethods(routes chi.Routes, req *http.Request) []string {
	path := req.URL.RawPath
	if path == "" {
		path = req.URL.Path
	}
	var out []string
	for _, m := range allMethods {
		if routes.Match(chi.NewRouteContext(), m, path) {
			out = append(out, m)
		}
	}
	return out
}

type ctxKey int

const requestIDKey ctxKey = 0

// RequestID returns the id given to this request: the client's
// X-Request-Id, or a generated UUIDv7.
func RequestID(r *http.Request) string {
	if c, ok := r.Context().(*requestContext); ok {
		// Through Value the string would be boxed again on every call.
		return c.id
	}
	id, _ := r.Context().Value(requestIDKey).(string)
	return id
}

// routed is what the outer handler keeps for a request that goes through
// the router, in one allocation: the request id and chi's route context,
// both reached through the request's context, and the writer that records
// the status for the access log. Before, the request id middleware and chi
// each copied the http.Request to add a context value, and chi's response
// writer wrapper took four allocations of its own. POST /predict, which
// skips the router, needs only the writer.
type routed struct {
	ctx  requestContext
	w    statusWriter
	rctx chi.Context
}

// requestContext carries the request id and chi's route context over the
// server's context, so that one WithContext serves both. chi finds its
// route context already there and routes with it.
type requestContext struct {
	context.Context
	id    string
	rctx  *chi.Context
	start time.Time
}

func (c *requestContext) Value(key any) any {
	switch key {
	case requestIDKey:
		return c.id
	case chi.RouteCtxKey:
		if c.rctx != nil {
			return c.rctx
		}
	}
	return c.Context.Value(key)
}

// statusWriter records the status and the bytes written, for the access
// log. Unwrap lets http.ResponseController reach the connection.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// received returns when the request arrived: the outer handler's clock
// reading, unless the server's clock is replaced (tests).
func (s *Server) received(r *http.Request) time.Time {
	if c, ok := r.Context().(*requestContext); ok {
		return s.arrival(c.start)
	}
	return s.Now()
}

// arrival is when a request whose outer handler read the clock at start
// arrived: start, unless the server's clock is replaced (tests).
func (s *Server) arrival(start time.Time) time.Time {
	if s.realClock {
		return start
	}
	return s.Now()
}

// outer gives each request its id and writes its access log line, around
// the router: what the requestID and accessLog middleware did.
//
// POST /predict, the route that carries the traffic, goes to predict
// directly, with the id and the time in hand: chi's routing is about 0.8 µs
// of a 60 µs request on a small model (docs/perf/request-cost.md), the
// route has no parameters, and a context carrying them would cost a copy of
// the http.Request (248 bytes). Any other method or path, including an
// escaped spelling of /predict, goes through the router as before.
func (s *Server) outer(mux *chi.Mux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// An id that could not be echoed unchanged in the response header
		// is replaced like an over-long one, so that header and body agree;
		// a bad header is not worth a 400 on every route. net/http has
		// already refused control bytes other than tab.
		id := headerValue(r.Header, "X-Request-Id")
		if id == "" || understudy.CheckRequestID(id, "") != nil {
			id = serving.NewID()
		}
		w.Header()["X-Request-Id"] = []string{id}
		if r.Method == http.MethodPost && r.URL.Path == "/predict" && r.URL.RawPath == "" {
			sw := &statusWriter{ResponseWriter: w}
			s.predictRecovered(sw, r, id, start)
			s.logRequest(r, sw, start)
			return
		}
		q := &routed{w: statusWriter{ResponseWriter: w}}
		q.rctx.Routes = mux
		q.ctx = requestContext{Context: r.Context(), id: id, rctx: &q.rctx, start: start}
		r = r.WithContext(&q.ctx)
		mux.ServeHTTP(&q.w, r)
		s.logRequest(r, &q.w, start)
	})
}

// headerValue is h.Get(key) for a key already in canonical form, as net/http
// stores a request's header keys: Get canonicalizes the key again on every
// call, three times per request on the hot path.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *Server) logRequest(r *http.Request, ww *statusWriter, start time.Time) {
	status := ww.status
	if status == 0 {
		status = http.StatusOK
	}
	ev := s.Log.Info()
	if status >= 500 {
		ev = s.Log.Error()
	}
	if ev == nil {
		return
	}
	// The handler may replace the id with the one in the request body.
	ev.Str("request_id", headerValue(ww.Header(), "X-Request-Id")).
		Str("method", r.Method).Str("path", r.URL.Path).
		Int("status", status).Int("bytes", ww.bytes).
		Int64("in_bytes", r.ContentLength).
		Dur("latency", time.Since(start)).Str("remote", r.RemoteAddr).
		Msg("request")
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer s.recoverPanic(w, r)
		next.ServeHTTP(w, r)
	})
}

// predictRecovered is predict under the recoverer's guard.
func (s *Server) predictRecovered(w http.ResponseWriter, r *http.Request, id string, start time.Time) {
	defer s.recoverPanic(w, r)
	s.predict(w, r, id, s.arrival(start))
}

// recoverPanic, deferred, turns a handler's panic into a logged 500. The
// request id is the response's: the outer handler's, or the body's once
// the handler read it, as the error answer says.
func (s *Server) recoverPanic(w http.ResponseWriter, r *http.Request) {
	if p := recover(); p != nil {
		if p == http.ErrAbortHandler {
			panic(p)
		}
		s.Log.Error().Str("request_id", headerValue(w.Header(), "X-Request-Id")).Interface("panic", p).Bytes("stack", debug.Stack()).Msg("handler panicked")
		s.error(w, r, errors.New("panic"))
	}
}

// error writes err as JSON with the status from the table. Internal errors
// are logged and replaced by a generic message.
func (s *Server) error(w http.ResponseWriter, r *http.Request, err error) {
	code, status, id := s.classify(w, r, err)
	// Whatever the handler meant to send, this is JSON.
	w.Header().Set("Content-Type", "application/json")
	writeJSONStatus(w, status, map[string]string{"error": understudy.ErrorMessage(err), "code": code, "request_id": id})
}

// classify looks up err's code and status in the table, and logs internal
// errors, whose text never reaches the client.
func (s *Server) classify(w http.ResponseWriter, r *http.Request, err error) (code string, status int, id string) {
	code = understudy.ErrorCode(err)
	status = understudy.StatusOf(err).HTTP
	id = w.Header().Get("X-Request-Id")
	if code == understudy.EINTERNAL {
		s.Log.Error().Str("request_id", id).Err(err).Str("path", r.URL.Path).Msg("internal error")
	}
	return code, status, id
}

// writeJSON writes v as indented JSON with the default status, 200.
func writeJSON(w http.ResponseWriter, v any) {
	writeJSONStatus(w, 0, v)
}

// writeJSONStatus writes v as indented JSON with status (0 for the default).
// Headers are final once a status is written, so Content-Type, unless the
// caller chose one, is set here first.
func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	if status != 0 {
		w.WriteHeader(status)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Messages quote request shapes such as <input name>; escaping them
	// for HTML would only make them unreadable.
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	models := s.Models.List()
	type model struct {
		understudy.ModelInfo
		LoadMS   float64 `json:"load_ms"`
		WarmupMS float64 `json:"warmup_ms"`
	}
	out := make([]model, len(models))
	for i, m := range models {
		out[i] = model{m, ms(m.LoadTime), ms(m.WarmTime)}
	}
	body := map[string]any{"models": out}
	if warnings := s.degraded(); len(warnings) > 0 {
		body["warnings"] = warnings
	}
	writeJSON(w, body)
}

func (s *Server) degraded() []string {
	if s.Degraded == nil {
		return nil
	}
	return s.Degraded()
}

func ms(d time.Duration) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(d)/1e6, 'f', 3, 64), 64)
	return v
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil && s.Ready() {
		if warnings := s.degraded(); len(warnings) > 0 {
			writeJSON(w, map[string]any{"status": "degraded", "warnings": warnings})
			return
		}
		writeJSON(w, map[string]string{"status": "ready"})
		return
	}
	s.error(w, r, understudy.Errorf(understudy.EUNAVAILABLE, "no primary model is loaded; add a .onnx file to the models directory"))
}
