package main

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/understudy-ml/understudy/pkg/store"
	"github.com/understudy-ml/understudy/pkg/understudy"
)

// This file saves the deployment (the primary, the rollback stack and the
// shadow settings) off the registry's lock. Unlike a model event, a
// deployment that is not saved is not merely missing from a list: after a
// restart, or on the other replicas of a shared store, a different primary
// would serve. So the newest one is retried until the store takes it.

// deploySaver keeps the newest deployment not yet saved.
type deploySaver struct {
	st   store.Store
	log  zerolog.Logger
	mu   sync.Mutex
	next *understudy.Deployment
	kick chan struct{}
	quit chan struct{}
	done chan struct{}
}

func newDeploySaver(st store.Store, log zerolog.Logger) *deploySaver {
	s := &deploySaver{st: st, log: log, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// save queues d, replacing any older deployment not saved yet; it never
// blocks the registry.
func (s *deploySaver) save(d understudy.Deployment) {
	s.mu.Lock()
	s.next = &d
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// take returns the deployment to save, or nil.
func (s *deploySaver) take() *understudy.Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.next
	s.next = nil
	return d
}

// putBack keeps d for another try unless a newer deployment came meanwhile.
func (s *deploySaver) putBack(d *understudy.Deployment) {
	s.mu.Lock()
	if s.next == nil {
		s.next = d
	}
	s.mu.Unlock()
}

func (s *deploySaver) run() {
	defer close(s.done)
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-s.quit:
			return
		case <-s.kick:
		}
		for d := s.take(); d != nil; d = s.take() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := s.st.SaveDeployment(ctx, *d)
			cancel()
			if err == nil {
				backoff = 100 * time.Millisecond
				continue
			}
			s.putBack(d)
			s.log.Error().Err(err).Dur("retry_in", backoff).Msg("could not save the deployment; retrying")
			select {
			case <-s.quit:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// stop ends the retries and makes one last attempt within ctx.
func (s *deploySaver) stop(ctx context.Context) {
	if s == nil {
		return
	}
	close(s.quit)
	<-s.done
	if d := s.take(); d != nil {
		if err := s.st.SaveDeployment(ctx, *d); err != nil {
			s.log.Error().Err(err).Msg("shut down with the newest deployment not saved: after a restart, the previous one serves")
		}
	}
}

// flush saves the newest deployment now, as start-up does so that the
// store holds its choice before the first request; a failure is left to the
// retries.
func (s *deploySaver) flush(ctx context.Context) {
	if d := s.take(); d != nil {
		if err := s.st.SaveDeployment(ctx, *d); err != nil {
			s.putBack(d)
			s.save(*d)
		}
	}
}
