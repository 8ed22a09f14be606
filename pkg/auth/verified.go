package auth

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// maxVerified bounds how many verified tokens a Verifier remembers. A
// client sends the same access token with every request for up to an hour,
// so the api sees few distinct tokens at once; when more arrive than fit,
// the expired ones are dropped, and if that is not enough all of them, and
// those tokens are simply verified again.
const maxVerified = 4096

// verifiedTokens remembers the callers of tokens already verified, so the
// same token on the next request skips the signature check and the two
// JSON decodings of its payload, which were most of the api's cost per
// request after the database. It is keyed by the token's SHA-256 (the
// bearer token itself is never kept) and remembers only tokens that were
// accepted. Taking a remembered token again is sound because every check
// verify makes either cannot change with time (signature, algorithm,
// header, audience, issuer, sub, role, duplicate claims) or can only
// change one way (exp, nbf, iat, the furthest allowed exp): exp is checked
// again at every use, with the same leeway, and a token passes nbf, iat and
// the lifetime bound for good once it has passed them. Two things are not
// the token's own: the key that verified an ES256/RS256 token is trusted
// only while the key set it came from is current (a refresh of the JWKS,
// at most every RefreshAfter, drops every such token to a full
// verification, so a key withdrawn by the project stops counting at the
// same moment as without this cache); the HS256 secret cannot change while
// the process runs.
type verifiedTokens struct {
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	user tokka.User
	// until is exp plus the leeway: the first instant the JWT library
	// would call the token expired.
	until time.Time
	// keys is the JWKS generation whose key verified the token; 0 for an
	// HS256 token.
	keys uint64
}

// lookup returns the caller of token if it was verified before and still
// holds at now.
func (c *verifiedTokens) lookup(ctx context.Context, token string, now time.Time, jwks *jwksCache) (tokka.User, bool) {
	sum := sha256.Sum256([]byte(token))
	c.mu.RLock()
	e, ok := c.entries[sum]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return tokka.User{}, false
	}
	if e.keys != 0 && (jwks == nil || jwks.generation(ctx) != e.keys) {
		return tokka.User{}, false
	}
	return e.user, true
}

// remember records that token verified as u, valid before until, under
// the JWKS generation keys (0 for HS256).
func (c *verifiedTokens) remember(token string, u tokka.User, until time.Time, keys uint64, now time.Time) {
	sum := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[[sha256.Size]byte]verifiedToken)
	}
	if len(c.entries) >= maxVerified {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxVerified {
			clear(c.entries)
		}
	}
	c.entries[sum] = verifiedToken{user: u, until: until, keys: keys}
}
