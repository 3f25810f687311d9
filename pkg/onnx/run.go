package onnx

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

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
	// slots holds idle input and output values per batch size, 1 to
	// len(slots); empty when the signature cannot use them (slots.go).
	slots []chan *slot
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
	for _, free := range s.slots {
	drain:
		for {
			select {
			case sl := <-free:
				sl.destroy()
			default:
				break drain
			}
		}
	}
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
	var batch int64 = -1
	// ragged says that inputs declared with a dynamic first dimension came
	// with different ones: the batch then tells no output's size, and this
	// run neither presizes nor uses a slot. Without this, one such request
	// to a model whose inputs are independent turned presizing off for
	// good.
	ragged := false
	for _, info := range s.sig.Inputs {
		t, ok := inputs[info.Name]
		if !ok {
			return nil, understudy.Errorf(understudy.EINVALID, "missing input %q", info.Name)
		}
		if t.DType != info.DType {
			return nil, understudy.Errorf(understudy.EINVALID, "input %q is %v, want %v", info.Name, t.DType, info.DType)
		}
		// The batch is the first dimension of an input that declares it
		// dynamic; a fixed first dimension says nothing about the rows.
		if len(info.Dims) > 0 && info.Dims[0] < 0 && len(t.Shape) > 0 {
			if batch < 0 {
				batch = t.Shape[0]
			} else if t.Shape[0] != batch {
				ragged = true
			}
		}
	}
	// Err, not Done: a request's context makes its Done channel on the
	// first call, an allocation per request for runs that never wait on it.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("run not started: %w", err)
	}
	// The rows of this run, for the measure of short runs.
	rows := max(batch, 1)
	presize := s.presize.Load() && !ragged
	if sl := s.takeSlot(inputs, batch, presize); sl != nil {
		if result, err := s.runSlot(ctx, sl, inputs, rows); !errors.Is(err, errNoFit) {
			return result, err
		}
	}

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
	for i, info := range s.sig.Inputs {
		if ins[i], err = toValue(inputs[info.Name]); err != nil {
			return nil, fmt.Errorf("input %q: %w", info.Name, err)
		}
	}
	presized, err := s.allocateOutputs(outs, batch, presize)
	if err != nil {
		return nil, err
	}
	runErr := s.execute(ctx, ins, outs, rows)
	if runErr != nil && presized && ctx.Err() == nil && presizeMismatch(runErr) {
		// Perhaps an output is not the size its signature suggests: run
		// again with ORT sizing them, and stop presizing if that works.
		if _, err := s.allocateOutputs(outs, batch, false); err != nil {
			return nil, err
		}
		if runErr = s.execute(ctx, ins, outs, rows); runErr == nil {
			s.presize.Store(false)
		}
	}
	runtime.KeepAlive(inputs)
	if runErr != nil {
		return nil, s.runError(ctx, runErr)
	}
	result := make(map[string]*understudy.Tensor, len(outs))
	for i, info := range s.sig.Outputs {
		t, err := fromValue(outs[i], info.DType, false)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", info.Name, err)
		}
		result[info.Name] = t
	}
	return result, nil
}

// execute runs ins into outs once, terminable through RunOptions when ctx
// can end and runs of this many rows are not known to be short, and records
// how long it took. The error is ONNX Runtime's or ctx's, unwrapped.
func (s *Session) execute(ctx context.Context, ins, outs []ort.Value, rows int64) (err error) {
	var ro *ort.RunOptions
	if rows > s.shortBatch.Load() && ctx.Done() != nil {
		if ro, err = s.runOptions(); err != nil {
			return setupError{fmt.Errorf("create run options: %w", err)}
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
	err = s.run(ctx, ins, outs, ro)
	s.observe(rows, time.Since(start))
	if err == nil && ro == nil && ctx.Err() != nil {
		// A short run without the plumbing: the context ended while it ran.
		err = ctx.Err()
	}
	return err
}

// setupError is a failure to set a run up, not the model's.
type setupError struct{ error }

// runError says why a run failed: its context ended, the run could not be
// set up (an internal error, as execute returns it), or the model failed.
func (s *Session) runError(ctx context.Context, err error) error {
	var setup setupError
	if errors.As(err, &setup) {
		return setup.error
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("run terminated: %w", ctxErr)
	}
	return understudy.Errorf(understudy.EMODEL, "the model failed on this input: %s", trimORT(err))
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

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func trimORT(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "Error running network: ")
	return msg
}
