package syncer

import (
	"context"
	"fmt"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// Run is the daemon: it wakes every pollEvery (the database decides what is
// actually due, so waking often is cheap) and runs a pass, never two at
// once. It returns when ctx is cancelled, after the pass in flight has
// finished or released its leases, or with an error if the scheduler cannot
// start.
func (s *Syncer) Run(ctx context.Context, pollEvery time.Duration) error {
	sched, err := gocron.NewScheduler(gocron.WithLocation(time.UTC))
	if err != nil {
		return fmt.Errorf("syncer: scheduler: %w", err)
	}
	_, err = sched.NewJob(
		gocron.DurationJob(pollEvery),
		gocron.NewTask(func(jctx context.Context) {
			sum, err := s.RunOnce(jctx)
			if err != nil {
				s.log.Error().Err(err).Msg("sync pass failed")
				return
			}
			if sum != (Summary{}) {
				s.log.Info().Int("synced", sum.Synced).Int("failed", sum.Failed).
					Int("skipped", sum.Skipped).Msg("sync pass")
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
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return sched.ShutdownWithContext(sctx)
}
