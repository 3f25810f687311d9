package understudy

import (
	"hash/fnv"
	"time"
)

// This file is the canary mode's vocabulary: a shadow in canary mode
// answers a weighted share of users itself (chosen by a stable hash of a
// key), guarded so that its failures fall back to the primary.

// Model modes.
const (
	ModeShadow = "shadow"
	ModeCanary = "canary"
)

// Who answered a request, as stored with predictions and pairs.
const (
	ServedPrimary   = "primary"
	ServedCandidate = "candidate"
	// ServedFallback is a request routed to the candidate that failed or
	// timed out there, so that the primary answered on the request path.
	ServedFallback = "fallback"
)

// EventCanaryStopped records that the guard set a canary's weight to 0.
const EventCanaryStopped = "canary_stopped"

// Canary defaults.
const (
	DefaultMaxErrorRate = 0.01
	DefaultCanaryWindow = 100
)

// CanarySettings are the persisted canary part of a model's settings.
type CanarySettings struct {
	// Mode is ModeShadow (also "") or ModeCanary.
	Mode string `json:"mode,omitempty"`
	// Weight is the share of keys the canary answers, 0 to 1.
	Weight float64 `json:"weight,omitempty"`
	// MaxErrorRate is the share of failed canary requests, over the last
	// Window, beyond which the guard stops the canary; 0 means the default.
	MaxErrorRate float64 `json:"max_error_rate,omitempty"`
	// Window is how many of the canary's last requests the guard looks
	// at; 0 means the default.
	Window int `json:"window,omitempty"`
	// StopOn names the report's verdict checks (agreement, latency,
	// errors, accuracy) whose failure stops the canary too, once the
	// verdict has its minimum of pairs.
	StopOn []string `json:"stop_on,omitempty"`
	// Steps are the weights of a progressive rollout, ascending: after
	// StepAfterPairs new pairs at one step with the verdict ready, the
	// weight moves to the next, and after the last the canary is promoted.
	Steps          []float64 `json:"steps,omitempty"`
	StepAfterPairs int64     `json:"step_after_pairs,omitempty"`
	// StepPairs is the canary's count of pairs when its current step
	// began; -1 until the rollout has read it.
	StepPairs int64 `json:"step_pairs,omitempty"`
	// Stopped is why the guard stopped the canary; it holds, with the
	// weight at 0, until an admin sets a weight again.
	Stopped string `json:"stopped,omitempty"`
}

// StopChecks are the verdict checks a canary can be stopped on.
var StopChecks = []string{"agreement", "latency", "errors", "accuracy"}

// CanaryPatch changes some canary settings; nil fields stay.
type CanaryPatch struct {
	Mode         *string   `json:"mode"`
	Weight       *float64  `json:"weight"`
	MaxErrorRate *float64  `json:"max_error_rate"`
	Window       *int      `json:"window"`
	StopOn       *[]string `json:"stop_on"`
	// Steps and StepAfterPairs start a progressive rollout.
	Steps          *[]float64 `json:"steps"`
	StepAfterPairs *int64     `json:"step_after_pairs"`
}

// Empty reports whether the patch changes nothing.
func (p CanaryPatch) Empty() bool {
	return p.Mode == nil && p.Weight == nil && p.MaxErrorRate == nil && p.Window == nil && p.StopOn == nil && p.Steps == nil && p.StepAfterPairs == nil
}

// CanaryInfo is a canary's settings and counts since it was loaded, for
// GET /models.
type CanaryInfo struct {
	CanarySettings
	// Routed counts requests routed to the candidate, Answered those it
	// answered and Fallbacks those the primary answered after it failed.
	Routed    int64 `json:"routed"`
	Answered  int64 `json:"answered"`
	Fallbacks int64 `json:"fallbacks"`
	// Stops counts the guard's stops.
	Stops int64 `json:"stops"`
	// AnsweredShare is the share of all requests that the candidate
	// answered, over the requests that came while its weight was above 0.
	AnsweredShare float64 `json:"answered_share"`
	// WindowErrors and WindowSize are the guard's sliding window now.
	WindowErrors int `json:"window_errors"`
	WindowSize   int `json:"window_size"`
}

// CanaryRoute is the canary now taking a share of traffic, as the request
// path sees it.
type CanaryRoute struct {
	Model   *ServingModel
	Weight  float64
	Timeout time.Duration
	// Release gives the model back; call it when the request is done.
	Release func()
	// Outcome records one routed request: answered, or fell back.
	Outcome func(answered bool)
}

// KeyFraction maps a routing key to [0, 1), stably across processes and
// restarts, so that a key keeps its model while the weight is unchanged and
// raising the weight only adds keys.
func KeyFraction(key string) float64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	// FNV leaves the high bits poorly mixed for keys that differ only at
	// the end (user-1, user-2…); murmur3's finaliser spreads them.
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return float64(x>>11) / (1 << 53)
}

// StoredServedBy is who answered a request as the stores record it: ""
// means the primary, as for every request not routed to a canary.
func StoredServedBy(s string) string {
	if s == "" {
		return ServedPrimary
	}
	return s
}
