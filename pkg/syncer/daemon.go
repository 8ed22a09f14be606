package syncer

import (
	"context"
	"fmt"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// Run is the daemon. One dispatcher (see dispatch) keeps up to Concurrency
// syncs in flight and leases more the moment a slot frees; it also looks
// for due work whenever wake delivers (the api NOTIFYs on new connections
// and "sync now") and at every poll, every pollEvery (the database decides
// what is actually due, so polling often is cheap). The poll also runs the
// chores (reminders, key-access checks, the due gauge). When ctx ends it
// stops leasing, lets the syncs in flight finish or release their leases
// within ShutdownGrace, and returns nil; it returns an error only if the
// scheduler cannot start or stop.
func (s *Syncer) Run(ctx context.Context, pollEvery time.Duration, wake <-chan struct{}) error {
	sched, err := gocron.NewScheduler(gocron.WithLocation(time.UTC), gocron.WithStopTimeout(15*time.Second))
	if err != nil {
		return fmt.Errorf("syncer: scheduler: %w", err)
	}
	// Polls coalesce: one pending poll is as good as several.
	poll := make(chan struct{}, 1)
	_, err = sched.NewJob(
		gocron.DurationJob(pollEvery),
		gocron.NewTask(func(jctx context.Context) {
			s.chores(jctx)
			select {
			case poll <- struct{}{}:
			default:
			}
		}),
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
		gocron.WithStartAt(gocron.WithStartImmediately()),
		gocron.WithContext(ctx),
	)
	if err != nil {
		return fmt.Errorf("syncer: schedule: %w", err)
	}
	sched.Start()
	sum, _ := s.dispatch(ctx, wake, poll, false)
	if err := sched.Shutdown(); err != nil {
		return fmt.Errorf("syncer: shutdown: %w", err)
	}
	s.log.Info().Int("synced", sum.Synced).Int("failed", sum.Failed).Int("skipped", sum.Skipped).Msg("stopped")
	return nil
}
