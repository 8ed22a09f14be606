package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
)

// JWKSOptions tunes how the project's published signing keys are cached.
//
// Supabase edge-caches its JWKS for 10 minutes and asks clients not to cache
// it for longer, so a revoked key stops verifying within MaxAge of its
// removal. The verifier never fetches the JWKS more than once per
// MinInterval, whatever triggers it (stale keys, or tokens naming a kid it
// has not seen, which an attacker can send at will).
type JWKSOptions struct {
	// RefreshAfter is the age at which keys are re-fetched on next use;
	// default 5 minutes.
	RefreshAfter time.Duration
	// MaxAge is the age beyond which keys are no longer trusted at all: if
	// the JWKS cannot be re-fetched by then, asymmetric tokens fail (closed).
	// Default and maximum 10 minutes.
	MaxAge time.Duration
	// MinInterval is the least time between two fetches; default 30 seconds.
	MinInterval time.Duration
	// Timeout bounds one fetch; default 5 seconds.
	Timeout time.Duration
}

// maxJWKSBytes bounds a JWKS document; real ones are a few KB.
const maxJWKSBytes = 1 << 20

var errUnknownKID = errors.New("unknown kid")

// jwksCache holds the project's public signing keys, keyed by kid, and
// refreshes them lazily on the request path. At most one fetch runs at a
// time; requests that can use the current keys never wait for it.
type jwksCache struct {
	url    string
	opts   JWKSOptions
	client *http.Client
	now    func() time.Time
	log    zerolog.Logger

	mu          sync.Mutex
	kf          keyfunc.Keyfunc // nil until the first successful fetch
	gen         uint64          // counts successful fetches: names kf
	fetchedAt   time.Time
	lastAttempt time.Time
	inflight    chan struct{} // closed when the running fetch ends
}

func newJWKSCache(url string, opts JWKSOptions, client *http.Client, now func() time.Time, log zerolog.Logger) (*jwksCache, error) {
	if opts.MaxAge == 0 {
		opts.MaxAge = 10 * time.Minute
	}
	if opts.RefreshAfter == 0 {
		opts.RefreshAfter = 5 * time.Minute
	}
	if opts.MinInterval == 0 {
		opts.MinInterval = 30 * time.Second
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	switch {
	case opts.MaxAge > 10*time.Minute:
		return nil, errors.New("auth: JWKS keys may be cached for at most 10 minutes")
	case opts.RefreshAfter > opts.MaxAge:
		return nil, errors.New("auth: JWKS RefreshAfter must not exceed MaxAge")
	case opts.MinInterval > opts.RefreshAfter:
		return nil, errors.New("auth: JWKS MinInterval must not exceed RefreshAfter")
	}
	if client == nil {
		// Never follow a redirect: the key set comes from the configured
		// URL or not at all.
		client = &http.Client{Timeout: opts.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	c := &jwksCache{url: url, opts: opts, client: client, now: now, log: log}
	// Warm the cache so the first request does not pay for the fetch.
	c.mu.Lock()
	c.startRefreshLocked(now())
	c.mu.Unlock()
	return c, nil
}

// key returns the public key for t's kid and the generation of the key set
// it came from, refreshing the key set when it is stale or does not know
// the kid (rate-limited). The caller checks the key's type against t's alg.
func (c *jwksCache) key(ctx context.Context, t *jwt.Token, kid string) (any, uint64, error) {
	if kf, gen := c.usable(ctx); kf != nil {
		k, err := kf.KeyfuncCtx(ctx)(t)
		if err == nil || !errors.Is(err, jwkset.ErrKeyNotFound) {
			return k, gen, err
		}
	}
	// A kid we do not know: the project may have rotated keys. Look again,
	// unless a fetch happened too recently.
	c.mu.Lock()
	done := c.startRefreshLocked(c.now())
	c.mu.Unlock()
	if done == nil || !wait(ctx, done) {
		return nil, 0, errUnknownKID
	}
	kf, gen := c.valid()
	if kf == nil {
		return nil, 0, errUnknownKID
	}
	k, err := kf.KeyfuncCtx(ctx)(t)
	return k, gen, err
}

// usable returns the keys and their generation if they are still within
// MaxAge, starting a refresh when they are older than RefreshAfter and
// waiting for it only when there is nothing usable meanwhile.
func (c *jwksCache) usable(ctx context.Context) (keyfunc.Keyfunc, uint64) {
	c.mu.Lock()
	now := c.now()
	var done chan struct{}
	if c.kf == nil || now.Sub(c.fetchedAt) >= c.opts.RefreshAfter {
		done = c.startRefreshLocked(now)
	}
	expired := c.kf == nil || now.Sub(c.fetchedAt) >= c.opts.MaxAge
	kf, gen := c.kf, c.gen
	c.mu.Unlock()
	if !expired {
		return kf, gen
	}
	if done == nil || !wait(ctx, done) {
		return nil, 0
	}
	return c.valid()
}

// generation names the key set usable would verify with now (refreshing
// it as usable does), or is 0 when no keys may be used. A token verified
// under one generation may be taken on trust only while it is current: the
// next fetch, which may have dropped the token's key, ends that.
func (c *jwksCache) generation(ctx context.Context) uint64 {
	_, gen := c.usable(ctx)
	return gen
}

// valid returns the current keys and their generation if they are within
// MaxAge, else nil and 0.
func (c *jwksCache) valid() (keyfunc.Keyfunc, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kf == nil || c.now().Sub(c.fetchedAt) >= c.opts.MaxAge {
		return nil, 0
	}
	return c.kf, c.gen
}

func wait(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// startRefreshLocked starts a fetch unless one is running (whose channel it
// returns) or the last one started less than MinInterval ago (nil).
func (c *jwksCache) startRefreshLocked(now time.Time) chan struct{} {
	if c.inflight != nil {
		return c.inflight
	}
	if !c.lastAttempt.IsZero() && now.Sub(c.lastAttempt) < c.opts.MinInterval {
		return nil
	}
	c.lastAttempt = now
	done := make(chan struct{})
	c.inflight = done
	// Detached from the request that triggered it: a cancelled request
	// must not abort the fetch other requests are waiting for.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
		defer cancel()
		kf, err := c.download(ctx)
		c.mu.Lock()
		if err == nil {
			c.kf, c.fetchedAt = kf, c.now()
			c.gen++
		}
		c.inflight = nil
		c.mu.Unlock()
		close(done)
		if err != nil {
			c.log.Warn().Err(err).Str("jwks_url", c.url).Msg("auth: could not refresh the JWKS")
		}
	}()
	return done
}

// download fetches the key set and keeps only what may verify a Supabase
// access token: public EC/RSA signing keys with a kid. Symmetric ("oct")
// entries, encryption keys and certificate URLs are dropped, so nothing in
// the document can become an HMAC secret or trigger a further fetch.
func (c *jwksCache) download(ctx context.Context) (keyfunc.Keyfunc, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("auth: fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("auth: fetch JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: read JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("auth: JWKS document is too large")
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, errors.New("auth: JWKS document is not a JSON key set")
	}
	store := jwkset.NewMemoryStorage()
	for _, raw := range doc.Keys {
		var m jwkset.JWKMarshal
		if json.Unmarshal(raw, &m) != nil || m.KID == "" || len(m.KID) > maxKIDLength {
			continue
		}
		if m.KTY != jwkset.KtyEC && m.KTY != jwkset.KtyRSA {
			continue
		}
		if (m.USE != "" && m.USE != jwkset.UseSig) || (len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify)) {
			continue
		}
		m.X5U, m.X5C, m.X5T, m.X5TS256 = "", nil, "", ""
		m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH, m.K = "", "", "", "", "", "", nil, ""
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			c.log.Warn().Str("kid", m.KID).Msg("auth: ignoring a JWKS entry that does not parse")
			continue
		}
		if err := store.KeyWrite(ctx, jwk); err != nil {
			return nil, fmt.Errorf("auth: store JWK: %w", err)
		}
	}
	kf, err := keyfunc.New(keyfunc.Options{Ctx: context.Background(), Storage: store})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return kf, nil
}
