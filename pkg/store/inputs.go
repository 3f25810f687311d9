package store

import (
	"crypto/sha256"
	"encoding/hex"
)

// This file gives stored inputs the hash and size the store's records carry.

// StoredInputs turns a prediction's stored inputs columns into the store
// contract's fields (StoredPrediction's Inputs, InputsSHA256, InputsSize):
// the inputs as JSON, and the sha256 and size of that JSON. Since 00004 a
// backend stores inputs within the cap in the binary form with an empty
// hash, and the hash and size are computed here, on read, from the stored
// copy; older rows and rows over the cap keep theirs. raw is nil when the
// inputs were not stored.
func StoredInputs(raw []byte, sha256Hex string, size int) (inputs, sum string, n int, err error) {
	if raw == nil {
		return "", sha256Hex, size, nil
	}
	j, err := TensorsJSON(raw)
	if err != nil {
		return "", sha256Hex, size, err
	}
	if sha256Hex == "" || IsStoredBinary(raw) {
		sha256Hex, size = InputsDigest(j), len(j)
	}
	return string(j), sha256Hex, size, nil
}

// InputsDigest is the hex sha256 of a tensor map's JSON form, the
// inputs_sha256 of the store contract.
func InputsDigest(json []byte) string {
	sum := sha256.Sum256(json)
	return hex.EncodeToString(sum[:])
}
