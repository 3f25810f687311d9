package rollup

import (
	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// A writer counts each row it commits at every span, in a Batch, and adds
// the batch to the stored rollups in the same transaction as the rows: the
// counts below are then upserted (added to the stored ones) and the
// histograms merged with the stored ones by store.MergeEncoded. Rows that
// were not inserted (duplicates, failures) must not be counted.

// Prediction is what the rollups count of one stored prediction.
type Prediction struct {
	Model, Version string
	TimeUS         int64 // the stored time, unix µs
	OK             bool  // status ok
	// CPUUS is the run's CPU time when HasCPU.
	CPUUS  int64
	HasCPU bool
}

// PredictionOf returns the rollup facts of p, stored at timeUS.
func PredictionOf(p *understudy.Prediction, timeUS int64) Prediction {
	return Prediction{Model: p.Model, Version: p.Version, TimeUS: timeUS, OK: p.Status == understudy.StatusOK,
		CPUUS: p.CPU.Microseconds(), HasCPU: p.CPU > 0}
}

// Shadow is what the rollups count of one stored shadow result. A writer
// computes it when the row is handed over, on the caller's goroutine, so
// that the one writer does less.
type Shadow struct {
	Shadow, Version, Primary, PrimaryVersion string
	// Origin is the stored origin (understudy.StoredOrigin): rollups are
	// kept per origin, so that a report can read one.
	Origin            string
	TimeUS            int64 // the stored time, unix µs
	Status            string
	LatencyUS         int64
	PrimaryLatencyUS  int64 // when HasPrimaryLatency
	HasPrimaryLatency bool
	CPUUS             int64 // when HasCPU
	HasCPU            bool
	// Agreement is the comparison's, when HasAgreement; ClassRows and
	// AgreeRows count the rows of its first class output, and
	// PrimaryClasses and ShadowClasses are their classes, when known.
	Agreement                     float64
	HasAgreement                  bool
	ClassRows, AgreeRows          int64
	PrimaryClasses, ShadowClasses []int64
	// MaxAbsDiff is the comparison's, when HasMaxAbsDiff. SumAbs and SumSq
	// are over Elements elements, when HasSums.
	MaxAbsDiff    float64
	HasMaxAbsDiff bool
	Elements      int64
	SumAbs, SumSq float64
	HasSums       bool
}

// ShadowOf returns the rollup facts of s, stored at timeUS.
func ShadowOf(s *understudy.ShadowResult, timeUS int64) Shadow {
	c := &s.Compare
	r := Shadow{Shadow: s.Shadow, Version: s.Version, Primary: s.Primary, PrimaryVersion: s.PrimaryVersion, Origin: understudy.StoredOrigin(s.Origin),
		TimeUS: timeUS, Status: s.Status, LatencyUS: s.Latency.Microseconds(),
		PrimaryLatencyUS: s.PrimaryLatency.Microseconds(), HasPrimaryLatency: s.PrimaryLatency > 0,
		CPUUS: s.CPU.Microseconds(), HasCPU: s.CPU > 0}
	if c.MaxAbsDiff != nil {
		r.MaxAbsDiff, r.HasMaxAbsDiff = *c.MaxAbsDiff, true
		// A pair stored without its element count is left out of the sums.
		if c.Elements > 0 && c.MeanAbsDiff != nil && c.SumSqDiff != nil {
			r.Elements, r.HasSums = int64(c.Elements), true
			r.SumAbs, r.SumSq = *c.MeanAbsDiff*float64(c.Elements), *c.SumSqDiff
		}
	}
	if c.Agreement == nil {
		return r
	}
	r.Agreement, r.HasAgreement = *c.Agreement, true
	// The class counts come from the comparison's first class output, the
	// one its Agreement comes from. A comparison that has an Agreement but
	// no such output counts as one row.
	for _, oc := range c.Outputs {
		if oc.Kind != understudy.KindClass || oc.Rows <= 0 {
			continue
		}
		r.ClassRows, r.AgreeRows = int64(oc.Rows), int64(oc.Agree)
		if len(oc.PrimaryClasses) == oc.Rows && len(oc.ShadowClasses) == oc.Rows {
			r.PrimaryClasses, r.ShadowClasses = append([]int64(nil), oc.PrimaryClasses...), append([]int64(nil), oc.ShadowClasses...)
		}
		return r
	}
	r.ClassRows = 1
	if *c.Agreement == 1 {
		r.AgreeRows = 1
	}
	if c.PrimaryClass != nil && c.ShadowClass != nil {
		r.PrimaryClasses, r.ShadowClasses = []int64{*c.PrimaryClass}, []int64{*c.ShadowClass}
	}
	return r
}

// ShadowKey names a shadow rollup row.
type ShadowKey struct {
	Shadow, Version, Primary, PrimaryVersion string
	Origin                                   string
	Span, Start                              int64
}

// ShadowDelta is what a batch adds to one shadow rollup row; the fields
// are those of store.ShadowCounts.
type ShadowDelta struct {
	Pairs, OK, Errors, Timeouts                     int64
	ClassPairs, DisagreePairs, ClassRows, AgreeRows int64
	FloatPairs, Elements                            int64
	SumAbs, SumSq                                   float64
	MaxAbs                                          float64 // when HasMaxAbs
	HasMaxAbs                                       bool
	CPUUS, CPURuns                                  int64
	diff, latency, primaryLatency                   []int // bucket indexes
}

// Histograms returns the batch's bucket counts of max|Δ|, latency and the
// primary's latency, to merge into the stored ones. It sorts the delta's
// indexes in place.
func (d *ShadowDelta) Histograms() (diff, latency, primaryLatency store.Sparse) {
	return store.SparseOf(d.diff), store.SparseOf(d.latency), store.SparseOf(d.primaryLatency)
}

// ConfusionKey names one cell of a confusion rollup.
type ConfusionKey struct {
	Shadow, Version           string
	Origin                    string
	Span, Start               int64
	PrimaryClass, ShadowClass int64
}

// PrimaryKey names a primary rollup row.
type PrimaryKey struct {
	Model, Version string
	Span, Start    int64
}

// PrimaryDelta is what a batch adds to one primary rollup row.
type PrimaryDelta struct {
	Requests, Errors, CPUUS, CPURuns int64
}

// ReplicaKey names one replica's counts of one minute.
type ReplicaKey struct {
	Replica string
	Minute  int64
}

// ReplicaDelta is what a batch adds to one replica's minute: the fields of
// store.ReplicaCounts.
type ReplicaDelta struct {
	Requests, Errors, Pairs int64
}

// Batch accumulates the rollups of one transaction's rows.
type Batch struct {
	Shadows   map[ShadowKey]*ShadowDelta
	Confusion map[ConfusionKey]int64
	Primaries map[PrimaryKey]*PrimaryDelta
	// Replica is the id of the replica writing the batch, and Replicas
	// its rows per minute.
	Replica  string
	Replicas map[ReplicaKey]*ReplicaDelta
}

// NewBatch returns an empty batch of the rows replica writes.
func NewBatch(replica string) *Batch {
	return &Batch{Shadows: map[ShadowKey]*ShadowDelta{}, Confusion: map[ConfusionKey]int64{}, Primaries: map[PrimaryKey]*PrimaryDelta{},
		Replica: replica, Replicas: map[ReplicaKey]*ReplicaDelta{}}
}

// replicaMinute returns the replica's delta of a minute.
func (b *Batch) replicaMinute(minute int64) *ReplicaDelta {
	k := ReplicaKey{b.Replica, minute}
	d := b.Replicas[k]
	if d == nil {
		d = &ReplicaDelta{}
		b.Replicas[k] = d
	}
	return d
}

// AddPrediction counts a stored prediction at every span.
func (b *Batch) AddPrediction(r *Prediction) {
	minute := MinuteOf(r.TimeUS)
	rd := b.replicaMinute(minute)
	rd.Requests++
	if !r.OK {
		rd.Errors++
	}
	for _, span := range Spans {
		k := PrimaryKey{r.Model, r.Version, span, StartOf(minute, span)}
		d := b.Primaries[k]
		if d == nil {
			d = &PrimaryDelta{}
			b.Primaries[k] = d
		}
		d.Requests++
		if !r.OK {
			d.Errors++
		}
		if r.HasCPU {
			d.CPUUS += r.CPUUS
			d.CPURuns++
		}
	}
}

// AddShadow counts a stored shadow result at every span.
func (b *Batch) AddShadow(r *Shadow) {
	minute := MinuteOf(r.TimeUS)
	b.replicaMinute(minute).Pairs++
	lat, plat, diff := -1, -1, -1
	if r.Status == understudy.StatusOK {
		lat = store.LatencyBuckets.Index(float64(r.LatencyUS))
		if r.HasPrimaryLatency {
			plat = store.LatencyBuckets.Index(float64(r.PrimaryLatencyUS))
		}
		if r.HasMaxAbsDiff {
			diff = store.DiffBuckets.Index(r.MaxAbsDiff)
		}
	}
	for _, span := range Spans {
		start := StartOf(minute, span)
		k := ShadowKey{r.Shadow, r.Version, r.Primary, r.PrimaryVersion, r.Origin, span, start}
		d := b.Shadows[k]
		if d == nil {
			d = &ShadowDelta{}
			b.Shadows[k] = d
		}
		d.add(r, lat, plat, diff)
		if r.Status == understudy.StatusOK && r.HasAgreement {
			for i := range r.PrimaryClasses {
				b.Confusion[ConfusionKey{r.Shadow, r.Version, r.Origin, span, start, r.PrimaryClasses[i], r.ShadowClasses[i]}]++
			}
		}
	}
}

// add counts r, whose histogram buckets are given (-1 for none).
func (d *ShadowDelta) add(r *Shadow, lat, plat, diff int) {
	d.Pairs++
	if r.HasCPU {
		d.CPUUS += r.CPUUS
		d.CPURuns++
	}
	switch r.Status {
	case understudy.StatusOK:
		d.OK++
	case understudy.StatusTimeout:
		d.Timeouts++
		return
	default:
		d.Errors++
		return
	}
	d.latency = append(d.latency, lat)
	if plat >= 0 {
		d.primaryLatency = append(d.primaryLatency, plat)
	}
	if r.HasAgreement {
		d.ClassPairs++
		if r.Agreement < 1 {
			d.DisagreePairs++
		}
		d.ClassRows += r.ClassRows
		d.AgreeRows += r.AgreeRows
	}
	if r.HasMaxAbsDiff {
		d.FloatPairs++
		d.diff = append(d.diff, diff)
		if !d.HasMaxAbs || r.MaxAbsDiff > d.MaxAbs {
			d.MaxAbs, d.HasMaxAbs = r.MaxAbsDiff, true
		}
		if r.HasSums {
			d.Elements += r.Elements
			d.SumAbs += r.SumAbs
			d.SumSq += r.SumSq
		}
	}
}
