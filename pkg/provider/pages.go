package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Paged describes one paged, bucketed report endpoint. Both providers page
// the same way (data of buckets with results, has_more, next_page → page)
// and differ only in how a bucket names its start.
type Paged struct {
	HTTP      HTTPClient        // with Provider and RequestIDHeader set
	URL       string            // the endpoint, without a query string
	Name      string            // named in bad-response reasons, e.g. "costs"
	Authorize func(http.Header) // sets the key header; the only reader of the key
	MaxPages  int               // a cap on pages; the caller's default applies when <= 0
	Start     BucketStart       // how a bucket's start is written
	Window    tokka.Window      // every bucket with results must lie in it
	Query     url.Values        // the request's parameters; "page" is set while paging
}

// DefaultMaxPages bounds one endpoint's paging in one call. A year of daily
// buckets is 12 pages (31 buckets each); 100 only trips on a provider that
// never stops, and stops it within one connection's sync.
const DefaultMaxPages = 100

// BucketStart names a bucket's start field: OpenAI's "start_time" is Unix
// seconds, Anthropic's "starting_at" is RFC 3339.
type BucketStart string

// The two bucket-start encodings.
const (
	StartUnix    BucketStart = "start_time"
	StartRFC3339 BucketStart = "starting_at"
)

// pageDoc is one page, its results decoded as R in the same pass as the
// envelope: a page is most of what a sync reads, and decoding its results
// a second time, one by one, was most of the syncer's CPU time.
type pageDoc[R any] struct {
	Data     *[]pageBucket[R] `json:"data"`
	HasMore  bool             `json:"has_more"`
	NextPage *string          `json:"next_page"`
}

type pageBucket[R any] struct {
	StartTime  *int64  `json:"start_time"`
	StartingAt *string `json:"starting_at"`
	Results    []R     `json:"results"`
}

// Pages GETs p.URL with p.Query and follows next_page until has_more is
// false, calling each for every result with its bucket's UTC day. A response
// without a data array is malformed, not empty. It refuses a cursor or a
// bucket it has already seen, a bucket outside the window, and stops after
// MaxPages, so a misbehaving provider can neither keep a sync busy forever
// nor make it count a day twice. Errors are *Error; bad-response reasons
// name the endpoint and carry the provider's request id.
func Pages[R any](ctx context.Context, p Paged, each func(day time.Time, r *R) error) error {
	if p.MaxPages <= 0 {
		p.MaxPages = DefaultMaxPages
	}
	where := " (" + p.Name + ")"
	seenCursor, seenBucket := map[string]bool{}, map[time.Time]bool{}
	for n := 0; ; n++ {
		if n == p.MaxPages {
			return p.bad(fmt.Sprintf("the provider kept paging past %d pages%s", p.MaxPages, where))
		}
		res, err := p.HTTP.Get(ctx, p.URL+"?"+p.Query.Encode(), p.Authorize)
		if err != nil {
			return err
		}
		// fail gives an error about this response its request id, and a
		// bad-response reason the endpoint's name.
		fail := func(err error) error {
			var pe *Error
			if errors.As(err, &pe) {
				pe.RequestID = res.RequestID
				if pe.Kind == KindBadResponse {
					pe.Reason += where
				}
			}
			return err
		}
		var doc pageDoc[R]
		if err := json.Unmarshal(res.Body, &doc); err != nil || doc.Data == nil {
			return fail(p.bad("the provider's response is not the expected JSON"))
		}
		if err := eachResult(p, *doc.Data, seenBucket, each); err != nil {
			return fail(err)
		}
		if !doc.HasMore {
			return nil
		}
		if doc.NextPage == nil || *doc.NextPage == "" {
			return fail(p.bad("the provider said there is more data but gave no next page"))
		}
		if seenCursor[*doc.NextPage] {
			return fail(p.bad("the provider returned the same page cursor twice"))
		}
		seenCursor[*doc.NextPage] = true
		p.Query.Set("page", *doc.NextPage)
	}
}

func (p Paged) bad(reason string) *Error {
	return &Error{Provider: p.HTTP.Provider, Kind: KindBadResponse, Reason: reason}
}

// eachResult calls each for every result of one page's buckets. It refuses
// a bucket with results but no start, one whose start is in seen (which it
// adds to), and one outside p.Window; it returns each's error as it is.
func eachResult[R any](p Paged, buckets []pageBucket[R], seen map[time.Time]bool, each func(day time.Time, r *R) error) error {
	days := tokka.Window{From: p.Window.From.UTC().Truncate(24 * time.Hour), To: p.Window.To}
	for _, b := range buckets {
		start, present, err := p.start(b.StartTime, b.StartingAt)
		if err != nil {
			return err
		}
		if !present {
			if len(b.Results) == 0 {
				continue
			}
			return p.bad("a bucket has no " + string(p.Start))
		}
		if seen[start] {
			return p.bad("the provider returned the same bucket twice")
		}
		seen[start] = true
		if len(b.Results) == 0 {
			continue
		}
		day := start.Truncate(24 * time.Hour)
		if !days.Contains(day) {
			return p.bad("the provider returned a bucket outside the requested window")
		}
		for i := range b.Results {
			if err := each(day, &b.Results[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// start is a bucket's start in UTC, read in p.Start's encoding from its
// start_time or starting_at; present is false when it names none.
func (p Paged) start(startTime *int64, startingAt *string) (start time.Time, present bool, err error) {
	switch p.Start {
	case StartUnix:
		if startTime != nil {
			return time.Unix(*startTime, 0).UTC(), true, nil
		}
	case StartRFC3339:
		if startingAt != nil {
			t, err := time.Parse(time.RFC3339, *startingAt)
			if err != nil {
				return time.Time{}, false, p.bad("a bucket's starting_at is not an RFC 3339 time")
			}
			return t.UTC(), true, nil
		}
	}
	return time.Time{}, false, nil
}
