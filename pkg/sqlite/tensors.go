package sqlite

import "github.com/understudy-ml/understudy/pkg/store"

// Since migration 00004 the tensor columns hold the binary stored form, and
// older rows JSON; the store contract's records carry JSON. These turn
// what a read scanned into the contract's fields.

// tensorsJSON replaces the stored tensors in *s, in either form, with their
// JSON form ("" stays "").
func tensorsJSON(s ...*string) error {
	for _, p := range s {
		if !store.IsStoredBinary([]byte(*p)) {
			continue
		}
		j, err := store.TensorsJSON([]byte(*p))
		if err != nil {
			return err
		}
		*p = string(j)
	}
	return nil
}

// storedInputs turns the scanned inputs columns into the contract's fields:
// JSON, and the hash and size of that JSON (see store.StoredInputs).
func storedInputs(inputs *string, valid bool, sha256Hex *string, size *int) (err error) {
	var raw []byte
	if valid {
		raw = []byte(*inputs)
	}
	*inputs, *sha256Hex, *size, err = store.StoredInputs(raw, *sha256Hex, *size)
	return err
}
