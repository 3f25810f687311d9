// Package onnx runs models with ONNX Runtime. It is the only package that
// imports onnxruntime_go and so the only one that sees cgo.
//
// It owns the ONNX Runtime environment; session creation (the device and
// session options, the CUDA check, the signature and metadata read at
// load); the conversion of domain tensors to ONNX Runtime values and back;
// and the run, with its cancellation, presized outputs and CPU time. The
// rest of Understudy reaches a model through understudy.LoadedModel and
// understudy.Runner, and cmd passes Runtime.Load to the registry as its
// loader. It imports the domain (pkg/understudy), the binding and
// golang.org/x/sys/unix only: never a store (pkg/store or an adapter), the
// HTTP or gRPC API, pkg/registry or pkg/serving.
package onnx

import (
	"fmt"
	"os"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
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
