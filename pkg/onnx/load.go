package onnx

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file creates sessions: device, options, the CUDA check and Load.

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
	session.slots = make([]chan *slot, slotRows(sig))
	for i := range session.slots {
		session.slots[i] = make(chan *slot, slotsFree)
	}
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
