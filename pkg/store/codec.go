package store

import (
	"encoding/json"
	"fmt"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

// DecodeTensors decodes a stored tensor map in either form: the binary one
// of AppendStoredTensors, or the JSON of EncodeTensors that rows stored
// before migration 00004 hold. NaN and infinities, written in JSON as
// strings, decode back to floats; a tensor stored without its data decodes
// with nil Data.
func DecodeTensors(raw []byte) (map[string]*understudy.Tensor, error) {
	if IsStoredBinary(raw) {
		return decodeStored(raw)
	}
	var stored map[string]*struct {
		DType understudy.DType `json:"dtype"`
		Shape []int64          `json:"shape"`
		Data  json.RawMessage  `json:"data"`
	}
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, fmt.Errorf("decode tensors: %w", err)
	}
	out := make(map[string]*understudy.Tensor, len(stored))
	for name, s := range stored {
		if s == nil {
			out[name] = nil
			continue
		}
		if s.Shape == nil {
			s.Shape = []int64{}
		}
		t, err := decodeTensor(name, s.DType, s.Shape, s.Data)
		if err != nil {
			return nil, fmt.Errorf("decode tensor %q: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// TensorsJSON returns a stored tensor map, in either stored form, as the
// JSON of EncodeTensors: what the store contract's records carry. JSON rows
// come back as they are, without a copy.
func TensorsJSON(raw []byte) ([]byte, error) {
	if !IsStoredBinary(raw) {
		return raw, nil
	}
	m, err := decodeStored(raw)
	if err != nil {
		return nil, err
	}
	return EncodeTensors(m), nil
}
