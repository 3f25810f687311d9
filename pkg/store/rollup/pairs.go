package rollup

import (
	"cmp"
	"context"
	"slices"

	"github.com/understudy-ml/understudy/pkg/store"
)

// PairKey identifies a stored pair found by a search: the backend's own row
// id (unique, and increasing in the order rows were stored), its time and
// its max|Δ| (0 without one).
type PairKey struct {
	ID, TimeUS int64
	Diff       float64
}

// PairRollup is what the search reads of one shadow rollup row.
type PairRollup struct {
	Start int64
	// Disagree counts the pairs that disagree whatever the tolerance:
	// disagreeing classes (DisagreePairs), Errors and Timeouts.
	Disagree int64
	// NoClass counts the ok pairs without a class comparison (OK −
	// ClassPairs), FloatPairs the ok pairs with a float one.
	NoClass, FloatPairs int64
	// MaxAbs is the row's largest max|Δ|, nil if none.
	MaxAbs *float64
	// Diff is the row's max|Δ| histogram in its storage form; a backend
	// may leave it nil when NoClass is 0.
	Diff []byte
}

// PairSource is what the search needs of a backend's snapshot.
type PairSource interface {
	// PairKeys returns at most limit pairs of f's shadow and version (""
	// for every one) whose time is in [lo, hi) µs, ignoring f's Since,
	// Until and Limit. With f.DisagreeOnly, only the pairs whose status
	// is not ok, whose agreement is < 1, or whose agreement is missing and
	// max|Δ| > f.Tolerance. By f.Order: ByTime, by time then ID, both
	// descending; ByDiff, only pairs with a max|Δ|, by max|Δ|, time and ID,
	// all descending.
	PairKeys(ctx context.Context, f store.PairFilter, lo, hi int64, limit int) ([]PairKey, error)
	// PairRollups calls fn with each shadow rollup row of span whose start
	// is in [lo, hi) minutes, of f's shadow and version ("" for every
	// one).
	PairRollups(ctx context.Context, f store.PairFilter, span, lo, hi int64, fn func(*PairRollup) error) error
}

// SearchPairs returns the keys of the pairs f selects, in f's order; the
// backend then reads their records. Newest pairs come from one range scan.
// Disagreements and the largest differences can be rare among millions of
// pairs, so for those the rollups say where a match can be: the search
// descends from days to hours to minutes, only into spans that can hold
// one, and reads the rows of those minutes only: newest first until the
// limit is reached, or, by difference, in order of the spans' largest |Δ|
// until no unread span can beat the pairs found.
func SearchPairs(ctx context.Context, src PairSource, f store.PairFilter) ([]PairKey, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultPairLimit
	}
	s := search{src: src, f: f, limit: limit}
	s.lo, s.hi = MicroRange(f.Since, f.Until)
	switch {
	case !f.DisagreeOnly && f.Order == store.ByTime:
		return src.PairKeys(ctx, f, s.lo, s.hi, limit)
	case f.Order == store.ByTime:
		return s.newest(ctx)
	default:
		return s.largest(ctx)
	}
}

type search struct {
	src    PairSource
	f      store.PairFilter
	lo, hi int64 // µs
	limit  int
}

// node is a rollup span that may hold matching pairs: at most bound, none
// with a max|Δ| above maxAbs.
type node struct {
	span, start int64
	bound       int64
	maxAbs      float64
}

// nodes returns the spans of one length starting in [lo, hi) (minutes)
// that may hold pairs matching f.
func (s *search) nodes(ctx context.Context, span, lo, hi int64) ([]node, error) {
	byStart := map[int64]*node{}
	tolBucket := store.DiffBuckets.Index(s.f.Tolerance)
	err := s.src.PairRollups(ctx, s.f, span, lo, hi, func(r *PairRollup) error {
		bound := r.FloatPairs
		if s.f.DisagreeOnly {
			// Pairs without a class output disagree above the tolerance:
			// at most those in its bucket and above.
			var above int64
			if r.NoClass > 0 {
				if err := store.DecodeSparse(r.Diff, func(i int, n int64) error {
					if i >= tolBucket {
						above += n
					}
					return nil
				}); err != nil {
					return err
				}
			}
			bound = r.Disagree + min(r.NoClass, above)
		}
		n := byStart[r.Start]
		if n == nil {
			n = &node{span: span, start: r.Start}
			byStart[r.Start] = n
		}
		n.bound += bound
		if r.MaxAbs != nil {
			n.maxAbs = max(n.maxAbs, *r.MaxAbs)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]node, 0, len(byStart))
	for _, n := range byStart {
		if n.bound > 0 {
			out = append(out, *n)
		}
	}
	return out, nil
}

// roots are the nodes covering the search's window.
func (s *search) roots(ctx context.Context) ([]node, error) {
	var out []node
	for _, seg := range Cover(MinuteOf(s.lo), MinuteOf(s.hi-1)+1, Spans) {
		ns, err := s.nodes(ctx, seg.Span, seg.Lo, seg.Hi)
		if err != nil {
			return nil, err
		}
		out = append(out, ns...)
	}
	return out, nil
}

// children are the nodes of the next finer span inside n.
func (s *search) children(ctx context.Context, n node) ([]node, error) {
	return s.nodes(ctx, Finer(n.span), n.start, n.start+n.span)
}

// minutePairs reads the pairs in minute n, within the window.
func (s *search) minutePairs(ctx context.Context, n node, limit int) ([]PairKey, error) {
	return s.src.PairKeys(ctx, s.f, max(s.lo, n.start*60e6), min(s.hi, (n.start+1)*60e6), limit)
}

// newest walks the nodes newest first, depth first.
func (s *search) newest(ctx context.Context) ([]PairKey, error) {
	var found []PairKey
	var visit func(ns []node) error
	visit = func(ns []node) error {
		slices.SortFunc(ns, func(a, b node) int { return cmp.Compare(b.start, a.start) })
		for _, n := range ns {
			if len(found) >= s.limit {
				return nil
			}
			if n.span == 1 {
				ks, err := s.minutePairs(ctx, n, s.limit-len(found))
				if err != nil {
					return err
				}
				found = append(found, ks...)
				continue
			}
			kids, err := s.children(ctx, n)
			if err != nil {
				return err
			}
			if err := visit(kids); err != nil {
				return err
			}
		}
		return nil
	}
	roots, err := s.roots(ctx)
	if err != nil {
		return nil, err
	}
	return found, visit(roots)
}

// largest takes nodes in order of their largest |Δ|, expanding them down
// to minutes, until no node left can beat the limit-th pair found.
func (s *search) largest(ctx context.Context) ([]PairKey, error) {
	queue, err := s.roots(ctx)
	if err != nil {
		return nil, err
	}
	var found []PairKey
	for len(queue) > 0 {
		// The queue stays short (a few dozen nodes), so a scan for the
		// largest beats a heap.
		i := 0
		for j, n := range queue {
			if n.maxAbs > queue[i].maxAbs || n.maxAbs == queue[i].maxAbs && n.start > queue[i].start {
				i = j
			}
		}
		n := queue[i]
		queue = slices.Delete(queue, i, i+1)
		if len(found) >= s.limit && n.maxAbs <= found[s.limit-1].Diff {
			break
		}
		if n.span > 1 {
			kids, err := s.children(ctx, n)
			if err != nil {
				return nil, err
			}
			queue = append(queue, kids...)
			continue
		}
		ks, err := s.minutePairs(ctx, n, s.limit)
		if err != nil {
			return nil, err
		}
		found = append(found, ks...)
		slices.SortStableFunc(found, func(a, b PairKey) int {
			return cmp.Or(cmp.Compare(b.Diff, a.Diff), cmp.Compare(b.TimeUS, a.TimeUS), cmp.Compare(b.ID, a.ID))
		})
		found = found[:min(len(found), s.limit)]
	}
	return found, nil
}
