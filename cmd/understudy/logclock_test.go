package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Ensure the cached clock writes the same "time" field as zerolog's own
// Timestamp(), in the same place, and moves on with the second.
func TestSecondClockMatchesTimestamp(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 59, 900_000_000, time.FixedZone("X", 3600))
	zerolog.TimestampFunc = func() time.Time { return now }
	defer func() { zerolog.TimestampFunc = time.Now }()
	var ours, theirs bytes.Buffer
	a := zerolog.New(&ours).Hook(newSecondClock(func() time.Time { return now }))
	b := zerolog.New(&theirs).With().Timestamp().Logger()
	for _, step := range []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, time.Hour} {
		now = now.Add(step)
		a.Info().Str("k", "v").Msg("m")
		b.Info().Str("k", "v").Msg("m")
		if ours.String() != theirs.String() {
			t.Fatalf("at %v:\n ours   %s theirs %s", now, ours.String(), theirs.String())
		}
		var line map[string]any
		if err := json.Unmarshal(ours.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if got, want := line["time"], now.Truncate(time.Second).Format(time.RFC3339); got != want {
			t.Errorf("time %v, want %v", got, want)
		}
		ours.Reset()
		theirs.Reset()
	}
}
