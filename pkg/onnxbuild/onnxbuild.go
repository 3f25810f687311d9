// Package onnxbuild writes ONNX models from Go without Python or cgo.
//
// It encodes ModelProto by hand with protowire so that tests and demo tooling can produce
// exactly the graphs they need (odd dtypes, dynamic dims, rank-0 outputs, slow chains) and
// check the serving stack against real ONNX Runtime. It covers only what ONNX Runtime needs to
// load a model: no external data, sparse tensors, functions or training info.
//
// It owns the graph types, their validation, the encoding and a set of ready-made models. It
// imports protowire and the standard library only: never pkg/onnx, cgo or anything of the
// server, so that any package's tests and the demo tooling can use it.
package onnxbuild

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// DefaultIRVersion is the ONNX IR version written when Model.IRVersion is zero; IR 8 is the one
// released with opset 17 (ONNX 1.12), so any runtime that runs opset 17 reads it.
const DefaultIRVersion = 8

// DefaultOpset is the ai.onnx opset imported when Model.Opsets does not name the default domain.
const DefaultOpset = 17

// MLDomain is the operator domain of the classic-ML operators such as ZipMap.
const MLDomain = "ai.onnx.ml"

// DType is an element type, numbered as ONNX TensorProto.DataType so it can be written as is.
type DType int32

// Element types supported by the writer; the values are fixed by onnx.proto.
const (
	Float   DType = 1
	Uint8   DType = 2
	Int8    DType = 3
	Uint16  DType = 4
	Int16   DType = 5
	Int32   DType = 6
	Int64   DType = 7
	String  DType = 8
	Bool    DType = 9
	Float16 DType = 10
	Double  DType = 11
	Uint32  DType = 12
	Uint64  DType = 13
)

var dtypeNames = map[DType]string{
	Float: "float32", Uint8: "uint8", Int8: "int8", Uint16: "uint16", Int16: "int16",
	Int32: "int32", Int64: "int64", String: "string", Bool: "bool", Float16: "float16",
	Double: "float64", Uint32: "uint32", Uint64: "uint64",
}

// DTypes lists every element type the writer supports, in onnx.proto order, so tests can
// range over all of them.
func DTypes() []DType {
	return []DType{Float, Uint8, Int8, Uint16, Int16, Int32, Int64, String, Bool, Float16, Double, Uint32, Uint64}
}

// String returns the Go-style name (float32, int64, …) used in test names and messages.
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return "DType(" + strconv.Itoa(int(d)) + ")"
}

// Valid reports whether the writer knows how to encode d.
func (d DType) Valid() bool {
	_, ok := dtypeNames[d]
	return ok
}

// Size is the byte width of one element in raw_data; it is 0 for String, which has no raw form.
func (d DType) Size() int {
	switch d {
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16, Float16:
		return 2
	case Float, Int32, Uint32:
		return 4
	case Int64, Double, Uint64:
		return 8
	}
	return 0
}

// Model is an ONNX ModelProto; zero values get sensible defaults when marshalled.
type Model struct {
	Graph           Graph
	IRVersion       int64 // 0 means DefaultIRVersion
	ProducerName    string
	ProducerVersion string
	Domain          string
	Doc             string
	ModelVersion    int64
	Metadata        map[string]string
	// Opsets maps operator domain to version; "" is ai.onnx and defaults to DefaultOpset.
	Opsets map[string]int64
}

// Graph is an ONNX GraphProto whose nodes must be listed in topological order.
type Graph struct {
	Name         string
	Doc          string
	Nodes        []Node
	Inputs       []ValueInfo
	Outputs      []ValueInfo
	Initializers []Tensor
	// ValueInfo optionally types intermediate values; runtimes infer them anyway.
	ValueInfo []ValueInfo
}

// Node is one operator application; an empty string in Inputs skips an optional input.
type Node struct {
	Name    string
	OpType  string
	Domain  string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

// ValueInfo types a graph input or output.
//
// A tensor has DType and Dims, where -1 is a dynamic dimension. Dims nil with Scalar set is a
// rank-0 tensor; Dims nil without it leaves the shape unknown. A non-zero MapKey makes the value
// a map from MapKey to tensors of DType (as ONNX-ML writes it), and Sequence wraps the whole
// type in a sequence, which together express ZipMap's seq(map(int64, tensor(float))).
type ValueInfo struct {
	Name     string
	DType    DType
	Dims     []int64
	Scalar   bool
	MapKey   DType
	Sequence bool
}

// DimParam is the symbolic name written for a dynamic dimension at axis i: "N" for the batch
// axis and "N<i>" after it, so two dynamic axes of one value are not declared equal.
func DimParam(i int) string {
	if i == 0 {
		return "N"
	}
	return "N" + strconv.Itoa(i)
}

// Tensor is an ONNX TensorProto, used for initializers and tensor attributes.
//
// Exactly one data field may be set (none for an empty tensor), and it must suit DType as in
// onnx.proto: Floats for Float; Doubles for Double; Int64s for Int64; Uint64s for Uint32 and
// Uint64; Strings for String; Int32s for Int32, Int16, Int8, Uint16, Uint8, Bool and Float16
// (as raw bits). Raw holds little-endian bytes for any type but String.
type Tensor struct {
	Name    string
	DType   DType
	Dims    []int64
	Floats  []float32
	Doubles []float64
	Int32s  []int32
	Int64s  []int64
	Uint64s []uint64
	Strings []string
	Raw     []byte
}

// FloatTensor builds a float32 tensor; nil dims make a scalar.
func FloatTensor(name string, dims []int64, data []float32) Tensor {
	return Tensor{Name: name, DType: Float, Dims: dims, Floats: data}
}

// Int64Tensor builds an int64 tensor; nil dims make a scalar.
func Int64Tensor(name string, dims []int64, data []int64) Tensor {
	return Tensor{Name: name, DType: Int64, Dims: dims, Int64s: data}
}

// AttrType is an ONNX AttributeProto.AttributeType, numbered as in onnx.proto.
type AttrType int32

// Attribute types the writer supports.
const (
	AttrTypeFloat   AttrType = 1
	AttrTypeInt     AttrType = 2
	AttrTypeString  AttrType = 3
	AttrTypeTensor  AttrType = 4
	AttrTypeGraph   AttrType = 5
	AttrTypeFloats  AttrType = 6
	AttrTypeInts    AttrType = 7
	AttrTypeStrings AttrType = 8
)

// Attr is a node attribute; build it with the Attr* constructors so Type matches the value set.
type Attr struct {
	Name    string
	Type    AttrType
	Float   float32
	Int     int64
	Str     string
	Tensor  *Tensor
	Graph   *Graph
	Floats  []float32
	Ints    []int64
	Strings []string
}

// AttrFloat makes a float attribute.
func AttrFloat(name string, v float32) Attr { return Attr{Name: name, Type: AttrTypeFloat, Float: v} }

// AttrInt makes an int attribute, which ONNX also uses for booleans such as keepdims.
func AttrInt(name string, v int64) Attr { return Attr{Name: name, Type: AttrTypeInt, Int: v} }

// AttrString makes a string attribute.
func AttrString(name, v string) Attr { return Attr{Name: name, Type: AttrTypeString, Str: v} }

// AttrTensor makes a tensor attribute, as Constant's "value" needs.
func AttrTensor(name string, t Tensor) Attr {
	return Attr{Name: name, Type: AttrTypeTensor, Tensor: &t}
}

// AttrGraph makes a subgraph attribute, as If and Loop bodies need.
func AttrGraph(name string, g Graph) Attr { return Attr{Name: name, Type: AttrTypeGraph, Graph: &g} }

// AttrFloats makes a list-of-floats attribute.
func AttrFloats(name string, v ...float32) Attr {
	return Attr{Name: name, Type: AttrTypeFloats, Floats: v}
}

// AttrInts makes a list-of-ints attribute.
func AttrInts(name string, v ...int64) Attr { return Attr{Name: name, Type: AttrTypeInts, Ints: v} }

// AttrStrings makes a list-of-strings attribute.
func AttrStrings(name string, v ...string) Attr {
	return Attr{Name: name, Type: AttrTypeStrings, Strings: v}
}

// Marshal checks the model for the mistakes a runtime would reject with a less helpful message
// and encodes it; the bytes depend only on the model, so generated files are reproducible.
func (m *Model) Marshal() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m.encode(), nil
}

// WriteFile marshals the model and replaces path atomically, so a directory watcher never sees
// a half-written model.
func (m *Model) WriteFile(path string) (err error) {
	b, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("write model %q: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write model %q: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("write model %q: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("write model %q: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write model %q: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write model %q: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write model %q: %w", path, err)
	}
	return nil
}

func (m *Model) validate() error {
	for domain, v := range m.Opsets {
		if v <= 0 {
			return fmt.Errorf("opset %q: version %d, want > 0", domain, v)
		}
	}
	return validateGraph(&m.Graph, nil)
}

// validateGraph checks that every value is defined once before use; outer holds the names a
// subgraph may capture from its enclosing scopes.
func validateGraph(g *Graph, outer map[string]bool) error {
	if g.Name == "" {
		return fmt.Errorf("graph has no name")
	}
	defined := make(map[string]bool, len(outer))
	for name := range outer {
		defined[name] = true
	}
	local := map[string]bool{}
	inits := map[string]bool{}
	define := func(kind, name string) error {
		if name == "" {
			return fmt.Errorf("graph %q: %s with empty name", g.Name, kind)
		}
		if local[name] {
			return fmt.Errorf("graph %q: %s %q defined twice", g.Name, kind, name)
		}
		local[name] = true
		defined[name] = true
		return nil
	}
	for _, t := range g.Initializers {
		if err := define("initializer", t.Name); err != nil {
			return err
		}
		inits[t.Name] = true
		if err := t.validate(); err != nil {
			return fmt.Errorf("graph %q: %w", g.Name, err)
		}
	}
	for _, in := range g.Inputs {
		// An input may share its name with an initializer: that makes the initializer a default.
		if inits[in.Name] {
			delete(inits, in.Name)
		} else if err := define("input", in.Name); err != nil {
			return err
		}
		if err := in.validate(); err != nil {
			return fmt.Errorf("graph %q: %w", g.Name, err)
		}
	}
	for i, n := range g.Nodes {
		if n.OpType == "" {
			return fmt.Errorf("graph %q: node %d (%q) has no op type", g.Name, i, n.Name)
		}
		for _, in := range n.Inputs {
			if in != "" && !defined[in] {
				return fmt.Errorf("graph %q: node %q (%s) reads %q before it is defined", g.Name, n.Name, n.OpType, in)
			}
		}
		for _, a := range n.Attrs {
			if err := a.validate(defined); err != nil {
				return fmt.Errorf("graph %q: node %q (%s): %w", g.Name, n.Name, n.OpType, err)
			}
		}
		for _, out := range n.Outputs {
			if out == "" {
				continue
			}
			if err := define("node output", out); err != nil {
				return err
			}
		}
	}
	if len(g.Outputs) == 0 {
		return fmt.Errorf("graph %q has no outputs", g.Name)
	}
	for _, out := range g.Outputs {
		if !defined[out.Name] {
			return fmt.Errorf("graph %q: output %q is never computed", g.Name, out.Name)
		}
		if err := out.validate(); err != nil {
			return fmt.Errorf("graph %q: %w", g.Name, err)
		}
	}
	for _, vi := range g.ValueInfo {
		if err := vi.validate(); err != nil {
			return fmt.Errorf("graph %q: %w", g.Name, err)
		}
	}
	return nil
}

func (v *ValueInfo) validate() error {
	if v.Name == "" {
		return fmt.Errorf("value info with empty name")
	}
	if !v.DType.Valid() {
		return fmt.Errorf("value %q: unsupported dtype %d", v.Name, v.DType)
	}
	if v.MapKey != 0 && !v.MapKey.Valid() {
		return fmt.Errorf("value %q: unsupported map key dtype %d", v.Name, v.MapKey)
	}
	if v.Scalar && len(v.Dims) > 0 {
		return fmt.Errorf("value %q: scalar with dims %v", v.Name, v.Dims)
	}
	for _, d := range v.Dims {
		if d < -1 {
			return fmt.Errorf("value %q: dim %d in %v, want -1 (dynamic) or >= 0", v.Name, d, v.Dims)
		}
	}
	return nil
}

func (t *Tensor) validate() error {
	if !t.DType.Valid() {
		return fmt.Errorf("tensor %q: unsupported dtype %d", t.Name, t.DType)
	}
	n := int64(1)
	for _, d := range t.Dims {
		if d < 0 {
			return fmt.Errorf("tensor %q: dim %d in %v, want >= 0", t.Name, d, t.Dims)
		}
		if d > 0 && n > math.MaxInt64/d {
			return fmt.Errorf("tensor %q: dims %v overflow", t.Name, t.Dims)
		}
		n *= d
	}
	type field struct {
		name  string
		len   int
		types []DType
	}
	fields := []field{
		{"Floats", len(t.Floats), []DType{Float}},
		{"Doubles", len(t.Doubles), []DType{Double}},
		{"Int32s", len(t.Int32s), []DType{Int32, Int16, Int8, Uint16, Uint8, Bool, Float16}},
		{"Int64s", len(t.Int64s), []DType{Int64}},
		{"Uint64s", len(t.Uint64s), []DType{Uint32, Uint64}},
		{"Strings", len(t.Strings), []DType{String}},
	}
	set := ""
	var got int64
	for _, f := range fields {
		if f.len == 0 {
			continue
		}
		if set != "" {
			return fmt.Errorf("tensor %q: both %s and %s set", t.Name, set, f.name)
		}
		set, got = f.name, int64(f.len)
		if !slices.Contains(f.types, t.DType) {
			return fmt.Errorf("tensor %q: %s cannot hold %s", t.Name, f.name, t.DType)
		}
	}
	if len(t.Raw) > 0 {
		if set != "" {
			return fmt.Errorf("tensor %q: both %s and Raw set", t.Name, set)
		}
		size := t.DType.Size()
		if size == 0 {
			return fmt.Errorf("tensor %q: Raw cannot hold %s", t.Name, t.DType)
		}
		if len(t.Raw)%size != 0 {
			return fmt.Errorf("tensor %q: %d raw bytes is not a whole number of %s", t.Name, len(t.Raw), t.DType)
		}
		got = int64(len(t.Raw) / size)
	}
	if got != n {
		return fmt.Errorf("tensor %q: %d elements for dims %v, want %d", t.Name, got, t.Dims, n)
	}
	return nil
}

func (a *Attr) validate(scope map[string]bool) error {
	if a.Name == "" {
		return fmt.Errorf("attribute with empty name")
	}
	switch a.Type {
	case AttrTypeFloat, AttrTypeInt, AttrTypeString, AttrTypeFloats, AttrTypeInts, AttrTypeStrings:
	case AttrTypeTensor:
		if a.Tensor == nil {
			return fmt.Errorf("attribute %q: tensor type without a tensor", a.Name)
		}
		if err := a.Tensor.validate(); err != nil {
			return fmt.Errorf("attribute %q: %w", a.Name, err)
		}
	case AttrTypeGraph:
		if a.Graph == nil {
			return fmt.Errorf("attribute %q: graph type without a graph", a.Name)
		}
		if err := validateGraph(a.Graph, scope); err != nil {
			return fmt.Errorf("attribute %q: %w", a.Name, err)
		}
	default:
		return fmt.Errorf("attribute %q: unsupported type %d", a.Name, a.Type)
	}
	return nil
}
