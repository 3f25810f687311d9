package main

import "testing"

// Stacks are leaf first, as in a profile; the names are what the server's
// profiles hold.
func TestAttribute(t *testing.T) {
	const (
		mod     = "github.com/understudy-ml/understudy/pkg/"
		handler = mod + "httpapi.(*Server).predict"
		infer   = mod + "serving.(*Service).Infer"
	)
	// What net/http and the outer handler put above POST /predict.
	outer := mod + "httpapi.(*Server).Handler.(*Server).outer.func5"
	above := []string{mod + "httpapi.(*Server).predictRecovered", outer,
		"net/http.HandlerFunc.ServeHTTP", "net/http.serverHandler.ServeHTTP", "net/http.(*conn).serve", "runtime.goexit"}
	stack := func(frames ...string) []string { return append(frames, above...) }
	// fromOuter is for the outer handler's own calls: the id, the log line.
	fromOuter := func(frames ...string) []string { return append(frames, above[1:]...) }
	for _, c := range []struct {
		name   string
		frames []string
		want   int
	}{
		{"malloc in the tensor parser is decoding", stack("runtime.mallocgc", mod+"understudy.(*values).reserve", mod+"understudy.parseNested",
			mod+"understudy.DecodeTensor", mod+"httpapi.decodeInputs", handler+".func1", infer, handler), stDecode},
		{"the shape check inside DecodeTensor is validation", stack(mod+"understudy.checkShape", mod+"understudy.DecodeTensor",
			mod+"httpapi.decodeInputs", handler+".func1", infer, handler), stValidate},
		{"segmentio's decoder", stack("github.com/segmentio/encoding/json.decoder.decodeMapStringRawMessage",
			"github.com/segmentio/encoding/json.Parse", mod+"httpapi.decodeJSON", handler), stDecode},
		{"a C call under Run", stack("runtime.cgocall", "github.com/yalue/onnxruntime_go._Cfunc_RunOrtSessionWithOptions",
			"github.com/yalue/onnxruntime_go.(*DynamicAdvancedSession).RunWithOptions", mod+"onnx.(*Session).run", mod+"onnx.(*Session).Run", infer, handler), stRun},
		{"AppendJSON in the store's encoding is the store's", stack(mod+"understudy.appendFloat", mod+"understudy.AppendJSON",
			mod+"store.appendTensors", mod+"store.EncodeTensors", mod+"sqlite.(*DB).encodePred", mod+"sqlite.(*DB).predRows",
			mod+"sqlite.(*DB).exec", mod+"sqlite.(*DB).commitRows", mod+"sqlite.(*DB).run", "runtime.goexit"), stStoreEncode},
		{"sha256 of the inputs over the cap", []string{"crypto/sha256.Sum256", mod + "store.InputsDigest", mod + "sqlite.(*DB).encodePred",
			mod + "sqlite.(*DB).predRows", mod + "sqlite.(*DB).exec", mod + "sqlite.(*DB).run", "runtime.goexit"}, stStoreEncode},
		{"queueing the row", stack("runtime.chansend", mod+"sqlite.(*DB).enqueue", mod+"sqlite.(*DB).WritePrediction",
			"main.(*Main).onPredict", infer, handler), stHandOver},
		{"metrics from onPredict", stack("github.com/prometheus/client_golang/prometheus.(*histogram).Observe", mod+"metrics.(*Metrics).Run",
			"main.(*Main).onPredict", infer, handler), stMetrics},
		{"output encoding", stack(mod+"understudy.appendElem", mod+"understudy.AppendJSON", handler), stEncode},
		{"the handler's own allocation", stack("runtime.mallocgc", "runtime.makeslice", handler), stGlue},
		{"the answer's write through the status writer is the handler's, as in the bare server",
			stack("net/http.(*response).Write", mod+"httpapi.(*statusWriter).Write", handler), stGlue},
		{"the access log line", fromOuter("github.com/rs/zerolog.(*Event).Msg", mod+"httpapi.(*Server).logRequest"), stLog},
		{"the access log's own code", fromOuter(mod + "httpapi.(*Server).logRequest"), stLog},
		{"a new request id", fromOuter("github.com/google/uuid.NewV7", mod+"serving.NewID"), stID},
		{"the body's read deadline", stack("internal/poll.(*FD).SetReadDeadline", "net/http.(*ResponseController).SetReadDeadline",
			mod+"httpapi.(*Server).readBody", handler), stBody},
		{"the writer goroutine", []string{"runtime.cgocall", "github.com/mattn/go-sqlite3._Cfunc__sqlite3_step_internal",
			"database/sql.(*Stmt).ExecContext", mod + "sqlite.(*DB).exec", mod + "sqlite.(*DB).commitRows", mod + "sqlite.(*DB).run", "runtime.goexit"}, stStoreWrite},
		{"the encoding the writer does is the store's encoding", []string{"runtime.memmove", mod + "store.AppendStoredTensors",
			mod + "sqlite.(*DB).encodePred", mod + "sqlite.(*DB).predRows", mod + "sqlite.(*DB).exec", mod + "sqlite.(*DB).commitRows",
			mod + "sqlite.(*DB).run", "runtime.goexit"}, stStoreEncode},
		{"the writer's batch bookkeeping", []string{"runtime.mapassign_faststr", mod + "store/rollup.(*Batch).AddPrediction",
			mod + "sqlite.(*DB).exec.func3", mod + "sqlite.inserter[go.shape.*uint8].insert", mod + "sqlite.(*DB).exec",
			mod + "sqlite.(*DB).run", "runtime.goexit"}, stStoreWrite},
		{"the scan of the body", stack(mod+"httpapi.(*scanner).scalar", mod+"httpapi.(*scanner).numbers", mod+"httpapi.scanPredict", handler), stDecode},
		{"writing the response after the handler", []string{"syscall.write", "internal/poll.(*FD).Write", "net.(*conn).Write",
			"bufio.(*Writer).Flush", "net/http.(*response).finishRequest", "net/http.(*conn).serve", "runtime.goexit"}, stNetHTTP},
		{"malloc in net/http is net/http's", []string{"runtime.mallocgc", "net/textproto.readMIMEHeader", "net/http.readRequest",
			"net/http.(*conn).serve", "runtime.goexit"}, stNetHTTP},
		{"a background mark worker", []string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker", "runtime.goexit"}, stGC},
		{"the scheduler", []string{"runtime.netpoll", "runtime.findRunnable", "runtime.schedule", "runtime.park_m", "runtime.mcall"}, stSched},
		{"the floor's handler", []string{"io.copyBuffer", "io.Copy", "main.floorServer.func1", "net/http.HandlerFunc.ServeHTTP",
			"net/http.(*conn).serve", "runtime.goexit"}, stBody},
		{"ONNX Runtime's own thread", []string{"", "runtime._ExternalCode"}, stRun},
		{"unknown code", []string{"github.com/fsnotify/fsnotify.(*inotify).readEvents", "runtime.goexit"}, stOther},
	} {
		if got := attribute(c.frames); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, stageNames[got], stageNames[c.want])
		}
	}
}
