package main

import (
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// The cost section breaks one /predict request's CPU into stages, from CPU
// profiles of the real server and of the bare floor server under the same
// closed-loop load, so that what each stage adds over the floor can be read
// off before anything is optimised.
//
// This file says which stage a profile sample belongs to: the stages, the
// rules that name the stage of a function, and attribute. Taking the
// profiles and printing the table is in cost_profile.go.

// The stages, in the order of the table.
const (
	stBody = iota
	stDecode
	stValidate
	stRun
	stEncode
	stID
	stLog
	stMetrics
	stHandOver
	stStoreEncode
	stStoreWrite
	stRouting
	stGlue
	stNetHTTP
	stGC
	stSched
	stProfiler
	stOther
	nStages
)

var stageNames = [nStages]string{
	stBody:        "body read (readBody; the floor's io.Copy)",
	stDecode:      "JSON decode to tensors",
	stValidate:    "input validation (shapes, depth, ids)",
	stRun:         "ORT run, cgo, tensors in and out, ORT threads",
	stEncode:      "output encoding",
	stID:          "request id",
	stLog:         "access log",
	stMetrics:     "metrics",
	stHandOver:    "hand-over to store queue and mirror",
	stStoreEncode: "store: row encoding, sha256",
	stStoreWrite:  "store: SQLite write (writer goroutine)",
	stRouting:     "chi routing, recoverer",
	stGlue:        "handler and serving glue",
	stNetHTTP:     "net/http: requests, responses, syscalls",
	stGC:          "Go runtime: GC (background workers)",
	stSched:       "Go runtime: scheduler, idle, signals",
	stProfiler:    "pprof (the measurement)",
	stOther:       "other",
}

// How a frame's rule attributes a sample; see attribute.
type ruleKind int

const (
	// claims: the frame and everything it calls, whatever stage the
	// callees would have on their own. The outermost such frame wins.
	claims ruleKind = iota
	// inner: the frame and what it calls, unless a frame deeper in the
	// stack has a stage of its own. The innermost such frame wins.
	inner
	// base: only when no frame claims or is inner.
	base
)

// costRule names the stage of the functions that match one of its
// patterns. A pattern starting with ^ is a prefix of the function's full
// name, any other a substring. A frame takes the first rule it matches, so
// specific rules come before general ones.
type costRule struct {
	stage    int
	kind     ruleKind
	patterns []string
}

var costRules = []costRule{
	{stProfiler, claims, []string{"^runtime/pprof.", "^net/http/pprof.", "main.serveProfile"}},
	// The store: queueing a row is the hand-over; building it is its
	// encoding, on the writer goroutine since issue 18's second round
	// (encodePred) and on the request's before it (predRow, for profiles
	// of older builds); the rest of pkg/sqlite runs on the writer goroutine
	// or its low-priority thread. The writer's stage is inner, so that the
	// encoding it calls keeps a stage of its own.
	{stHandOver, inner, []string{"/pkg/sqlite.(*DB).WritePrediction", "/pkg/sqlite.(*DB).enqueue"}},
	{stStoreEncode, claims, []string{"/pkg/sqlite.(*DB).encodePred", "/pkg/sqlite.(*DB).predRows", "/pkg/store.EncodeTensors",
		"/pkg/store.appendTensors", "/pkg/store.AppendStoredTensors", "/pkg/store.StoredTensorsSize", "/pkg/store.InputsDigest"}},
	{stStoreWrite, inner, []string{"/pkg/sqlite.", "/pkg/store.", "/pkg/store/", "/mattn/go-sqlite3.", "^database/sql."}},
	// ONNX Runtime: the binding, the C calls under it (runtime.cgocall),
	// tensor creation and destruction, run options; and C code on threads
	// Go did not start, which only ONNX Runtime starts (SQLite runs on the
	// calling thread).
	{stRun, claims, []string{"/pkg/onnx.", "/yalue/onnxruntime_go.", "runtime._ExternalCode"}},
	{stLog, claims, []string{"/rs/zerolog."}},
	{stMetrics, claims, []string{"/pkg/metrics.", "github.com/prometheus/"}},
	{stID, claims, []string{"/pkg/serving.NewID", "/google/uuid."}},
	{stHandOver, inner, []string{"main.(*Main).onPredict", "/pkg/serving.(*Service).notify", "/pkg/shadow.(*Mirror).Submit"}},
	// Only the floor's handler reads a request with io.Copy.
	{stBody, inner, []string{"/pkg/httpapi.(*Server).readBody", "/pkg/httpapi.readDeclared", "^io.Copy"}},
	{stValidate, inner, []string{"/pkg/understudy.checkShape", "/pkg/understudy.CheckShape", "/pkg/understudy.CheckTensor",
		"/pkg/understudy.shapeElems", "/pkg/understudy.CheckRequestID", "/pkg/httpapi.checkDepth"}},
	// predict.func1 is the Decode closure it hands to Infer.
	{stDecode, inner, []string{"/pkg/httpapi.scanPredict", "/pkg/httpapi.(*scanner).", "/pkg/httpapi.decodeJSON", "/pkg/httpapi.decodeInputs", "/pkg/httpapi.(*Server).predict.func1",
		"/pkg/understudy.DecodeTensor", "/pkg/understudy.decodeExplicit", "/pkg/understudy.parseNested", "/pkg/understudy.(*parser).",
		"/pkg/understudy.(*values).", "/segmentio/encoding/", "/segmentio/asm/"}},
	{stEncode, inner, []string{"/pkg/understudy.AppendJSON", "/pkg/understudy.appendLevel", "/pkg/understudy.appendFloat",
		"/pkg/understudy.appendElem", "/pkg/httpapi.outputNames"}},
	{stID, inner, []string{"/pkg/httpapi.RequestID"}},
	// Not the status writer, although the access log is why it is there:
	// the answer's write goes through it, which the bare server's handler
	// does itself (its glue).
	{stLog, inner, []string{"/pkg/httpapi.(*Server).logRequest"}},
	{stRouting, inner, []string{"/go-chi/chi/v5.", "/pkg/httpapi.(*Server).recoverer"}},
	// What is left of the handler and the service: predict's own
	// code (its allocations, headers, the call into Infer), Begin and End,
	// Acquire and Release, the Prediction; the floor's handler's own code.
	{stGlue, inner, []string{"/pkg/httpapi.", "/pkg/serving.", "/pkg/registry.", "/pkg/batch.", "/pkg/understudy.", "main.floorServer.func"}},
	{stNetHTTP, base, []string{"^net/", "^net.", "^bufio.", "^internal/poll.", "^syscall.", "^internal/runtime/syscall.",
		"^internal/syscall/", "^io.", "^context.", "^mime", "^crypto/tls."}},
	{stGC, base, []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge", "runtime._GC", "runtime.gcStart",
		"runtime.gcMarkDone", "runtime.gcMarkTermination"}},
}

// ruleOf returns the first rule that name matches, or nil.
func ruleOf(name string) *costRule {
	for i := range costRules {
		r := &costRules[i]
		for _, p := range r.patterns {
			if pre, ok := strings.CutPrefix(p, "^"); ok {
				if strings.HasPrefix(name, pre) {
					return r
				}
			} else if strings.Contains(name, p) {
				return r
			}
		}
	}
	return nil
}

// attribute gives a sample, whose frames are leaf first, to one stage. The
// question is what each stage costs: the CPU that would go if the stage
// did, so a sample belongs to the stage that caused it, not to the
// function it happened to be in. Hence:
//
//  1. The outermost frame of a claiming stage takes the sample: a stage
//     that is one self-contained call (a run, a log line, a row's encoding,
//     the writer goroutine) owns everything under it, even code that
//     would have a stage of its own elsewhere (AppendJSON inside the
//     store's encoding is the store's, not output encoding).
//  2. Else the innermost frame of an inner stage: middleware and handler
//     frames wrap the stages they call, so the deepest one is the most
//     specific (validation inside DecodeTensor, decoding inside predict).
//  3. Else net/http if any frame is net/http's (or bufio, poll, syscall);
//     else GC if it is the runtime's background GC; else the scheduler if
//     every frame is the runtime's; else other.
//
// Frames of no stage (the runtime's malloc and GC assists, memmove, time,
// sync, strconv, syscalls) are transparent: their CPU goes to the stage of
// the frame that called them. So allocation, and the GC assists it
// triggers, count toward the stage that allocated; only the background
// GC workers' CPU cannot be traced to a stage and has a row of its own.
func attribute(frames []string) int {
	rules := make([]*costRule, len(frames))
	for i, f := range frames {
		rules[i] = ruleOf(f)
	}
	for i := len(frames) - 1; i >= 0; i-- {
		if r := rules[i]; r != nil && r.kind == claims {
			return r.stage
		}
	}
	for _, r := range rules {
		if r != nil && r.kind == inner {
			return r.stage
		}
	}
	has := func(stage int) bool {
		return slices.ContainsFunc(rules, func(r *costRule) bool { return r != nil && r.stage == stage })
	}
	switch {
	case has(stNetHTTP):
		return stNetHTTP
	case has(stGC):
		return stGC
	case !slices.ContainsFunc(frames, func(f string) bool { return !isRuntime(f) }):
		return stSched
	}
	return stOther
}

func isRuntime(f string) bool {
	return strings.HasPrefix(f, "runtime.") || strings.HasPrefix(f, "internal/runtime/") || strings.HasPrefix(f, "runtime/internal/")
}

// sampleFrames lists a sample's functions leaf first, inlined ones
// included (a location's lines are innermost first).
func sampleFrames(s *profile.Sample) []string {
	var out []string
	for _, loc := range s.Location {
		for _, l := range loc.Line {
			if l.Function != nil {
				out = append(out, l.Function.Name)
			}
		}
	}
	return out
}
