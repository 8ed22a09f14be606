// Package syncer leases due connections, opens their keys just long enough to
// call the provider, and stores what the provider reports. It is the only
// place a sealed key becomes plaintext again, and it never does so without
// first recording that it will (fail closed).
package syncer

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokka-dev/tokka/pkg/postgres"
	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Store is the storage the syncer needs; *postgres.DB implements it.
type Store interface {
	LeaseDue(ctx context.Context, owner string, n int, leaseFor time.Duration) ([]postgres.Lease, error)
	RecordKeyUse(ctx context.Context, l postgres.Lease, ev tokka.AuditEvent) error
	CompleteSync(ctx context.Context, l postgres.Lease, r postgres.SyncResult) error
	FailSync(ctx context.Context, l postgres.Lease, status, reason string, next time.Time, ev tokka.AuditEvent) error
	ReleaseLease(ctx context.Context, l postgres.Lease) error
	RenewLease(ctx context.Context, l postgres.Lease, leaseFor time.Duration) error
	RaiseAlert(ctx context.Context, a tokka.Alert) (bool, error)
	RemindKeyRotations(ctx context.Context, days int) (int, error)
	CountDue(ctx context.Context) (int, error)
	CountByStatus(ctx context.Context) (map[string]int, error)
	FlagKeyAccessAnomalies(ctx context.Context, settle time.Duration, allowed []string) (int, error)
	RecordOrganization(ctx context.Context, l postgres.Lease, org provider.Organization, ev tokka.AuditEvent) (string, error)
	AbandonSync(ctx context.Context, l postgres.Lease, ev tokka.AuditEvent) error
}

// AfterSync is told after every successful sync, e.g. to evaluate the user's
// budgets (package budget). Its error is logged; the sync still counts.
type AfterSync interface {
	AfterSync(ctx context.Context, userID string, now time.Time) error
}

// Opener turns a sealed blob back into a key; *keyring.Keyring implements it.
// An Opener that also has a KIDs() []string method (the keyring does) lets the
// syncer tell a tampered blob from one sealed under a key it does not hold.
type Opener interface {
	Open(blob string, b seal.Binding) (*secret.Key, error)
}

// Config tunes the syncer; zero values take the documented defaults.
type Config struct {
	Instance     string        // who is syncing, for leases and audit events
	Interval     time.Duration // SYNC_INTERVAL, default 6h
	Concurrency  int           // SYNC_CONCURRENCY, default 4
	BackfillDays int           // SYNC_BACKFILL_DAYS, default 90
	ResyncDays   int           // SYNC_RESYNC_DAYS, default 3
	LeaseFor     time.Duration // default 10m; a crashed syncer's lease expires after it
	RetryAfter   time.Duration // wait after a transient failure, default 30m
	// KeyRotationReminderDays is KEY_ROTATION_REMINDER_DAYS: a key older
	// than this gets one key_rotation alert. Default 90; negative disables.
	KeyRotationReminderDays int
	// ReminderEvery spaces the reminder checks of a long-running syncer,
	// default 1h; every pass of a new Syncer (syncer once) checks.
	ReminderEvery time.Duration
	// ShutdownGrace is how long in-flight syncs may go on once the pass is
	// told to stop (SIGTERM); then they are cancelled and release their
	// leases. Default 30s.
	ShutdownGrace time.Duration
	// AfterSync, when set, runs after each successful sync.
	AfterSync AfterSync
	// KnownInstances (SYNCER_INSTANCES_ALLOWED) are the instance-name
	// prefixes expected to decrypt keys; a decryption by any other actor
	// raises a key_access alert. Empty: not checked.
	KnownInstances []string
	Now            func() time.Time
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = 6 * time.Hour
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.BackfillDays <= 0 {
		c.BackfillDays = 90
	}
	if c.ResyncDays <= 0 {
		c.ResyncDays = 3
	}
	if c.LeaseFor <= 0 {
		c.LeaseFor = 10 * time.Minute
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 30 * time.Minute
	}
	if c.KeyRotationReminderDays == 0 {
		c.KeyRotationReminderDays = 90
	}
	if c.ReminderEvery <= 0 {
		c.ReminderEvery = time.Hour
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Syncer syncs due connections.
type Syncer struct {
	cfg     Config
	store   Store
	opener  Opener
	clients map[provider.Name]provider.Client
	log     zerolog.Logger
	metrics *Metrics

	reminderMu   sync.Mutex
	lastReminder time.Time
	lastAccess   time.Time
}

// New returns a Syncer. clients must have an entry per provider it may meet.
func New(cfg Config, store Store, opener Opener, clients map[provider.Name]provider.Client, log zerolog.Logger, m *Metrics) *Syncer {
	cfg.defaults()
	return &Syncer{cfg: cfg, store: store, opener: opener, clients: clients, log: log, metrics: m}
}

// Summary counts one pass's outcomes. Duplicates are connections found to
// cover an organisation an older connection of the same user already
// covers: they are not synced (see postgres.RecordOrganization).
type Summary struct {
	Synced, Failed, Skipped, Duplicates int
}

// Outcomes of one connection's sync.
const (
	outcomeSucceeded = "succeeded"
	outcomeInvalid   = "invalid"
	outcomeFailed    = "failed"
	outcomeSealed    = "cannot_open"
	outcomeLeaseLost = "lease_lost"
	outcomeAborted   = "aborted"
	outcomeDuplicate = "duplicate"
)

// RunOnce syncs every connection that is due, then returns. It keeps up to
// Concurrency syncs in flight, leasing more as slots free up, so one slow
// connection holds back only its own slot. When ctx ends it leases nothing
// more; syncs in flight may finish for ShutdownGrace, then are cancelled and
// give their leases back. Provider failures are recorded on their
// connections and counted, not returned; the error is non-nil only when the
// pass itself could not run (database down).
func (s *Syncer) RunOnce(ctx context.Context) (Summary, error) {
	var sum Summary
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(s.cfg.ShutdownGrace, cancelWork) })
	defer stopGrace()

	s.remindRotations(ctx)
	s.checkKeyAccess(ctx)
	if n, err := s.store.CountDue(ctx); err == nil {
		s.metrics.Due.Set(float64(n))
	}
	s.observeConnections(ctx)
	done := make(chan string, s.cfg.Concurrency)
	inflight := 0
	var leaseErr error
	for {
		if free := s.cfg.Concurrency - inflight; free > 0 && ctx.Err() == nil && leaseErr == nil {
			leases, err := s.store.LeaseDue(ctx, s.cfg.Instance, free, s.cfg.LeaseFor)
			if err != nil && ctx.Err() == nil {
				leaseErr = err
				s.log.Error().Err(err).Msg("leasing failed; finishing the syncs in flight")
			}
			for _, l := range leases {
				if l.Takeover {
					s.metrics.LeaseTakeovers.Inc()
				}
				inflight++
				go func() { done <- s.syncOne(work, l) }()
			}
			if len(leases) == 0 && inflight == 0 {
				break
			}
		}
		if inflight == 0 {
			break
		}
		switch <-done {
		case outcomeSucceeded:
			sum.Synced++
		case outcomeLeaseLost, outcomeAborted:
			sum.Skipped++
		case outcomeDuplicate:
			sum.Duplicates++
		default:
			sum.Failed++
		}
		inflight--
	}
	s.metrics.passDone(time.Now(), leaseErr == nil)
	return sum, leaseErr
}

func (s *Syncer) syncOne(ctx context.Context, l postgres.Lease) (outcome string) {
	start := time.Now()
	now := s.cfg.Now()
	log := s.log.With().Str("connection_id", l.ConnectionID).Str("provider", l.Provider).Logger()
	defer func() {
		// Cancelled (shutdown) before the outcome was stored: give the lease
		// back so another syncer need not wait for it to expire. Other
		// failures keep the lease until it expires, which spaces retries.
		if ctx.Err() != nil && outcome != outcomeSucceeded && outcome != outcomeLeaseLost && outcome != outcomeDuplicate {
			if err := s.store.ReleaseLease(context.WithoutCancel(ctx), l); err != nil {
				log.Warn().Err(err).Msg("releasing the lease failed; it will expire")
			}
			outcome = outcomeAborted
		}
		d := time.Since(start)
		s.metrics.observeSync(l.Provider, outcome, d)
		log.Info().Str("outcome", outcome).Dur("duration", d).Msg("sync")
	}()

	backfill := l.BackfilledAt == nil
	days, purpose := s.cfg.ResyncDays, "scheduled sync"
	if backfill {
		days, purpose = s.cfg.BackfillDays, "initial backfill"
	} else if l.Requested {
		purpose = "sync requested by the user"
	}
	window := provider.DayWindow(now, days)
	client, ok := s.clients[provider.Name(l.Provider)]
	if !ok {
		s.fail(ctx, log, l, tokka.StatusError, "this provider is not supported by the syncer", now.Add(s.cfg.Interval), tokka.ActionSyncFailed, "")
		return outcomeFailed
	}

	// Fail closed: the decryption is on the record before the plaintext
	// exists, and only while this syncer still holds the lease (so a deleted
	// or re-leased connection's key is never opened).
	ev := s.event(tokka.ActionKeyDecrypted, tokka.OutcomeSuccess, purpose)
	ev.Detail = "sealed as " + blobLabel(l.SealedKey)
	if err := s.store.RecordKeyUse(ctx, l, ev); err != nil {
		if errors.Is(err, postgres.ErrLeaseLost) {
			s.afterLeaseLost(ctx, log, l, err)
			return outcomeLeaseLost
		}
		s.metrics.AuditFailures.Inc()
		log.Error().Err(err).Msg("audit write failed; key not used")
		return outcomeAborted
	}

	// Keep the lease while the provider calls run longer than one lease;
	// if it is lost anyway (the database was unreachable for a whole lease),
	// stop: another syncer may already own the connection.
	fetchCtx, stopRenewing := s.keepLease(ctx, log, l)
	defer stopRenewing()

	key, err := s.opener.Open(l.SealedKey, seal.Binding{UserID: l.UserID, ConnectionID: l.ConnectionID, Provider: l.Provider})
	if err != nil {
		d := diagnose(l.SealedKey, s.opener)
		s.fail(ctx, log, l, tokka.StatusNeedsReconnect, d.reason, now.Add(s.cfg.Interval), tokka.ActionKeyDecrypted, d.detail)
		s.raiseKeyAccess(ctx, log, l.UserID, l.ConnectionID, l.SealedKey, d)
		return outcomeSealed
	}
	opened := time.Now()
	log.Debug().Str("sealed_as", blobLabel(l.SealedKey)).Int("window_days", window.Days()).Msg("key opened for the provider calls")
	// The deferred wipe also runs if a provider client panics.
	var duplicateOf string
	var recordErr error
	usage, costs, ferr := func() ([]provider.UsageRow, []provider.CostRow, error) {
		defer key.Wipe()
		if !l.OrganizationKnown {
			// First sync of this key: learn its organisation before any of
			// its usage is stored, so one organisation is never counted
			// twice. A duplicate stops here, having read nothing else.
			org, err := client.Organization(fetchCtx, key)
			if err != nil {
				return nil, nil, err
			}
			ev := s.event(tokka.ActionSyncFailed, tokka.OutcomeFailure, purpose)
			if duplicateOf, recordErr = s.store.RecordOrganization(ctx, l, org, ev); recordErr != nil || duplicateOf != "" {
				return nil, nil, nil
			}
		}
		return s.fetch(fetchCtx, client, key, window)
	}()
	lifetime := time.Since(opened)
	s.metrics.PlaintextLifetime.WithLabelValues(l.Provider).Observe(lifetime.Seconds())
	log.Debug().Dur("plaintext_lifetime", lifetime).Msg("key wiped")

	if duplicateOf != "" {
		log.Info().Str("covered_by", duplicateOf).Msg("organisation already covered by an older connection; marked duplicate")
		return outcomeDuplicate
	}
	if errors.Is(recordErr, postgres.ErrLeaseLost) {
		s.afterLeaseLost(ctx, log, l, recordErr)
		return outcomeLeaseLost
	}
	if recordErr != nil {
		log.Error().Err(recordErr).Msg("recording the organisation failed")
		return outcomeFailed
	}
	if ferr != nil {
		if ctx.Err() != nil {
			return outcomeAborted // the deferred release gives the lease back
		}
		status, reason, next := tokka.StatusError, "the provider could not be reached; Tokka will retry", now.Add(s.cfg.RetryAfter)
		var pe *provider.Error
		if errors.As(ferr, &pe) {
			reason = pe.Reason
			if pe.Kind == provider.KindAuth {
				status, next = tokka.StatusInvalid, now.Add(s.cfg.Interval)
			}
		}
		log.Warn().Err(ferr).Msg("provider call failed")
		s.metrics.Failures.WithLabelValues(l.Provider, failureKind(ferr)).Inc()
		s.fail(ctx, log, l, status, reason, next, tokka.ActionSyncFailed, reason)
		if status == tokka.StatusInvalid {
			return outcomeInvalid
		}
		return outcomeFailed
	}

	err = s.store.CompleteSync(ctx, l, postgres.SyncResult{
		Window: window, Usage: usage, Costs: costs, Backfill: backfill,
		Next:  s.nextSync(now),
		Event: s.event(tokka.ActionSyncSucceeded, tokka.OutcomeSuccess, purpose),
	})
	if errors.Is(err, postgres.ErrLeaseLost) {
		s.afterLeaseLost(ctx, log, l, err)
		return outcomeLeaseLost
	}
	if err != nil {
		log.Error().Err(err).Msg("storing sync results failed")
		return outcomeFailed
	}
	s.metrics.RowsWritten.WithLabelValues("usage_daily").Add(float64(len(usage)))
	s.metrics.RowsWritten.WithLabelValues("cost_daily").Add(float64(len(costs)))
	if s.cfg.AfterSync != nil {
		if err := s.cfg.AfterSync.AfterSync(ctx, l.UserID, s.cfg.Now()); err != nil {
			log.Error().Err(err).Msg("evaluating budgets after the sync failed")
		}
	}
	return outcomeSucceeded
}

// keepLease renews l every third of a lease until the returned stop is
// called, and cancels the returned context if the lease is lost.
func (s *Syncer) keepLease(ctx context.Context, log zerolog.Logger, l postgres.Lease) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(s.cfg.LeaseFor / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.store.RenewLease(ctx, l, s.cfg.LeaseFor); err != nil {
					if ctx.Err() == nil {
						log.Warn().Err(err).Msg("lease lost during the sync; stopping it")
						cancel()
					}
					return
				}
				s.metrics.progressed(time.Now())
			}
		}
	}()
	return ctx, func() { close(done); cancel() }
}

// failureKind names why a provider call failed, for the failures metric.
func failureKind(err error) string {
	if k := provider.KindOf(err); k != "" {
		return string(k)
	}
	return "other"
}

func (s *Syncer) fetch(ctx context.Context, c provider.Client, key *secret.Key, w provider.Window) ([]provider.UsageRow, []provider.CostRow, error) {
	usage, err := c.Usage(ctx, key, w)
	if err != nil {
		return nil, nil, err
	}
	costs, err := c.Costs(ctx, key, w)
	if err != nil {
		return nil, nil, err
	}
	return usage, costs, nil
}

// nextSync spreads a fleet out: each connection's next sync is the interval
// plus up to 5% jitter, so connections added together do not stay in step.
func (s *Syncer) nextSync(now time.Time) time.Time {
	jitter := time.Duration(rand.Int64N(int64(s.cfg.Interval/20) + 1))
	return now.Add(s.cfg.Interval + jitter)
}

func (s *Syncer) event(action, outcome, purpose string) tokka.AuditEvent {
	return tokka.AuditEvent{Action: action, Outcome: outcome, Purpose: purpose, Actor: "syncer:" + s.cfg.Instance}
}

func (s *Syncer) fail(ctx context.Context, log zerolog.Logger, l postgres.Lease, status, reason string, next time.Time, action, detail string) {
	ev := s.event(action, tokka.OutcomeFailure, "")
	ev.Detail = detail
	err := s.store.FailSync(ctx, l, status, reason, next, ev)
	switch {
	case errors.Is(err, postgres.ErrLeaseLost):
		s.afterLeaseLost(ctx, log, l, err)
	case err != nil:
		s.metrics.AuditFailures.Inc()
		log.Error().Err(err).Msg("recording the failed sync failed")
	}
}

// afterLeaseLost settles a lease the store says is no longer good for
// this sync. When the user replaced the key under it (postgres.ErrKeyChanged)
// the lease is given back, so the new key is synced on the next pass instead
// of after the lease expires. When the connection was marked duplicate under
// it (postgres.ErrDuplicate) the lease is given back with a sync.failed
// event, the outcome of this sync's key use. A lease lost any other way is
// someone else's now and is left alone.
func (s *Syncer) afterLeaseLost(ctx context.Context, log zerolog.Logger, l postgres.Lease, err error) {
	ctx = context.WithoutCancel(ctx)
	switch {
	case errors.Is(err, postgres.ErrKeyChanged):
		log.Info().Msg("key replaced during the sync; old key dropped, lease released")
		if err := s.store.ReleaseLease(ctx, l); err != nil {
			log.Warn().Err(err).Msg("releasing the lease failed; it will expire")
		}
	case errors.Is(err, postgres.ErrDuplicate):
		log.Info().Msg("connection marked duplicate during the sync; nothing stored, lease released")
		ev := s.event(tokka.ActionSyncFailed, tokka.OutcomeFailure, "")
		ev.Detail = "duplicate: another connection already covers this provider organisation; nothing was stored"
		if err := s.store.AbandonSync(ctx, l, ev); err != nil {
			log.Warn().Err(err).Msg("giving back the lease of a duplicate failed; it will expire")
		}
	}
}

// remindRotations raises key_rotation alerts for keys older than the
// configured age, at most once per ReminderEvery. Failures are logged: a
// missed reminder is retried on a later pass and must not stop syncing.
func (s *Syncer) remindRotations(ctx context.Context) {
	if s.cfg.KeyRotationReminderDays < 0 {
		return
	}
	s.reminderMu.Lock()
	defer s.reminderMu.Unlock()
	now := time.Now()
	if !s.lastReminder.IsZero() && now.Sub(s.lastReminder) < s.cfg.ReminderEvery {
		return
	}
	n, err := s.store.RemindKeyRotations(ctx, s.cfg.KeyRotationReminderDays)
	if err != nil {
		s.log.Warn().Err(err).Msg("key rotation reminders failed; will retry")
		return
	}
	s.lastReminder = now
	if n > 0 {
		s.log.Info().Int("alerts", n).Int("older_than_days", s.cfg.KeyRotationReminderDays).Msg("key rotation reminders raised")
	}
}

// checkKeyAccess raises key_access alerts for decryptions no sync accounts
// for (see postgres.FlagKeyAccessAnomalies), at most once per ReminderEvery.
// A decryption younger than a lease is still in flight, not an anomaly.
func (s *Syncer) checkKeyAccess(ctx context.Context) {
	s.reminderMu.Lock()
	defer s.reminderMu.Unlock()
	now := time.Now()
	if !s.lastAccess.IsZero() && now.Sub(s.lastAccess) < s.cfg.ReminderEvery {
		return
	}
	n, err := s.store.FlagKeyAccessAnomalies(ctx, s.cfg.LeaseFor+time.Minute, s.cfg.KnownInstances)
	if err != nil {
		s.log.Warn().Err(err).Msg("key-access checks failed; will retry")
		return
	}
	s.lastAccess = now
	if n > 0 {
		s.log.Warn().Int("alerts", n).Msg("key-access anomalies raised")
	}
}
