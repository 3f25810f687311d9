package httpapi

import (
	"github.com/understudy-ml/understudy/pkg/report"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file adds the live canary settings (mode, weight, why the guard
// stopped it) to the report's canary figures, which come from the store:
// settings are the server's, not the window's.

func (s *Server) withCanaries(rep *report.Report) {
	if rep == nil || s.Models == nil {
		return
	}
	live := map[understudy.ModelRef]*understudy.CanaryInfo{}
	for _, m := range s.Models.List() {
		if m.Canary != nil {
			live[understudy.ModelRef{Name: m.Name, Version: m.Version}] = m.Canary
		}
	}
	for i := range rep.Shadows {
		sr := &rep.Shadows[i]
		c, ok := live[understudy.ModelRef{Name: sr.Name, Version: sr.Version}]
		if !ok {
			continue
		}
		if sr.Canary == nil {
			sr.Canary = &report.CanaryReport{}
			if rep.Requests > 0 {
				sr.Canary.PrimaryShare = 1
			}
		}
		sr.Canary.Mode, sr.Canary.Weight, sr.Canary.Stopped = c.Mode, c.Weight, c.Stopped
	}
}
