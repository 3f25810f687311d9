package main

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// This file drives HTTP load through a loadClient: the closed loop (clients
// back to back, for throughput) and the open loop (a fixed rate, for
// latency), and what they measured.

type loadResult struct {
	n    int
	errs int
	rate float64
	lat  []time.Duration
}

func (r loadResult) p(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	slices.Sort(r.lat)
	i := int(float64(len(r.lat)-1) * q / 100)
	return r.lat[i].Round(time.Microsecond)
}

// closedLoop sends requests from c clients back to back for d.
func closedLoop(url string, body []byte, c int, d time.Duration) (loadResult, error) {
	lc, err := newLoadClient(url, body)
	if err != nil {
		return loadResult{}, err
	}
	defer lc.close()
	var mu sync.Mutex
	var res loadResult
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			errs := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := lc.do(); err != nil {
					errs++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errs += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.n = len(res.lat)
	res.rate = float64(res.n) / time.Since(start).Seconds()
	if res.errs > 0 {
		return res, fmt.Errorf("%d requests failed", res.errs)
	}
	return res, nil
}

// openLoop sends requests at a fixed rate for d, measuring each latency
// from its scheduled start so that a stalled server cannot hide queueing.
func openLoop(lc *loadClient, rate float64, d time.Duration) (loadResult, error) {
	interval := time.Duration(float64(time.Second) / rate)
	total := int(d / interval)
	var mu sync.Mutex
	var res loadResult
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	start := time.Now()
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := lc.do()
			l := time.Since(at)
			mu.Lock()
			if err != nil {
				res.errs++
			} else {
				res.lat = append(res.lat, l)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.n = len(res.lat)
	res.rate = float64(res.n) / time.Since(start).Seconds()
	if res.errs > 0 {
		return res, fmt.Errorf("%d requests failed", res.errs)
	}
	return res, nil
}
