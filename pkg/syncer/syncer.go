// Package syncer leases due connections, opens their keys just long enough to
// call the provider, and stores what the provider reports. It is the only
// place a sealed key becomes plaintext again, and it never does so without
// first recording that it will (fail closed).
package syncer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tokka-dev/tokka/pkg/provider"
	"github.com/tokka-dev/tokka/pkg/ratelog"
	"github.com/tokka-dev/tokka/pkg/seal"
	"github.com/tokka-dev/tokka/pkg/secret"
	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Store is all the storage the syncer needs, composed from what each part
// of it declares; *postgres.DB implements it.
type Store interface {
	LeaseStore
	ChoreStore
	StatusCounter
	AlertRaiser
}

// LeaseStore is the storage one sync needs: it takes due connections under
// a lease, keeps the lease alive, records the key's use and the
// organisation, and settles the lease with the results or the failure.
type LeaseStore interface {
	LeaseDue(ctx context.Context, owner string, n int, leaseFor time.Duration) ([]tokka.Lease, error)
	RenewLease(ctx context.Context, l tokka.Lease, leaseFor time.Duration) error
	ReleaseLease(ctx context.Context, l tokka.Lease) error
	RecordKeyUse(ctx context.Context, l tokka.Lease, ev tokka.AuditEvent) error
	RecordOrganization(ctx context.Context, l tokka.Lease, org tokka.Organization, ev tokka.AuditEvent) (string, error)
	RecordSealedKey(ctx context.Context, l tokka.Lease, hint string, fingerprint []byte, ev tokka.AuditEvent) (string, error)
	CompleteSync(ctx context.Context, l tokka.Lease, r tokka.SyncResult) error
	FailSync(ctx context.Context, l tokka.Lease, status tokka.ConnectionStatus, reason string, next time.Time, ev tokka.AuditEvent) error
	AbandonSync(ctx context.Context, l tokka.Lease, ev tokka.AuditEvent) error
}

// ChoreStore is the storage of the chores each pass runs besides syncing:
// key-rotation reminders, the key-access anomaly check and the due count.
type ChoreStore interface {
	RemindKeyRotations(ctx context.Context, days int) (int, error)
	FlagKeyAccessAnomalies(ctx context.Context, settle time.Duration, allowed []string) (int, error)
	CountDue(ctx context.Context) (int, error)
}

// AfterSync is told after every successful sync, e.g. to evaluate the user's
// budgets (package budget). Its error is logged; the sync still counts.
type AfterSync interface {
	AfterSync(ctx context.Context, userID string, now time.Time) error
}

// Opener turns a parsed sealed blob back into a key, failing with
// seal.ErrCannotOpen; *keyring.Keyring implements it. An Opener that also
// has a KIDs() []string method (the keyring does) lets the syncer tell a
// tampered blob from one sealed under a key it does not hold.
type Opener interface {
	OpenBlob(p seal.Blob, b seal.Binding) (*secret.Key, error)
}

// Config tunes the syncer; zero values take the documented defaults.
type Config struct {
	Instance     string        // who is syncing, for leases and audit events
	Interval     time.Duration // SYNC_INTERVAL, default DefaultInterval
	Concurrency  int           // SYNC_CONCURRENCY, default DefaultConcurrency
	BackfillDays int           // SYNC_BACKFILL_DAYS, default DefaultBackfillDays
	ResyncDays   int           // SYNC_RESYNC_DAYS, default tokka.DefaultResyncDays
	LeaseFor     time.Duration // SYNC_LEASE_DURATION, default DefaultLeaseFor; a crashed syncer's lease expires after it
	// RetryBackoff (SYNC_RETRY_BACKOFF) is how long a connection waits
	// after its 1st, 2nd, … failed sync in a row; after the last step it
	// keeps waiting that long. Default 1m, 2m, 5m, 15m, 30m. A provider
	// that asked to wait longer (Retry-After) gets its wait.
	RetryBackoff []time.Duration
	// FailureLogEvery spaces the log lines of a failure that repeats on
	// every attempt (the database down): one full line, then one summary
	// per interval. Default ratelog.DefaultEvery.
	FailureLogEvery time.Duration
	// KeyRotationReminderDays is KEY_ROTATION_REMINDER_DAYS: a key older
	// than this gets one key_rotation alert. Default
	// DefaultKeyRotationReminderDays; negative disables.
	KeyRotationReminderDays int
	// ReminderEvery spaces the reminder checks of a long-running syncer,
	// default 1h; every pass of a new Syncer (syncer once) checks.
	ReminderEvery time.Duration
	// ShutdownGrace is how long in-flight syncs may go on once the pass is
	// told to stop (SIGTERM); then they are cancelled and release their
	// leases. Default DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// AfterSync, when set, runs after each successful sync.
	AfterSync AfterSync
	// Invitations, when set (SMTP_URL), mails team invitations at every
	// poll and pass.
	Invitations *Invitations
	// KnownInstances (SYNCER_INSTANCES_ALLOWED) are the instance-name
	// prefixes expected to decrypt keys; a decryption by any other actor
	// raises a key_access alert. Empty: not checked.
	KnownInstances []string
	// Fingerprints (KEY_FINGERPRINT_SECRET, the api's) computes the keyed
	// fingerprint of a client-sealed key on its first open, so the same key
	// connected twice is found as it is for pasted keys. Nil: not computed,
	// and only the organisation check finds such a duplicate.
	Fingerprints *secret.Fingerprinter
	Now          func() time.Time
}

// The defaults of a zero Config field. cmd/syncer's envDefault tags say the
// same (its tests check), so a Syncer built in a test behaves as the binary.
const (
	DefaultInterval                = 6 * time.Hour
	DefaultConcurrency             = 16
	DefaultBackfillDays            = 90
	DefaultLeaseFor                = 10 * time.Minute
	DefaultKeyRotationReminderDays = 90
	DefaultShutdownGrace           = 30 * time.Second
)

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.BackfillDays <= 0 {
		c.BackfillDays = DefaultBackfillDays
	}
	if c.ResyncDays <= 0 {
		c.ResyncDays = tokka.DefaultResyncDays
	}
	if c.LeaseFor <= 0 {
		c.LeaseFor = DefaultLeaseFor
	}
	if len(c.RetryBackoff) == 0 {
		c.RetryBackoff = DefaultRetryBackoff()
	}
	if c.KeyRotationReminderDays == 0 {
		c.KeyRotationReminderDays = DefaultKeyRotationReminderDays
	}
	if c.ReminderEvery <= 0 {
		c.ReminderEvery = time.Hour
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// DefaultRetryBackoff returns SYNC_RETRY_BACKOFF's default: a provider
// that was unreachable for a moment is tried again within a minute, one
// that stays down every half hour.
func DefaultRetryBackoff() []time.Duration {
	return []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute}
}

// Syncer syncs due connections.
type Syncer struct {
	cfg     Config
	store   Store
	opener  Opener
	kids    kidLister // the opener, when it can name its key ids; else nil
	clients map[tokka.Provider]provider.Client
	log     zerolog.Logger
	metrics *Metrics
	// failures logs a failure that repeats (the database down) once per
	// interval, not once per attempt.
	failures *ratelog.Logger

	reminderMu   sync.Mutex
	lastReminder time.Time
	lastAccess   time.Time
}

// New returns a Syncer. clients must have an entry per provider it may meet.
func New(cfg Config, store Store, opener Opener, clients map[tokka.Provider]provider.Client, log zerolog.Logger, m *Metrics) *Syncer {
	cfg.defaults()
	kids, _ := opener.(kidLister)
	return &Syncer{cfg: cfg, store: store, opener: opener, kids: kids, clients: clients, log: log, metrics: m,
		failures: ratelog.New(log, cfg.FailureLogEvery)}
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

// RunOnce syncs every connection that is due, then returns (see dispatch).
// Provider failures are recorded on their connections and counted, not
// returned; the error is non-nil only when the pass itself could not run
// (database down).
func (s *Syncer) RunOnce(ctx context.Context) (Summary, error) {
	s.chores(ctx)
	return s.dispatch(ctx, nil, nil, true)
}

// chores are the checks each pass or poll makes beside syncing: key
// rotation reminders and key-access checks (each at most once per
// ReminderEvery) and the due gauge. Their failures are logged and retried
// later; they never stop syncing.
func (s *Syncer) chores(ctx context.Context) {
	s.remindRotations(ctx)
	s.checkKeyAccess(ctx)
	s.mailInvitations(ctx)
	n, err := s.store.CountDue(ctx)
	if err == nil {
		s.metrics.Due.Set(float64(n))
	} else if ctx.Err() == nil {
		s.failures.Warn("counting due connections failed").Err(err).Msg("counting due connections failed")
	}
	s.observeConnections(ctx)
	// The daemon has no passes any more (its dispatcher runs on); the
	// chores are its periodic heartbeat, and what the last-pass gauge shows.
	s.metrics.passDone(time.Now(), err == nil)
}

// dispatch keeps up to Concurrency syncs reading from their providers. A
// sync holds its slot from its lease until its provider calls are over
// (and its key wiped); it then stores its results beside the next
// connection's provider calls, so the database work of a sync never adds
// to the provider-bound time of the pass. At most Concurrency syncs may be
// storing at once besides (2×Concurrency in flight in all), which bounds
// the results held in memory. dispatch leases as many due connections as
// there are free slots whenever there may be work: at the start, whenever
// a slot frees, and whenever wake or poll delivers. So one slow sync holds
// back only its own slot, and a new connection starts as soon as any slot
// is free, not after the syncs in flight. A wake-up that arrives while
// every slot is busy is not lost: it leaves a pending flag that the next
// free slot acts on. With untilIdle (syncer once) it returns when a lease
// attempt finds nothing more and no sync is in flight, or leasing fails
// (that error is returned); otherwise
// (the daemon) a failed lease attempt waits for the next wake-up or poll,
// and dispatch runs until ctx ends. When ctx ends it leases nothing more;
// syncs in flight may finish for ShutdownGrace, then are cancelled and give
// their leases back.
func (s *Syncer) dispatch(ctx context.Context, wake, poll <-chan struct{}, untilIdle bool) (Summary, error) {
	var sum Summary
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(s.cfg.ShutdownGrace, cancelWork) })
	defer stopGrace()

	done := make(chan string, 2*s.cfg.Concurrency)
	freed := make(chan struct{}, 2*s.cfg.Concurrency)
	stopping := ctx.Done()
	inflight, reading := 0, 0 // syncs in flight; of those, holding a slot
	pending := true
	var leaseErr error
	for {
		free := min(s.cfg.Concurrency-reading, 2*s.cfg.Concurrency-inflight)
		if pending && free > 0 && ctx.Err() == nil && leaseErr == nil {
			asked := time.Now()
			leases, err := s.store.LeaseDue(ctx, s.cfg.Instance, free, s.cfg.LeaseFor)
			// A full batch: more may be due. Otherwise wait for a slot to
			// free, a wake-up or the poll.
			pending = err == nil && len(leases) == free
			if err != nil && ctx.Err() == nil {
				s.failures.Error("leasing failed").Err(err).Msg("leasing failed; will try again")
				if untilIdle {
					leaseErr = err
				}
			}
			for _, l := range leases {
				if l.Takeover {
					s.metrics.LeaseTakeovers.Inc()
				}
				inflight++
				reading++
				go func() {
					var once sync.Once
					release := func() { once.Do(func() { freed <- struct{}{} }) }
					o := s.syncOne(work, l, asked, release)
					release()
					done <- o
				}()
			}
		}
		if inflight == 0 && (ctx.Err() != nil || (untilIdle && !pending)) {
			return sum, leaseErr
		}
		select {
		case <-freed:
			reading--
			pending = true
		case o := <-done:
			inflight--
			switch o {
			case outcomeSucceeded:
				sum.Synced++
			case outcomeLeaseLost, outcomeAborted:
				sum.Skipped++
			case outcomeDuplicate:
				sum.Duplicates++
			default:
				sum.Failed++
			}
			pending = true
		case <-wake:
			pending = true
		case <-poll:
			pending = true
		case <-stopping:
			stopping = nil
			if inflight > 0 {
				s.log.Info().Int("in_flight", inflight).Msg("stopping: no new leases; waiting for syncs in flight")
			}
		}
	}
}

// Reasons recorded on a connection whose sync Tokka's own database cut
// short.
const (
	reasonNotStored   = "the sync's results could not be stored; Tokka will retry"
	reasonLeaseUnsure = "the sync was stopped: Tokka's database did not answer in time; Tokka will retry"
)

// Retries of the database writes that end a sync start at writeRetryFirst
// and double up to writeRetryMax. Recording a first sync's organisation,
// which happens while the key is open, is retried for orgRecordPatience at
// most.
const (
	writeRetryFirst   = 250 * time.Millisecond
	writeRetryMax     = 5 * time.Second
	orgRecordPatience = 10 * time.Second
)

// syncOne syncs one leased connection: it records the key's use, opens
// the key, reads the provider while the lease is kept alive, wipes the key,
// gives up its slot (freeSlot) and settles the lease with the results or
// the failure.
func (s *Syncer) syncOne(ctx context.Context, l tokka.Lease, leasedAt time.Time, freeSlot func()) (outcome string) {
	start := time.Now()
	now := s.cfg.Now()
	log := s.log.With().Str("connection_id", l.ConnectionID).Str("provider", string(l.Provider)).Logger()
	defer func() {
		d := time.Since(start)
		s.metrics.observeSync(string(l.Provider), outcome, d)
		log.Info().Str("outcome", outcome).Dur("duration", d).Msg("sync")
	}()

	job := s.plan(now, l)
	client, ok := s.clients[tokka.Provider(l.Provider)]
	if !ok {
		return s.fail(ctx, log, l, tokka.StatusError, "this provider is not supported by the syncer",
			now.Add(s.cfg.Interval), tokka.ActionSyncFailed, "", outcomeFailed)
	}
	blob := parseSealed(l.SealedKey)
	if outcome, ok := s.recordKeyUse(ctx, log, l, job.purpose, blob); !ok {
		return outcome
	}

	// Keep the lease while the provider calls run longer than one lease;
	// stop if it is lost, or cannot be confirmed before it runs out (the
	// database was away): another syncer may then own the connection.
	held := newLeaseClock(leasedAt.Add(s.cfg.LeaseFor))
	fetchCtx, stopRenewing, leaseErr := s.keepLease(ctx, log, l, held)
	defer stopRenewing()

	key, err := s.open(blob, seal.Binding{TeamID: l.TeamID, ConnectionID: l.ConnectionID, Provider: l.Provider})
	if err != nil {
		d := diagnose(blob, s.kids)
		status := tokka.StatusNeedsReconnect
		if l.KeyUnchecked {
			// A client sealed it and it never opened: the client's
			// upload is what is wrong, not a key Tokka once held.
			status, d.reason = tokka.StatusInvalid, reasonSealedWrong
			d.detail = "client-sealed key refused: " + d.detail
		}
		outcome = s.fail(ctx, log, l, status, d.reason, now.Add(s.cfg.Interval), tokka.ActionKeyDecrypted, d.detail, outcomeSealed)
		s.raiseKeyAccess(ctx, log, l.TeamID, l.ConnectionID, blob, d)
		return outcome
	}
	opened := time.Now()
	log.Debug().Str("sealed_as", blob.label()).Int("window_days", job.window.Days()).Msg("key opened for the provider calls")
	r := s.read(ctx, fetchCtx, log, l, client, key, job, held)
	lifetime := time.Since(opened)
	s.metrics.PlaintextLifetime.WithLabelValues(string(l.Provider)).Observe(lifetime.Seconds())
	log.Debug().Dur("plaintext_lifetime", lifetime).Msg("key wiped")
	stopRenewing()
	// The provider calls are over: the next connection may start while
	// this one's results are stored.
	freeSlot()

	if r.refused != "" {
		return s.fail(ctx, log, l, tokka.StatusInvalid, r.refused, now.Add(s.cfg.Interval), tokka.ActionSyncFailed,
			"client-sealed key refused: "+r.refused, outcomeInvalid)
	}
	if r.duplicateOf != "" {
		log.Info().Str("covered_by", r.duplicateOf).Msg("key or organisation already covered by an older connection; marked duplicate")
		return outcomeDuplicate
	}
	if r.recordErr != nil {
		return s.afterRecordFailed(ctx, log, l, now, r.recordErr)
	}
	if r.err != nil {
		return s.afterFetchFailed(ctx, log, l, now, r.err, leaseErr())
	}
	return s.finish(ctx, log, l, held, now, job, r)
}

// syncJob is what one sync reads and why.
type syncJob struct {
	window   tokka.Window
	backfill bool   // the connection's first sync, over BackfillDays
	purpose  string // for the audit events
}

// plan is the sync of l at now: a first sync backfills, any later one
// re-reads the days providers may still restate.
func (s *Syncer) plan(now time.Time, l tokka.Lease) syncJob {
	backfill := l.BackfilledAt == nil
	days, purpose := s.cfg.ResyncDays, "scheduled sync"
	if backfill {
		days, purpose = s.cfg.BackfillDays, "initial backfill"
	} else if l.Requested {
		purpose = "sync requested by the user"
	}
	return syncJob{window: tokka.DayWindow(now, days), backfill: backfill, purpose: purpose}
}

// recordKeyUse puts the decryption on the record before the plaintext
// exists, and only while this syncer still holds the lease (so a deleted
// or re-leased connection's key is never opened): fail closed. When it
// cannot, it returns the sync's outcome and false.
func (s *Syncer) recordKeyUse(ctx context.Context, log zerolog.Logger, l tokka.Lease, purpose string, blob sealed) (string, bool) {
	ev := s.event(tokka.ActionKeyDecrypted, tokka.OutcomeSuccess, purpose)
	ev.Detail = "sealed as " + blob.label()
	err := s.store.RecordKeyUse(ctx, l, ev)
	switch {
	case err == nil:
		return "", true
	case errors.Is(err, tokka.ErrLeaseLost):
		s.afterLeaseLost(ctx, log, l, err)
		return outcomeLeaseLost, false
	}
	s.metrics.AuditFailures.Inc()
	s.failures.Error("audit write failed; key not used").Err(err).Msg("audit write failed; key not used")
	if unavailable(err) {
		return s.abort(ctx, log, l), false
	}
	// Any other failure keeps the lease until it expires, which spaces
	// the attempts.
	return outcomeAborted, false
}

// readResult is what the provider calls of one sync gave.
type readResult struct {
	usage       []tokka.UsageRow
	costs       []tokka.CostRow
	err         error  // the provider calls failed
	duplicateOf string // the key's organisation is already another connection's
	recordErr   error  // recording the organisation failed
	// refused says why a client-sealed key is not an admin key of its
	// provider ("" when it is, or when the key was sealed by the api).
	refused string
	// dir is what the organisation's directory gave (nil when no part of
	// it could be read); it is stored with the usage, in the same event.
	dir *tokka.Directory
}

// read makes the provider calls with the open key and wipes it, also if a
// provider client panics.
func (s *Syncer) read(ctx, fetchCtx context.Context, log zerolog.Logger, l tokka.Lease, client provider.Client, key *secret.Key, job syncJob, held *leaseClock) (r readResult) {
	defer key.Wipe()
	if l.KeyUnchecked {
		// Sealed by a client, opened for the first time: only now can its
		// prefix be checked and its hint and fingerprint be recorded
		// (which refuses a key this user has already connected).
		if r.refused = checkSealedKey(l.Provider, key); r.refused != "" {
			return r
		}
		var fp []byte
		if s.cfg.Fingerprints != nil {
			fp = s.cfg.Fingerprints.Key(l.TeamID, string(l.Provider), key)
		}
		ev := s.event(tokka.ActionSyncFailed, tokka.OutcomeFailure, job.purpose)
		r.recordErr = s.retry(ctx, held.expires(), "recording the sealed key's hint", func() (err error) {
			r.duplicateOf, err = s.store.RecordSealedKey(ctx, l, key.Hint(l.Provider.KeyPrefix()), fp, ev)
			return err
		})
		if r.recordErr != nil || r.duplicateOf != "" {
			return r
		}
	}
	if !l.OrganizationKnown {
		// First sync of this key: learn its organisation before any of
		// its usage is stored, so one organisation is never counted
		// twice. A duplicate stops here, having read nothing else.
		org, err := client.Organization(fetchCtx, key)
		if provider.Forbidden(err) {
			// A key restricted to usage reads may not list what
			// identifies its organisation (OpenAI's projects): 403,
			// where a wrong or revoked key gets 401. Its usage is still
			// worth reading; the organisation stays unknown (so this is
			// tried again next sync, and such a key is not checked for
			// duplicates) and a key that may not read usage either fails
			// on those reads.
			r.usage, r.costs, r.err = s.fetch(fetchCtx, log, client, key, job.window, &r.dir)
			return r
		}
		if err != nil {
			r.err = err
			return r
		}
		ev := s.event(tokka.ActionSyncFailed, tokka.OutcomeFailure, job.purpose)
		// A database blip here is retried briefly (the key is open
		// meanwhile, so not for the whole lease); a longer outage is
		// recorded below, after the wipe, like any failed write.
		giveUp := time.Now().Add(orgRecordPatience)
		if held.expires().Before(giveUp) {
			giveUp = held.expires()
		}
		r.recordErr = s.retry(ctx, giveUp, "recording the organisation", func() (err error) {
			r.duplicateOf, err = s.store.RecordOrganization(ctx, l, org, ev)
			return err
		})
		if r.recordErr != nil || r.duplicateOf != "" {
			return r
		}
	}
	r.usage, r.costs, r.err = s.fetch(fetchCtx, log, client, key, job.window, &r.dir)
	return r
}

// afterRecordFailed settles a sync whose organisation could not be
// recorded.
func (s *Syncer) afterRecordFailed(ctx context.Context, log zerolog.Logger, l tokka.Lease, now time.Time, err error) string {
	switch {
	case errors.Is(err, tokka.ErrLeaseLost):
		s.afterLeaseLost(ctx, log, l, err)
		return outcomeLeaseLost
	case ctx.Err() != nil:
		return s.abort(ctx, log, l)
	}
	// Like a final write that failed: record it and give the lease
	// back, never leave it to expire (issue 16, item 15).
	s.failures.Error("recording the organisation failed").Err(err).Msg("recording the organisation failed; recording the failure")
	return s.fail(ctx, log, l, tokka.StatusError, reasonNotStored, s.retryAt(now, l.Failures+1, 0),
		tokka.ActionSyncFailed, reasonNotStored, outcomeFailed)
}

// afterFetchFailed settles a sync whose provider calls failed (ferr), or
// were stopped because the lease was lost or could not be confirmed (lerr).
func (s *Syncer) afterFetchFailed(ctx context.Context, log zerolog.Logger, l tokka.Lease, now time.Time, ferr, lerr error) string {
	switch {
	case ctx.Err() != nil:
		return s.abort(ctx, log, l)
	case errors.Is(lerr, tokka.ErrLeaseLost):
		return outcomeLeaseLost
	case lerr != nil:
		return s.fail(ctx, log, l, tokka.StatusError, reasonLeaseUnsure, s.retryAt(now, l.Failures+1, 0),
			tokka.ActionSyncFailed, reasonLeaseUnsure, outcomeFailed)
	}
	status, reason, result := tokka.StatusError, "the provider could not be reached; Tokka will retry", outcomeFailed
	var asked time.Duration
	var pe *provider.Error
	if errors.As(ferr, &pe) {
		reason, asked = pe.Reason, pe.RetryAfter
	}
	next := s.retryAt(now, l.Failures+1, asked)
	if pe != nil && pe.Kind == provider.KindAuth {
		status, next, result = tokka.StatusInvalid, now.Add(s.cfg.Interval), outcomeInvalid
	}
	log.Warn().Err(ferr).Msg("provider call failed")
	s.metrics.Failures.WithLabelValues(string(l.Provider), failureKind(ferr)).Inc()
	return s.fail(ctx, log, l, status, reason, next, tokka.ActionSyncFailed, reason, result)
}

// finish stores a sync's results, settles the lease, and tells AfterSync.
func (s *Syncer) finish(ctx context.Context, log zerolog.Logger, l tokka.Lease, held *leaseClock, now time.Time, job syncJob, r readResult) string {
	done := s.event(tokka.ActionSyncSucceeded, tokka.OutcomeSuccess, job.purpose)
	done.Detail = directoryDetail(r.dir)
	err := s.storeResults(ctx, l, held, tokka.SyncResult{
		Window: job.window, Usage: r.usage, Costs: r.costs, Backfill: job.backfill, Directory: r.dir,
		Alerts: hygieneAlerts(l, r.dir, now, s.cfg.KeyRotationReminderDays),
		Next:   s.nextSync(now), Event: done,
	})
	switch {
	case errors.Is(err, tokka.ErrKeyChanged), errors.Is(err, tokka.ErrDuplicate):
		s.afterLeaseLost(ctx, log, l, err)
		return outcomeLeaseLost
	case err != nil && ctx.Err() != nil:
		return s.abort(ctx, log, l)
	case err != nil:
		// The lease ran out while the database was away (or the write
		// failed otherwise): record the failure, which works as long as
		// nobody took the connection meanwhile, and release the lease.
		s.failures.Error("storing sync results failed").Err(err).Msg("storing sync results failed; recording the failure")
		return s.fail(ctx, log, l, tokka.StatusError, reasonNotStored, s.retryAt(now, l.Failures+1, 0),
			tokka.ActionSyncFailed, reasonNotStored, outcomeFailed)
	}
	s.metrics.RowsWritten.WithLabelValues("usage_daily").Add(float64(len(r.usage)))
	s.metrics.RowsWritten.WithLabelValues("cost_daily").Add(float64(len(r.costs)))
	if s.cfg.AfterSync != nil {
		if err := s.cfg.AfterSync.AfterSync(ctx, l.TeamID, s.cfg.Now()); err != nil {
			log.Error().Err(err).Msg("evaluating budgets after the sync failed")
		}
	}
	return outcomeSucceeded
}

// unavailable reports whether err means the database was unreachable (or
// too slow), so the same write is worth trying again shortly.
func unavailable(err error) bool { return tokka.ErrorCode(err) == tokka.CodeUnavailable }

// sleep waits d or until ctx ends, returning ctx.Err() in that case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry runs write until it succeeds or fails for another reason than an
// unavailable database, trying again with backoff (logged, once per
// interval, under what) until ctx ends or the next try would come after
// giveUp (zero: no such bound). It returns write's last error.
func (s *Syncer) retry(ctx context.Context, giveUp time.Time, what string, write func() error) error {
	wait := writeRetryFirst
	for {
		err := write()
		if err == nil || !unavailable(err) || ctx.Err() != nil || (!giveUp.IsZero() && time.Now().Add(wait).After(giveUp)) {
			return err
		}
		s.failures.Warn(what + " failed; retrying").Err(err).Msg(what + " failed; retrying while the database is unavailable")
		if sleep(ctx, wait) != nil {
			return err
		}
		wait = min(2*wait, writeRetryMax)
	}
}

// storeResults writes a sync's results (CompleteSync), trying again while
// the database is unavailable and the lease still holds: a database
// restart during the final write costs the sync nothing. It returns the
// last error when the lease would run out before the next try, or at once
// for any other failure.
func (s *Syncer) storeResults(ctx context.Context, l tokka.Lease, held *leaseClock, r tokka.SyncResult) error {
	return s.retry(ctx, held.expires(), "storing sync results", func() error { return s.store.CompleteSync(ctx, l, r) })
}

// abort gives the lease back when a sync stops without an outcome
// (shutdown, the database away), so the connection is due again at once
// rather than when the lease expires; it tries for a little while even
// when ctx has ended.
func (s *Syncer) abort(ctx context.Context, log zerolog.Logger, l tokka.Lease) string {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	s.release(rctx, log, l)
	return outcomeAborted
}

// release gives l back, trying again while the database is unavailable
// until ctx ends (then the lease expires by itself).
func (s *Syncer) release(ctx context.Context, log zerolog.Logger, l tokka.Lease) {
	if err := s.retry(ctx, time.Time{}, "releasing a lease", func() error { return s.store.ReleaseLease(ctx, l) }); err != nil {
		log.Warn().Err(err).Msg("releasing the lease failed; it will expire")
	}
}

// leaseClock is this syncer's view of when its lease runs out: the local
// time it last confirmed the lease (leased or renewed it) plus LeaseFor.
type leaseClock struct {
	mu    sync.Mutex
	until time.Time
}

func newLeaseClock(until time.Time) *leaseClock { return &leaseClock{until: until} }

func (c *leaseClock) expires() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.until
}

func (c *leaseClock) extend(until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.until = until
}

// keepLease renews l every quarter of a lease until the returned stop is
// called. It cancels the returned context when the lease is lost
// (ErrLeaseLost) or could not be renewed before it ran out (the database
// away); err then says which. A renewal that fails while time is left is
// tried again at the next tick.
func (s *Syncer) keepLease(ctx context.Context, log zerolog.Logger, l tokka.Lease, held *leaseClock) (context.Context, func(), func() error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var stopOnce sync.Once
	var mu sync.Mutex
	var lost error
	stop := func() { stopOnce.Do(func() { close(done) }) }
	go func() {
		t := time.NewTicker(s.cfg.LeaseFor / 4)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			asked := time.Now()
			err := s.store.RenewLease(ctx, l, s.cfg.LeaseFor)
			if err == nil {
				held.extend(asked.Add(s.cfg.LeaseFor))
				s.metrics.progressed(time.Now())
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, tokka.ErrLeaseLost) && time.Now().Add(s.cfg.LeaseFor/4).Before(held.expires()) {
				s.failures.Warn("renewing a lease failed; retrying").Err(err).Msg("renewing a lease failed; retrying")
				continue
			}
			log.Warn().Err(err).Msg("lease lost or not renewable during the sync; stopping it")
			mu.Lock()
			lost = err
			mu.Unlock()
			cancel()
			return
		}
	}()
	return ctx, func() { stop(); cancel() }, func() error {
		mu.Lock()
		defer mu.Unlock()
		return lost
	}
}

// failureKind names why a provider call failed, for the failures metric.
func failureKind(err error) string {
	if k := provider.KindOf(err); k != "" {
		return string(k)
	}
	return "other"
}

// fetch reads the window's usage and costs, then the organisation's
// directory into *dir. A directory the provider refuses in part is no
// failure (the parts are named in it); a directory that cannot be read for
// another reason (the provider down, a malformed list) leaves *dir nil, so
// the usage is still stored and the names stored earlier stay.
func (s *Syncer) fetch(ctx context.Context, log zerolog.Logger, c provider.Client, key *secret.Key, w tokka.Window, dir **tokka.Directory) ([]tokka.UsageRow, []tokka.CostRow, error) {
	usage, err := c.Usage(ctx, key, w)
	if err != nil {
		return nil, nil, err
	}
	costs, err := c.Costs(ctx, key, w)
	if err != nil {
		return nil, nil, err
	}
	d, err := c.Directory(ctx, key)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, nil, err
	case err != nil:
		log.Warn().Err(err).Msg("reading the organisation's directory failed; names stay as they were")
	default:
		markHeldKey(&d, key)
		*dir = &d
	}
	return usage, costs, nil
}

// directoryDetail says in the sync.succeeded event what the sync learned of
// the organisation's directory, so the audit log shows the names were read
// with the same key use.
func directoryDetail(d *tokka.Directory) string {
	if d == nil {
		return "directory: not read (the provider did not answer); names unchanged"
	}
	out := fmt.Sprintf("directory: %d projects or workspaces, %d keys", len(d.Projects), len(d.Keys))
	if len(d.Unavailable) > 0 {
		out += "; unavailable to this key: " + strings.Join(d.Unavailable.Strings(), ", ")
	}
	return out
}

// nextSync spreads a fleet out: each connection's next sync is the interval
// plus up to 5% jitter, so connections added together do not stay in step.
func (s *Syncer) nextSync(now time.Time) time.Time {
	jitter := time.Duration(rand.Int64N(int64(s.cfg.Interval/20) + 1))
	return now.Add(s.cfg.Interval + jitter)
}

// retryAt is when a connection is tried again after its failures-th
// failed sync in a row: that step of RetryBackoff (the last one once the
// steps run out), or what the provider asked for if longer, plus up to 5%
// jitter so connections that failed together do not retry in step.
func (s *Syncer) retryAt(now time.Time, failures int, asked time.Duration) time.Time {
	steps := s.cfg.RetryBackoff
	d := max(steps[min(max(failures, 1), len(steps))-1], asked)
	jitter := time.Duration(rand.Int64N(int64(d/20) + 1))
	return now.Add(d + jitter)
}

func (s *Syncer) event(action, outcome, purpose string) tokka.AuditEvent {
	return tokka.AuditEvent{Action: action, Outcome: outcome, Purpose: purpose, Actor: "syncer:" + s.cfg.Instance}
}

// fail records a failed sync (status, reason, when to try again, and the
// action's audit event with detail) and releases the lease. While the
// database is unavailable it tries again, for up to a lease or a minute
// (whichever is longer): a lease that expired meanwhile is still this
// syncer's to release as long as nobody leased the connection since. It
// returns outcome, or outcomeLeaseLost when the connection turned out to
// be someone else's, or outcomeAborted when ctx ended first (shutdown).
func (s *Syncer) fail(ctx context.Context, log zerolog.Logger, l tokka.Lease, status tokka.ConnectionStatus, reason string, next time.Time, action, detail, outcome string) string {
	ev := s.event(action, tokka.OutcomeFailure, "")
	ev.Detail = detail
	giveUp := time.Now().Add(max(s.cfg.LeaseFor, time.Minute))
	err := s.retry(ctx, giveUp, "recording a failed sync", func() error {
		return s.store.FailSync(ctx, l, status, reason, next, ev)
	})
	switch {
	case err == nil:
		return outcome
	case errors.Is(err, tokka.ErrLeaseLost):
		s.afterLeaseLost(ctx, log, l, err)
		return outcomeLeaseLost
	case ctx.Err() != nil:
		return s.abort(ctx, log, l)
	}
	s.metrics.AuditFailures.Inc()
	log.Error().Err(err).Msg("recording the failed sync failed; the lease will expire")
	return outcome
}

// afterLeaseLost settles a lease the store says is no longer good for
// this sync. When the user replaced the key under it (tokka.ErrKeyChanged)
// the lease is given back, so the new key is synced on the next pass instead
// of after the lease expires. When the connection was marked duplicate under
// it (tokka.ErrDuplicate) the lease is given back with a sync.failed
// event, the outcome of this sync's key use. A lease lost any other way is
// someone else's now and is left alone.
func (s *Syncer) afterLeaseLost(ctx context.Context, log zerolog.Logger, l tokka.Lease, err error) {
	ctx = context.WithoutCancel(ctx)
	switch {
	case errors.Is(err, tokka.ErrKeyChanged):
		log.Info().Msg("key replaced during the sync; old key dropped, lease released")
		if err := s.store.ReleaseLease(ctx, l); err != nil {
			log.Warn().Err(err).Msg("releasing the lease failed; it will expire")
		}
	case errors.Is(err, tokka.ErrDuplicate):
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
		s.failures.Warn("key rotation reminders failed").Err(err).Msg("key rotation reminders failed; will retry")
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
		s.failures.Warn("key-access checks failed").Err(err).Msg("key-access checks failed; will retry")
		return
	}
	s.lastAccess = now
	if n > 0 {
		s.log.Warn().Int("alerts", n).Msg("key-access anomalies raised")
	}
}
