package store

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
)

// The storage form of a histogram is its sparse bucket counts: for each
// bucket with a count, in ascending order, uvarint(index − previous index)
// then uvarint(count). Every backend stores histograms in this form (a BLOB
// in SQLite, a bytea in PostgreSQL), so that one decoder reads them all and
// a rollup row means the same wherever it lives.

// Sparse is a list of bucket counts with ascending indexes, as a writer
// accumulates them for one rollup row.
type Sparse []BucketCount

// BucketCount is the count of one bucket.
type BucketCount struct {
	I int
	N int64
}

// SparseOf turns bucket indexes, in any order, into sorted counts. It sorts
// idx in place.
func SparseOf(idx []int) Sparse {
	if len(idx) == 0 {
		return nil
	}
	slices.Sort(idx)
	var s Sparse
	for _, i := range idx {
		if len(s) > 0 && s[len(s)-1].I == i {
			s[len(s)-1].N++
		} else {
			s = append(s, BucketCount{i, 1})
		}
	}
	return s
}

// Encode appends the storage form of s to dst, skipping empty buckets.
func (s Sparse) Encode(dst []byte) []byte {
	prev := 0
	for _, b := range s {
		if b.N == 0 {
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(b.I-prev))
		dst = binary.AppendUvarint(dst, uint64(b.N))
		prev = b.I
	}
	return dst
}

// DecodeSparse calls f for each bucket count in blob, in ascending order of
// bucket, and stops at the first error f returns.
func DecodeSparse(blob []byte, f func(i int, n int64) error) error {
	prev := 0
	for len(blob) > 0 {
		d, k := binary.Uvarint(blob)
		if k <= 0 {
			return errMalformed
		}
		blob = blob[k:]
		n, k := binary.Uvarint(blob)
		if k <= 0 || d > math.MaxInt32 || n > math.MaxInt64 {
			return errMalformed
		}
		blob = blob[k:]
		prev += int(d)
		if err := f(prev, int64(n)); err != nil {
			return err
		}
	}
	return nil
}

// MergeEncoded returns the storage form of the counts in blob plus those
// in add, which must be sorted by index: what a writer stores when it adds
// a batch's counts to a stored rollup row.
func MergeEncoded(blob []byte, add Sparse) ([]byte, error) {
	var old Sparse
	if err := DecodeSparse(blob, func(i int, n int64) error {
		old = append(old, BucketCount{i, n})
		return nil
	}); err != nil {
		return nil, err
	}
	out := make(Sparse, 0, len(old)+len(add))
	i, j := 0, 0
	for i < len(old) || j < len(add) {
		switch {
		case j == len(add) || (i < len(old) && old[i].I < add[j].I):
			out = append(out, old[i])
			i++
		case i == len(old) || add[j].I < old[i].I:
			out = append(out, add[j])
			j++
		default:
			out = append(out, BucketCount{old[i].I, old[i].N + add[j].N})
			i++
			j++
		}
	}
	return out.Encode(make([]byte, 0, 3*len(out))), nil
}

// AddEncoded adds counts in their storage form.
func (h *Histogram) AddEncoded(blob []byte) error {
	// The decoding loop of DecodeSparse, inlined: reports read it for
	// every minute of their window.
	i := 0
	for len(blob) > 0 {
		d, k := binary.Uvarint(blob)
		if k <= 0 {
			return errMalformed
		}
		blob = blob[k:]
		n, k := binary.Uvarint(blob)
		if k <= 0 {
			return errMalformed
		}
		blob = blob[k:]
		if i += int(d); d > uint64(len(h.Counts)) || i >= len(h.Counts) || n > math.MaxInt64 {
			return errMalformed
		}
		h.Counts[i] += int64(n)
		h.Total += int64(n)
	}
	return nil
}

var errMalformed = errors.New("histogram: malformed")
