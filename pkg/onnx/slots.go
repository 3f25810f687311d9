package onnx

import (
	"context"
	"errors"
	"fmt"
	"slices"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file keeps a run's input and output values from one run to the next
// (slots), per batch size. Creating the values and releasing them after the
// run cost six cgo calls, 2–3 µs, on a run of the tiny MLP that takes
// about 10 µs in ONNX Runtime. A slot's values are bound to Go memory once;
// a run copies its inputs in and its outputs out, which for the small
// tensors that a request carries costs far less.

// slotRowsMax is the largest batch that gets slots: the requests where the
// values' cost matters against the run are small, and a slot per batch size
// up to this keeps the memory bounded.
const slotRowsMax = 8

// slotBytesMax bounds one slot's memory, inputs and outputs together.
const slotBytesMax = 64 << 10

// slotsFree is how many idle slots a batch size keeps; a run that finds
// none creates one, and one returned to a full list is released.
const slotsFree = 16

// slot is one set of input and output values, for the shapes that the
// signature gives at one batch size.
type slot struct {
	ins, outs []ort.Value
	inShapes  [][]int64
}

// slotRows returns the largest batch that gets slots for sig, or 0 when its
// runs cannot use them: every input and output must be a numeric tensor
// (not float16, which the binding keeps in bytes) whose dimensions after a
// dynamic first are fixed, so that the batch alone tells every shape.
func slotRows(sig understudy.Signature) int64 {
	perRow := int64(0)
	batched := func(info understudy.TensorInfo) bool { return len(info.Dims) > 0 && info.Dims[0] < 0 }
	if slices.ContainsFunc(sig.Outputs, batched) && !slices.ContainsFunc(sig.Inputs, batched) {
		// No input tells the batch that an output's first dimension needs.
		return 0
	}
	for _, list := range [][]understudy.TensorInfo{sig.Inputs, sig.Outputs} {
		for _, info := range list {
			if info.DType == understudy.String || info.DType == understudy.Float16 || len(info.Dims) == 0 {
				return 0
			}
			if slices.ContainsFunc(info.Dims[1:], func(d int64) bool { return d < 0 }) {
				return 0
			}
			n := int64(info.DType.Size())
			for _, d := range info.Dims {
				n *= max(d, 1)
			}
			perRow += n
		}
	}
	return min(slotRowsMax, slotBytesMax/max(perRow, 1))
}

// takeSlot returns a slot whose input shapes are those of inputs, or nil
// when the run must create its own values: the session does not use slots,
// this run's outputs are not presized, or the batch or a shape does not fit.
func (s *Session) takeSlot(inputs map[string]*understudy.Tensor, batch int64, presize bool) *slot {
	rows := max(batch, 1)
	if rows > int64(len(s.slots)) || !presize {
		return nil
	}
	var sl *slot
	select {
	case sl = <-s.slots[rows-1]:
	default:
		var err error
		if sl, err = s.newSlot(batch); err != nil {
			return nil
		}
	}
	for i, info := range s.sig.Inputs {
		if t := inputs[info.Name]; !slices.Equal(t.Shape, sl.inShapes[i]) {
			s.putSlot(sl, rows)
			return nil
		}
	}
	return sl
}

func (s *Session) newSlot(batch int64) (*slot, error) {
	sl := &slot{}
	var err error
	if sl.ins, sl.inShapes, err = slotValues(s.sig.Inputs, batch); err == nil {
		sl.outs, _, err = slotValues(s.sig.Outputs, batch)
	}
	if err != nil {
		sl.destroy()
		return nil, err
	}
	return sl, nil
}

// slotValues allocates one value per tensor, shaped from its dims with the
// batch for a dynamic first dimension; on error, those made so far are in
// values for the caller to destroy.
func slotValues(infos []understudy.TensorInfo, batch int64) (values []ort.Value, shapes [][]int64, err error) {
	for _, info := range infos {
		shape, ok := outputShape(info.Dims, batch)
		if !ok {
			return values, nil, fmt.Errorf("%q: no shape at batch %d", info.Name, batch)
		}
		v, err := emptyValue(info.DType, shape)
		if err != nil {
			return values, nil, err
		}
		values, shapes = append(values, v), append(shapes, shape)
	}
	return values, shapes, nil
}

// putSlot keeps sl for the next run of its batch size, or releases it.
func (s *Session) putSlot(sl *slot, rows int64) {
	select {
	case s.slots[rows-1] <- sl:
	default:
		sl.destroy()
	}
}

func (sl *slot) destroy() {
	for _, v := range sl.ins {
		if v != nil {
			v.Destroy()
		}
	}
	for _, v := range sl.outs {
		if v != nil {
			v.Destroy()
		}
	}
}

// errNoFit says that a run could not go through its slot and must take
// the path without: data that does not fit the slot's values (the old path
// reports it as it always did), or presized outputs that did not fit, which
// that path cures.
var errNoFit = errors.New("the run does not fit its slot")

// runSlot runs inputs through sl, or returns errNoFit. After a failed run
// sl is released, since the run may leave its values in any state.
func (s *Session) runSlot(ctx context.Context, sl *slot, inputs map[string]*understudy.Tensor, rows int64) (map[string]*understudy.Tensor, error) {
	for i, info := range s.sig.Inputs {
		if !fill(sl.ins[i], inputs[info.Name].Data) {
			s.putSlot(sl, rows)
			return nil, errNoFit
		}
	}
	if runErr := s.execute(ctx, sl.ins, sl.outs, rows); runErr != nil {
		sl.destroy()
		if ctx.Err() == nil && presizeMismatch(runErr) {
			return nil, errNoFit
		}
		return nil, s.runError(ctx, runErr)
	}
	result := make(map[string]*understudy.Tensor, len(sl.outs))
	for i, info := range s.sig.Outputs {
		// The slot's memory is the next run's: the answer gets a copy.
		t, err := fromValue(sl.outs[i], info.DType, true)
		if err != nil {
			sl.destroy()
			return nil, fmt.Errorf("output %q: %w", info.Name, err)
		}
		result[info.Name] = t
	}
	s.putSlot(sl, rows)
	return result, nil
}

// fill copies data into v, a tensor of the same type and length.
func fill(v ort.Value, data any) bool {
	switch d := data.(type) {
	case []float32:
		return fillT(v, d)
	case []float64:
		return fillT(v, d)
	case []int8:
		return fillT(v, d)
	case []uint8:
		return fillT(v, d)
	case []int16:
		return fillT(v, d)
	case []uint16:
		return fillT(v, d)
	case []int32:
		return fillT(v, d)
	case []int64:
		return fillT(v, d)
	case []uint32:
		return fillT(v, d)
	case []uint64:
		return fillT(v, d)
	case []bool:
		return fillT(v, d)
	}
	return false
}

func fillT[T ort.TensorData](v ort.Value, d []T) bool {
	t, ok := v.(*ort.Tensor[T])
	if !ok || len(t.GetData()) != len(d) {
		return false
	}
	copy(t.GetData(), d)
	return true
}
