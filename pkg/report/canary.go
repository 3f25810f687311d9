package report

import (
	"context"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file is the report's canary figures. A canary's pairs keep their
// meaning (agreement, accuracy and the rest compare it with the primary,
// whoever answered the user); what canary mode adds is who answered how
// much of the window, the fallbacks, and the guard's stops.

// CanaryReport is a canary's part of the window. Mode, Weight and Stopped
// are the live settings, filled in by the server, not from the store.
type CanaryReport struct {
	Mode    string  `json:"mode"`
	Weight  float64 `json:"weight"`
	Stopped string  `json:"stopped,omitempty"`
	// Answered counts the window's requests the canary answered and
	// Fallbacks those routed to it that the primary answered after it
	// failed or timed out.
	Answered  int64 `json:"answered"`
	Fallbacks int64 `json:"fallbacks"`
	// AnsweredShare is Answered over all the window's requests, and
	// PrimaryShare the rest: what the primary answered.
	AnsweredShare float64 `json:"answered_share"`
	PrimaryShare  float64 `json:"primary_share"`
	// Stops counts the guard's canary_stopped events in the window.
	Stops int `json:"stops"`
}

// canaries fills each shadow's CanaryReport from the window's served
// counts and stop events.
func (b *builder) canaries(ctx context.Context, db store.Reader) error {
	r := b.r
	counts, err := b.snap.ServedCounts(ctx, r.From, r.To)
	if err != nil {
		return err
	}
	byRef := map[understudy.ModelRef]store.ServedCounts{}
	for _, c := range counts {
		byRef[understudy.ModelRef{Name: c.Model, Version: c.Version}] = c
	}
	for i := range r.Shadows {
		sr := &r.Shadows[i]
		c, ok := byRef[understudy.ModelRef{Name: sr.Name, Version: sr.Version}]
		evs, err := db.Events(ctx, store.EventFilter{Model: sr.Name, Since: r.From, Limit: 10000})
		if err != nil {
			return err
		}
		stops := 0
		for _, ev := range evs {
			if ev.Kind == understudy.EventCanaryStopped && (ev.Version == "" || ev.Version == sr.Version) && (r.To.IsZero() || ev.Time.Before(r.To)) {
				stops++
			}
		}
		if !ok && stops == 0 {
			continue
		}
		cr := &CanaryReport{Answered: c.Answered, Fallbacks: c.Fallbacks, Stops: stops}
		if r.Requests > 0 {
			cr.AnsweredShare = float64(c.Answered) / float64(r.Requests)
			cr.PrimaryShare = 1 - cr.AnsweredShare
		}
		sr.Canary = cr
	}
	return nil
}
