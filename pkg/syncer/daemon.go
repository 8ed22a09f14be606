package syncer

import (
	"context"
	"fmt"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// Run is the daemon: it runs a pass every pollEvery (the database decides
// what is actually due, so waking often is cheap) and at once whenever wake
// delivers (the api NOTIFYs on new connections and "sync now"), never two
// passes at a time. When ctx ends it stops leasing, lets the pass in flight
// finish or release its leases within ShutdownGrace, and returns nil; it
// returns an error only if the scheduler cannot start or stop.
func (s *Syncer) Run(ctx context.Context, pollEvery time.Duration, wake <-chan struct{}) error {
	sched, err := gocron.NewScheduler(gocron.WithLocation(time.UTC),
		gocron.WithStopTimeout(s.cfg.ShutdownGrace+15*time.Second))
	if err != nil {
		return fmt.Errorf("syncer: scheduler: %w", err)
	}
	job, err := sched.NewJob(
		gocron.DurationJob(pollEvery),
		gocron.NewTask(func(jctx context.Context) {
			sum, err := s.RunOnce(jctx)
			if err != nil {
				s.log.Error().Err(err).Msg("sync pass failed")
				return
			}
			if sum != (Summary{}) {
				s.log.Info().Int("synced", sum.Synced).Int("failed", sum.Failed).
					Int("skipped", sum.Skipped).Int("duplicates", sum.Duplicates).Msg("sync pass")
			}
		}),
		// A pass already running picks up whatever became due meanwhile
		// (it keeps leasing until nothing is), so a skipped run loses nothing.
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
		gocron.WithStartAt(gocron.WithStartImmediately()),
		gocron.WithContext(ctx),
	)
	if err != nil {
		return fmt.Errorf("syncer: schedule: %w", err)
	}
	sched.Start()
	for {
		select {
		case <-ctx.Done():
			s.log.Info().Msg("stopping: no new leases; waiting for syncs in flight")
			if err := sched.Shutdown(); err != nil {
				return fmt.Errorf("syncer: shutdown: %w", err)
			}
			s.log.Info().Msg("stopped")
			return nil
		case <-wake:
			if err := job.RunNow(); err != nil {
				s.log.Warn().Err(err).Msg("could not start a pass on notification")
			}
		}
	}
}
