package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"

	"github.com/understudy-ml/understudy/pkg/understudy"
)

const feedbackShape = `{"id": "<request id>", "label": <class or number>} or a list of them`

type feedbackItem struct {
	ID    *string          `json:"id"`
	Label *json.RawMessage `json:"label"`
}

// handleFeedback attaches ground truth to earlier requests.
func (s *Server) handleFeedback(w http.ResponseWriter, r *http.Request) {
	if s.Labels == nil {
		s.error(w, r, understudy.Errorf(understudy.EUNAVAILABLE, "feedback needs the store, which is not configured"))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	var items []feedbackItem
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		err = decodeJSON(body, &items, feedbackShape)
	} else {
		var one feedbackItem
		err = decodeJSON(body, &one, feedbackShape)
		items = []feedbackItem{one}
	}
	if err != nil {
		s.error(w, r, err)
		return
	}
	if len(items) == 0 {
		s.error(w, r, understudy.Errorf(understudy.EINVALID, "the list of labels is empty; want %s", feedbackShape))
		return
	}
	labels := make([]understudy.Label, len(items))
	for i, it := range items {
		where := ""
		if len(items) > 1 {
			where = fmt.Sprintf("item %d: ", i)
		}
		if it.ID == nil || *it.ID == "" {
			s.error(w, r, understudy.Errorf(understudy.EINVALID, `%smissing "id"; want %s`, where, feedbackShape))
			return
		}
		if it.Label == nil {
			s.error(w, r, understudy.Errorf(understudy.EINVALID, `%smissing "label"; want %s`, where, feedbackShape))
			return
		}
		var v float64
		if err := json.Unmarshal(*it.Label, &v); err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			s.error(w, r, understudy.Errorf(understudy.EINVALID, `%s"label" must be a number (a class index or a value), got %s`, where, clipRaw(*it.Label)))
			return
		}
		labels[i] = understudy.Label{ID: *it.ID, Value: v}
	}
	replaced, err := s.Labels(r.Context(), labels)
	if err != nil {
		s.error(w, r, err)
		return
	}
	for _, l := range replaced {
		s.Log.Info().Str("id", l.ID).Float64("label", l.Value).Interface("previous", l.Previous).Msg("label replaced")
	}
	writeJSON(w, map[string]any{"labelled": len(labels), "replaced": len(replaced)})
}

func clipRaw(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
