package serving

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCPUSampleEverySixteenthWhenSlow(t *testing.T) {
	var c cpuSampler
	var taken []int
	for i := 1; i <= 160; i++ {
		// 1 ms apart: 16 runs span more than the gap.
		if c.take(epoch.Add(time.Duration(i) * time.Millisecond)) {
			taken = append(taken, i)
		}
	}
	if len(taken) != 10 {
		t.Fatalf("took runs %v, want every 16th of 160 (10)", taken)
	}
	for k, i := range taken {
		if i != 16*(k+1) {
			t.Fatalf("took runs %v, want 16, 32, ..., 160", taken)
		}
	}
}

func TestCPUSampleThinnedWhenFast(t *testing.T) {
	var c cpuSampler
	n := 0
	// 10,000 runs 1 µs apart: 10 ms, so at most three gaps of 4 ms.
	for i := 1; i <= 10000; i++ {
		if c.take(epoch.Add(time.Second + time.Duration(i)*time.Microsecond)) {
			n++
		}
	}
	if n < 2 || n > 3 {
		t.Fatalf("took %d of 10,000 runs in 10 ms, want 2 or 3 (one per %v)", n, cpuSampleGap)
	}
}

func TestCPUSampleConcurrent(t *testing.T) {
	var c cpuSampler
	var n atomic.Int64
	now := epoch.Add(time.Hour)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if c.take(now) {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n.Load() != 1 {
		t.Fatalf("8 goroutines took %d runs at one instant, want 1", n.Load())
	}
}
