// Package onnx runs models with ONNX Runtime. It is the only package that
// imports onnxruntime_go and so the only one that sees cgo.
package onnx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// The environment is process-wide in ONNX Runtime, so it is created once and
// shared by every Runtime value.
var (
	envMu   sync.Mutex
	envRefs int
)

// Runtime is an initialised ONNX Runtime environment.
type Runtime struct {
	libPath string
	closed  bool
}

// Open loads the shared library at libPath and initialises the environment.
func Open(libPath string) (*Runtime, error) {
	envMu.Lock()
	defer envMu.Unlock()
	if envRefs == 0 {
		if _, err := os.Stat(libPath); err != nil {
			return nil, fmt.Errorf("onnx runtime library %s: %w (run scripts/fetch-ort.sh, or pass --ort-lib / UNDERSTUDY_ORT_LIB)", libPath, err)
		}
		ort.SetSharedLibraryPath(libPath)
		// Run failures come back as errors and are logged by the caller;
		// ONNX Runtime's own error log would repeat each one on stderr.
		if err := ort.InitializeEnvironment(ort.WithLogLevelFatal()); err != nil {
			return nil, fmt.Errorf("initialise onnx runtime from %s: %w", libPath, err)
		}
		// The official build queues a telemetry event for every failed run
		// and resolves Microsoft's host to send them: a few KB held per
		// failure (142 MB over 60,000 in a review), a resolver thread that
		// can deadlock DestroyEnvironment, and error messages that quote
		// input values leaving the machine. None of that is wanted here.
		if err := ort.DisableTelemetry(); err != nil {
			ort.DestroyEnvironment()
			return nil, fmt.Errorf("disable onnx runtime telemetry: %w", err)
		}
	}
	envRefs++
	return &Runtime{libPath: libPath}, nil
}

// presizeMismatch reports whether a run failed because an output sized in
// advance had another shape than the run computed, the one failure a run
// with ORT-sized outputs can cure. Any other failure is the model's, and
// running it again would only double its cost.
func presizeMismatch(err error) bool {
	m := err.Error()
	return strings.Contains(m, "pre-allocated output") || strings.Contains(m, "Shape mismatch attempting to re-use buffer")
}

// Version returns the version string of the loaded ONNX Runtime library.
func (r *Runtime) Version() string { return ort.GetVersion() }

// LibraryPath returns the path the library was loaded from.
func (r *Runtime) LibraryPath() string { return r.libPath }

// Close destroys the environment once the last Runtime is closed. Every
// session must be closed before.
func (r *Runtime) Close() error {
	envMu.Lock()
	defer envMu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	envRefs--
	if envRefs == 0 {
		return ort.DestroyEnvironment()
	}
	return nil
}

// Device says where sessions run.
type Device struct {
	CUDA bool
	ID   int
}

// ParseDevice reads "cpu", "cuda" or "cuda:N".
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "" || s == "cpu":
		return Device{}, nil
	case s == "cuda":
		return Device{CUDA: true}, nil
	case strings.HasPrefix(s, "cuda:"):
		id, err := strconv.Atoi(s[5:])
		if err != nil || id < 0 {
			return Device{}, fmt.Errorf("device %q: want cpu, cuda or cuda:N with N a GPU index", s)
		}
		return Device{CUDA: true, ID: id}, nil
	}
	return Device{}, fmt.Errorf("device %q: want cpu, cuda or cuda:N", s)
}

// String returns the device in the form ParseDevice reads.
func (d Device) String() string {
	if d.CUDA {
		return fmt.Sprintf("cuda:%d", d.ID)
	}
	return "cpu"
}

// Options configure how a model's session is created.
type Options struct {
	Device Device
	// IntraOpThreads is the size of each session's intra-op thread pool.
	// One thread per run suits request-level parallelism best, and keeps a
	// shadow run on the (lower-priority) thread that called it.
	IntraOpThreads int
}

// ErrCUDAUnavailable is returned when CUDA was asked for but cannot be used.
var ErrCUDAUnavailable = errors.New("the CUDA execution provider is not available")

func (r *Runtime) sessionOptions(o Options) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("create session options: %w", err)
	}
	threads := o.IntraOpThreads
	if threads <= 0 {
		threads = 1
	}
	err = errors.Join(
		so.SetIntraOpNumThreads(threads),
		so.SetInterOpNumThreads(1),
		// Spinning threads burn the cores that concurrent requests and
		// shadows need.
		so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"),
		so.AddSessionConfigEntry("session.inter_op.allow_spinning", "0"),
	)
	if err == nil && o.Device.CUDA {
		err = appendCUDA(so, o.Device, r.libPath)
	}
	if err != nil {
		so.Destroy()
		return nil, err
	}
	return so, nil
}

func appendCUDA(so *ort.SessionOptions, d Device, lib string) error {
	cudaOpts, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return cudaError(d, lib, err)
	}
	defer cudaOpts.Destroy()
	if err := cudaOpts.Update(map[string]string{"device_id": strconv.Itoa(d.ID)}); err != nil {
		return cudaError(d, lib, err)
	}
	if err := so.AppendExecutionProviderCUDA(cudaOpts); err != nil {
		return cudaError(d, lib, err)
	}
	return nil
}

func cudaError(d Device, lib string, cause error) error {
	return fmt.Errorf("device %s: %w: %v. The ONNX Runtime library %s must be a GPU build "+
		"with libonnxruntime_providers_cuda.so beside it, and CUDA 12 and cuDNN 9 must be on the "+
		"library path (LD_LIBRARY_PATH). To run on CPU instead, use --device cpu", d, ErrCUDAUnavailable, cause, lib)
}

// CheckDevice fails early, before any model is loaded, when the device cannot
// be used.
func (r *Runtime) CheckDevice(d Device) error {
	so, err := r.sessionOptions(Options{Device: d})
	if err != nil {
		return err
	}
	return so.Destroy()
}

// Load creates a session for the model in data, reads its signature and
// metadata, and warms it up with one run.
func (r *Runtime) Load(data []byte, o Options) (*understudy.LoadedModel, error) {
	if len(data) == 0 {
		return nil, errors.New("the file is empty")
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	sig, err := signature(ins, outs)
	if err != nil {
		return nil, err
	}
	so, err := r.sessionOptions(o)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	rssBefore := residentBytes()
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, sig.InputNames(), outputNames(sig), so)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	meta, err := metadata(sess)
	if err != nil {
		sess.Destroy()
		return nil, err
	}
	session := &Session{sess: sess, sig: sig, options: make(chan *ort.RunOptions, 64)}
	session.presize.Store(presizable(sig))
	return &understudy.LoadedModel{
		Runner:      session,
		Signature:   sig,
		Metadata:    meta,
		MemoryBytes: max(0, residentBytes()-rssBefore),
	}, nil
}

func outputNames(sig understudy.Signature) []string {
	names := make([]string, len(sig.Outputs))
	for i, o := range sig.Outputs {
		names[i] = o.Name
	}
	return names
}

func signature(ins, outs []ort.InputOutputInfo) (understudy.Signature, error) {
	var sig understudy.Signature
	conv := func(kind string, io ort.InputOutputInfo) (understudy.TensorInfo, error) {
		switch io.OrtValueType {
		case ort.ONNXTypeTensor:
		case ort.ONNXTypeSequence, ort.ONNXTypeMap:
			return understudy.TensorInfo{}, fmt.Errorf("%s %q is a %s, not a tensor. Understudy serves tensor inputs and outputs only; "+
				"for scikit-learn classifiers, export without ZipMap (skl2onnx: options={'zipmap': False}) so that probabilities are a tensor",
				kind, io.Name, strings.ToLower(io.OrtValueType.String()))
		default:
			return understudy.TensorInfo{}, fmt.Errorf("%s %q has ONNX type %v, which Understudy cannot serve", kind, io.Name, io.OrtValueType)
		}
		dt := understudy.DType(io.DataType)
		if !dt.Supported() {
			return understudy.TensorInfo{}, fmt.Errorf("%s %q has element type %v, which Understudy cannot convert to JSON "+
				"(supported: float16/32/64, int8-64, uint8-64, bool, string)", kind, io.Name, io.DataType)
		}
		dims := make([]int64, len(io.Dimensions))
		for i, d := range io.Dimensions {
			if d < 0 {
				d = -1
			}
			dims[i] = d
		}
		return understudy.TensorInfo{Name: io.Name, DType: dt, Dims: dims}, nil
	}
	// The binding builds rank-0 values only for the element types it maps to
	// Go numbers: float16 (stored as uint16) and string have no scalar form.
	// Refusing them here beats loading a model whose every run fails.
	rankZero := func(kind string, ti understudy.TensorInfo) error {
		if len(ti.Dims) == 0 && (ti.DType == understudy.Float16 || ti.DType == understudy.String) {
			return fmt.Errorf("%s %q is a rank-0 %v, which the ONNX Runtime binding has no rank-0 form for; export it with shape [1] instead", kind, ti.Name, ti.DType)
		}
		return nil
	}
	for _, in := range ins {
		ti, err := conv("input", in)
		if err != nil {
			return sig, err
		}
		if err := rankZero("input", ti); err != nil {
			return sig, err
		}
		sig.Inputs = append(sig.Inputs, ti)
	}
	for _, out := range outs {
		ti, err := conv("output", out)
		if err != nil {
			return sig, err
		}
		if ti.DType == understudy.Float16 {
			for i, d := range ti.Dims {
				if d < 0 && i > 0 {
					return sig, fmt.Errorf("output %q is float16 with a dynamic dimension %d: only the batch dimension (0) of a float16 output may be dynamic", ti.Name, i)
				}
			}
		}
		if err := rankZero("output", ti); err != nil {
			return sig, err
		}
		sig.Outputs = append(sig.Outputs, ti)
	}
	if len(sig.Inputs) == 0 || len(sig.Outputs) == 0 {
		return sig, errors.New("the model has no inputs or no outputs")
	}
	return sig, nil
}

func metadata(sess *ort.DynamicAdvancedSession) (understudy.Metadata, error) {
	var md understudy.Metadata
	m, err := sess.GetModelMetadata()
	if err != nil {
		return md, fmt.Errorf("read metadata: %w", err)
	}
	defer m.Destroy()
	var errs []error
	get := func(f func() (string, error)) string {
		s, err := f()
		errs = append(errs, err)
		return s
	}
	md.Producer = get(m.GetProducerName)
	md.GraphName = get(m.GetGraphName)
	md.Domain = get(m.GetDomain)
	md.Description = get(m.GetDescription)
	v, err := m.GetVersion()
	errs = append(errs, err)
	md.Version = v
	keys, err := m.GetCustomMetadataMapKeys()
	errs = append(errs, err)
	for _, k := range keys {
		val, _, err := m.LookupCustomMetadataMap(k)
		errs = append(errs, err)
		if md.Custom == nil {
			md.Custom = map[string]string{}
		}
		md.Custom[k] = val
	}
	if err := errors.Join(errs...); err != nil {
		return md, fmt.Errorf("read metadata: %w", err)
	}
	return md, nil
}

// Session is a loaded model. One session serves every goroutine: ONNX
// Runtime's Run is safe for concurrent use.
type Session struct {
	sess *ort.DynamicAdvancedSession
	sig  understudy.Signature
	mu   sync.Mutex
	done bool
	// options is a free list of RunOptions: creating and destroying one
	// per run costs two cgo calls on every request. A channel rather than
	// a sync.Pool, because a pool would drop them without Destroy.
	options chan *ort.RunOptions
	// presize says whether numeric outputs are allocated in Go memory
	// before a run, shaped from the signature with the batch for a dynamic
	// first dimension. ONNX Runtime then writes into them, which saves
	// about ten cgo calls and a copy per output against letting it
	// allocate. The signature may not tell an output's real size; the
	// first run that fails with presized outputs but succeeds without
	// turns it off for good.
	presize atomic.Bool
	// shortBatch is the largest batch (first dimension) at which the
	// session's runs have been measured short, under shortRun, at least
	// shortRuns times in a row; 0 until then, and again after any long
	// run. Runs up to that batch skip the cancellation plumbing (pooled
	// RunOptions, context.AfterFunc and its stop): a run of a few µs gains
	// nothing from being terminable, and the plumbing costs about 1 µs and
	// 6 allocations. ctx is still checked before and after such runs.
	shortBatch atomic.Int64
	// shortCount counts the short runs in a row.
	shortCount atomic.Int64
}

// shortRun is the longest run not worth terminating: a context that ends
// during it waits at most this long, as it would wait for the decoding or
// the store anyway.
const shortRun = time.Millisecond

// shortRuns is how many short runs in a row a batch size needs before runs
// up to it skip the cancellation plumbing.
const shortRuns = 16

// observe records how long a run at batch took.
func (s *Session) observe(batch int64, took time.Duration) {
	if took >= shortRun {
		if s.shortBatch.Load() != 0 || s.shortCount.Load() != 0 {
			s.shortBatch.Store(0)
			s.shortCount.Store(0)
		}
		return
	}
	if s.shortCount.Add(1) >= shortRuns && batch > s.shortBatch.Load() {
		s.shortBatch.Store(batch)
	}
}

func (s *Session) runOptions() (*ort.RunOptions, error) {
	select {
	case ro := <-s.options:
		return ro, nil
	default:
		return ort.NewRunOptions()
	}
}

func (s *Session) putRunOptions(ro *ort.RunOptions) {
	select {
	case s.options <- ro:
	default:
		ro.Destroy()
	}
}

// Close releases the session. Runs must have finished.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil
	}
	s.done = true
	for {
		select {
		case ro := <-s.options:
			ro.Destroy()
		default:
			return s.sess.Destroy()
		}
	}
}

// Run runs the model on inputs, which must match the signature (the caller
// validates shapes and types). When ctx is done the run is terminated through
// RunOptions, and the error wraps ctx.Err(). Runs the session has measured
// short (see shortBatch) are not terminable: ctx is checked before and
// after them instead.
func (s *Session) Run(ctx context.Context, inputs map[string]*understudy.Tensor) (_ map[string]*understudy.Tensor, err error) {
	ins := make([]ort.Value, len(s.sig.Inputs))
	outs := make([]ort.Value, len(s.sig.Outputs))
	defer func() {
		// Every value is destroyed on every path, the error paths included.
		for _, v := range ins {
			if v != nil {
				v.Destroy()
			}
		}
		for _, v := range outs {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	var batch int64 = -1
	for i, info := range s.sig.Inputs {
		t, ok := inputs[info.Name]
		if !ok {
			return nil, understudy.Errorf(understudy.EINVALID, "missing input %q", info.Name)
		}
		if t.DType != info.DType {
			return nil, understudy.Errorf(understudy.EINVALID, "input %q is %v, want %v", info.Name, t.DType, info.DType)
		}
		if ins[i], err = toValue(t); err != nil {
			return nil, fmt.Errorf("input %q: %w", info.Name, err)
		}
		// The batch is the first dimension of an input that declares it
		// dynamic; a fixed first dimension says nothing about the rows.
		if batch < 0 && len(info.Dims) > 0 && info.Dims[0] < 0 && len(t.Shape) > 0 {
			batch = t.Shape[0]
		}
	}
	presized, err := s.allocateOutputs(outs, batch, s.presize.Load())
	if err != nil {
		return nil, err
	}

	// The rows of this run, for the measure of short runs.
	rows := max(batch, 1)
	var ro *ort.RunOptions
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("run not started: %w", err)
		}
	}
	if ctx.Done() != nil && rows > s.shortBatch.Load() {
		if ro, err = s.runOptions(); err != nil {
			return nil, fmt.Errorf("create run options: %w", err)
		}
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() { ro.Terminate(); close(fired) })
		defer func() {
			if !stop() {
				// Terminate may still be running: wait for it, then reset
				// the flag, which would otherwise stop every later run.
				<-fired
				if ro.UnsetTerminate() != nil {
					ro.Destroy()
					return
				}
			}
			s.putRunOptions(ro)
		}()
	}
	start := time.Now()
	runErr := s.run(ctx, ins, outs, ro)
	s.observe(rows, time.Since(start))
	if runErr == nil && ro == nil && ctx.Done() != nil && ctx.Err() != nil {
		// A short run without the plumbing: the context ended while it ran.
		runErr = ctx.Err()
	}
	if runErr != nil && presized && ctx.Err() == nil && presizeMismatch(runErr) {
		// Perhaps an output is not the size its signature suggests: run
		// again with ORT sizing them, and stop presizing if that works.
		if _, err := s.allocateOutputs(outs, batch, false); err != nil {
			return nil, err
		}
		if runErr = s.run(ctx, ins, outs, ro); runErr == nil {
			s.presize.Store(false)
		}
	}
	runtime.KeepAlive(inputs)
	if runErr != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("run terminated: %w", ctxErr)
		}
		return nil, understudy.Errorf(understudy.EMODEL, "the model failed on this input: %s", trimORT(runErr))
	}
	result := make(map[string]*understudy.Tensor, len(outs))
	for i, info := range s.sig.Outputs {
		t, err := fromValue(outs[i], info.DType)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", info.Name, err)
		}
		result[info.Name] = t
	}
	return result, nil
}

// run runs the session once, measuring its CPU time if ctx asks for it.
func (s *Session) run(ctx context.Context, ins, outs []ort.Value, ro *ort.RunOptions) error {
	st := understudy.RunStatsFrom(ctx)
	if st == nil {
		return s.sess.RunWithOptions(ins, outs, ro)
	}
	// With one intra-op thread the run executes on this OS thread, so its
	// CPU clock is the run's cost; the goroutine must not migrate between
	// the two readings.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadCPU()
	err := s.sess.RunWithOptions(ins, outs, ro)
	st.CPU = threadCPU() - before
	return err
}

// allocateOutputs fills outs, destroying what they held. The binding cannot
// allocate rank-0 or float16 outputs itself, so those are always allocated
// here; with presize, so are the other numeric outputs whose shape the
// signature and the batch tell. The rest are left nil for ORT to size.
// presized reports whether any output was allocated only to save ORT the
// work, so that a failed run may be worth repeating without.
func (s *Session) allocateOutputs(outs []ort.Value, batch int64, presize bool) (presized bool, err error) {
	for i, info := range s.sig.Outputs {
		if outs[i] != nil {
			outs[i].Destroy()
			outs[i] = nil
		}
		required := len(info.Dims) == 0 || info.DType == understudy.Float16
		if !required && (!presize || info.DType == understudy.String) {
			continue
		}
		shape, ok := outputShape(info.Dims, batch)
		switch {
		case !ok && required:
			return false, fmt.Errorf("output %q: cannot size %v output with dims %v", info.Name, info.DType, info.Dims)
		case !ok:
			continue
		}
		if outs[i], err = emptyValue(info.DType, shape); err != nil {
			return false, fmt.Errorf("output %q: %w", info.Name, err)
		}
		presized = presized || !required
	}
	return presized, nil
}

// outputShape is dims with the batch for a dynamic first dimension; ok is
// false when any other dimension is dynamic or the batch is unknown.
func outputShape(dims []int64, batch int64) (shape ort.Shape, ok bool) {
	shape = make(ort.Shape, len(dims))
	for i, d := range dims {
		if d < 0 {
			if i > 0 || batch <= 0 {
				return nil, false
			}
			d = batch
		}
		shape[i] = d
	}
	return shape, true
}

// presizable reports whether any output's shape follows from the signature
// and the batch: a numeric tensor with fixed dimensions after the first.
func presizable(sig understudy.Signature) bool {
	for _, o := range sig.Outputs {
		if o.DType == understudy.String || o.DType == understudy.Float16 || len(o.Dims) == 0 {
			continue
		}
		if !slices.ContainsFunc(o.Dims[1:], func(d int64) bool { return d < 0 }) {
			return true
		}
	}
	return false
}

// emptyValue allocates a zeroed value in Go memory for ORT to write into: a
// scalar for an empty shape, else a tensor.
func emptyValue(dt understudy.DType, shape ort.Shape) (ort.Value, error) {
	switch dt {
	case understudy.Float32:
		return empty[float32](shape)
	case understudy.Float64:
		return empty[float64](shape)
	case understudy.Int8:
		return empty[int8](shape)
	case understudy.Uint8:
		return empty[uint8](shape)
	case understudy.Int16:
		return empty[int16](shape)
	case understudy.Uint16:
		return empty[uint16](shape)
	case understudy.Int32:
		return empty[int32](shape)
	case understudy.Uint32:
		return empty[uint32](shape)
	case understudy.Int64:
		return empty[int64](shape)
	case understudy.Uint64:
		return empty[uint64](shape)
	case understudy.Bool:
		return empty[bool](shape)
	case understudy.Float16:
		if len(shape) > 0 {
			return ort.NewCustomDataTensor(shape, make([]byte, shape.FlattenedSize()*2), ort.TensorElementDataTypeFloat16)
		}
	}
	if len(shape) == 0 {
		return nil, fmt.Errorf("rank-0 %v outputs are not supported", dt)
	}
	return nil, fmt.Errorf("%v outputs cannot be allocated in Go memory", dt)
}

func empty[T ort.TensorData](shape ort.Shape) (ort.Value, error) {
	if len(shape) == 0 {
		return ort.NewEmptyScalar[T]()
	}
	return ort.NewEmptyTensor[T](shape)
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// residentBytes reads the process's resident set size.
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func trimORT(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "Error running network: ")
	return msg
}

func toValue(t *understudy.Tensor) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	if len(t.Shape) == 0 {
		return scalarValue(t)
	}
	switch d := t.Data.(type) {
	case []float32:
		return ort.NewTensor(shape, d)
	case []float64:
		return ort.NewTensor(shape, d)
	case []int8:
		return ort.NewTensor(shape, d)
	case []uint8:
		return ort.NewTensor(shape, d)
	case []int16:
		return ort.NewTensor(shape, d)
	case []int32:
		return ort.NewTensor(shape, d)
	case []int64:
		return ort.NewTensor(shape, d)
	case []uint32:
		return ort.NewTensor(shape, d)
	case []uint64:
		return ort.NewTensor(shape, d)
	case []bool:
		return ort.NewTensor(shape, d)
	case []uint16:
		if t.DType == understudy.Float16 {
			return ort.NewCustomDataTensor(shape, u16bytes(d), ort.TensorElementDataTypeFloat16)
		}
		return ort.NewTensor(shape, d)
	case []string:
		st, err := ort.NewStringTensor(shape)
		if err != nil {
			return nil, err
		}
		if err := st.SetContents(d); err != nil {
			st.Destroy()
			return nil, err
		}
		return st, nil
	}
	return nil, fmt.Errorf("unsupported tensor data %T", t.Data)
}

func scalarValue(t *understudy.Tensor) (ort.Value, error) {
	switch d := t.Data.(type) {
	case []float32:
		return ort.NewScalar(d[0])
	case []float64:
		return ort.NewScalar(d[0])
	case []int8:
		return ort.NewScalar(d[0])
	case []uint8:
		return ort.NewScalar(d[0])
	case []int16:
		return ort.NewScalar(d[0])
	case []int32:
		return ort.NewScalar(d[0])
	case []int64:
		return ort.NewScalar(d[0])
	case []uint32:
		return ort.NewScalar(d[0])
	case []uint64:
		return ort.NewScalar(d[0])
	case []bool:
		return ort.NewScalar(d[0])
	case []uint16:
		if t.DType != understudy.Float16 {
			return ort.NewScalar(d[0])
		}
	}
	return nil, fmt.Errorf("rank-0 %v inputs are not supported", t.DType)
}

func u16bytes(d []uint16) []byte {
	if len(d) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*2)
}

func fromValue(v ort.Value, dt understudy.DType) (*understudy.Tensor, error) {
	if v == nil {
		return nil, errors.New("no value")
	}
	shape := []int64(v.GetShape())
	if shape == nil {
		shape = []int64{}
	}
	t := &understudy.Tensor{DType: dt, Shape: append([]int64(nil), shape...)}
	// The slices returned by GetData are Go memory (the binding copies
	// auto-allocated outputs), so they stay valid after Destroy.
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		t.Data = x.GetData()
	case *ort.Tensor[float64]:
		t.Data = x.GetData()
	case *ort.Tensor[int8]:
		t.Data = x.GetData()
	case *ort.Tensor[uint8]:
		t.Data = x.GetData()
	case *ort.Tensor[int16]:
		t.Data = x.GetData()
	case *ort.Tensor[uint16]:
		t.Data = x.GetData()
	case *ort.Tensor[int32]:
		t.Data = x.GetData()
	case *ort.Tensor[int64]:
		t.Data = x.GetData()
	case *ort.Tensor[uint32]:
		t.Data = x.GetData()
	case *ort.Tensor[uint64]:
		t.Data = x.GetData()
	case *ort.Tensor[bool]:
		t.Data = x.GetData()
	case *ort.Scalar[float32]:
		t.Data = []float32{x.GetData()}
	case *ort.Scalar[float64]:
		t.Data = []float64{x.GetData()}
	case *ort.Scalar[int8]:
		t.Data = []int8{x.GetData()}
	case *ort.Scalar[uint8]:
		t.Data = []uint8{x.GetData()}
	case *ort.Scalar[int16]:
		t.Data = []int16{x.GetData()}
	case *ort.Scalar[uint16]:
		t.Data = []uint16{x.GetData()}
	case *ort.Scalar[int32]:
		t.Data = []int32{x.GetData()}
	case *ort.Scalar[int64]:
		t.Data = []int64{x.GetData()}
	case *ort.Scalar[uint32]:
		t.Data = []uint32{x.GetData()}
	case *ort.Scalar[uint64]:
		t.Data = []uint64{x.GetData()}
	case *ort.Scalar[bool]:
		t.Data = []bool{x.GetData()}
	case *ort.CustomDataTensor:
		b := x.GetData()
		h := make([]uint16, len(b)/2)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(h))), len(h)*2), b)
		t.Data = h
	case *ort.StringTensor:
		s, err := x.GetContents()
		if err != nil {
			return nil, err
		}
		t.Data = s
	default:
		return nil, fmt.Errorf("unexpected output value %T", v)
	}
	if t.Len() != lenOf(t.Data) {
		return nil, fmt.Errorf("output has shape %v but %d elements", shape, lenOf(t.Data))
	}
	return t, nil
}

func lenOf(d any) int {
	switch x := d.(type) {
	case []float32:
		return len(x)
	case []float64:
		return len(x)
	case []int8:
		return len(x)
	case []uint8:
		return len(x)
	case []int16:
		return len(x)
	case []uint16:
		return len(x)
	case []int32:
		return len(x)
	case []int64:
		return len(x)
	case []uint32:
		return len(x)
	case []uint64:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	}
	return -1
}
