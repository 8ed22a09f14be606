package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Listed describes one paged list endpoint of a provider's admin API (projects,
// keys, workspaces). Both providers answer {data, has_more, last_id} and take
// the previous page's last_id as the next cursor; they differ in its name.
type Listed struct {
	HTTP      HTTPClient        // with Provider and RequestIDHeader set
	URL       string            // the endpoint, without a query string
	Name      string            // named in bad-response reasons, e.g. "organization/projects"
	Authorize func(http.Header) // sets the key header; the only reader of the key
	MaxPages  int               // a cap on pages; DefaultMaxPages when <= 0
	Query     url.Values        // the request's parameters; After is set while paging
	After     string            // the cursor parameter: "after" (OpenAI), "after_id" (Anthropic)
}

type listDoc struct {
	Data    *[]json.RawMessage `json:"data"`
	HasMore bool               `json:"has_more"`
	LastID  *string            `json:"last_id"`
}

// List GETs l.URL and follows last_id until has_more is false, calling each
// for every element of data. A response without a data array is malformed,
// not empty; a cursor seen before, a missing cursor and paging past MaxPages
// are KindBadResponse errors (the reason names the endpoint), so a provider
// that never stops cannot keep a sync busy. Transport and status failures are
// as HTTPClient.Get describes.
func List(ctx context.Context, l Listed, each func(raw json.RawMessage) error) error {
	if l.MaxPages <= 0 {
		l.MaxPages = DefaultMaxPages
	}
	where := " (" + l.Name + ")"
	seen := map[string]bool{}
	for n := 0; ; n++ {
		if n == l.MaxPages {
			return &Error{Provider: l.HTTP.Provider, Kind: KindBadResponse,
				Reason: fmt.Sprintf("the provider kept paging past %d pages%s", l.MaxPages, where)}
		}
		res, err := l.HTTP.Get(ctx, l.URL+"?"+l.Query.Encode(), l.Authorize)
		if err != nil {
			return err
		}
		bad := func(reason string) error {
			return &Error{Provider: l.HTTP.Provider, Kind: KindBadResponse, Reason: reason + where, RequestID: res.RequestID}
		}
		var doc listDoc
		if err := json.Unmarshal(res.Body, &doc); err != nil || doc.Data == nil {
			return bad("the provider's response is not the expected JSON")
		}
		for _, raw := range *doc.Data {
			if err := each(raw); err != nil {
				var pe *Error
				if errors.As(err, &pe) && pe.Kind == KindBadResponse {
					pe.Reason += where
					pe.RequestID = res.RequestID
				}
				return err
			}
		}
		if !doc.HasMore {
			return nil
		}
		if doc.LastID == nil || *doc.LastID == "" {
			return bad("the provider said there is more data but gave no last_id")
		}
		if seen[*doc.LastID] {
			return bad("the provider returned the same page cursor twice")
		}
		seen[*doc.LastID] = true
		l.Query.Set(l.After, *doc.LastID)
	}
}

// Refused reports whether err is the provider refusing the key a directory
// list (401 or 403). The usage reads of the same sync already proved the key
// valid, so such a refusal means a key restricted to usage reads, not a bad
// key: the part is marked unavailable and the sync goes on.
func Refused(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Kind == KindAuth
}

// Forbidden reports whether err is a 403 from the provider: a valid key
// that may not do this (a key restricted to usage reads listing projects),
// as opposed to a 401 for a key that is wrong or revoked.
func Forbidden(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Kind == KindAuth && pe.Status == 403
}

// Longest stored directory values: names (a provider's names are the
// user's free text; longer ones are cut, marked with an ellipsis) and
// redacted key hints (anything longer is not a redacted value).
const (
	MaxDirectoryName = 1000
	MaxKeyHint       = 64
)

// DirectoryName returns a provider's name as stored: valid UTF-8 without NUL
// (which Postgres text cannot hold) and at most MaxDirectoryName characters.
// It never fails.
func DirectoryName(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if utf8.RuneCountInString(s) <= MaxDirectoryName {
		return s
	}
	r := []rune(s)
	return string(r[:MaxDirectoryName-1]) + "…"
}

// KeyHint returns the provider's redacted value of a key if it looks
// redacted: short, and holding the provider's elision ("...", "…" or "*").
// Anything else (a provider returning more of the key than a hint) is
// dropped, so Tokka never stores more of a key than a redacted value. It
// never fails.
func KeyHint(s string) string {
	if len(s) > MaxKeyHint || !utf8.ValidString(s) || !(strings.Contains(s, "...") || strings.ContainsAny(s, "…*")) {
		return ""
	}
	return s
}

// UnixTime returns the time of a Unix-seconds field, nil for nil or 0
// (OpenAI writes 0 or null for "never"). It never fails.
func UnixTime(v *int64) *time.Time {
	if v == nil || *v <= 0 {
		return nil
	}
	t := time.Unix(*v, 0).UTC()
	return &t
}

// CheckID reports whether id is a plausible directory id: 1 to 200
// printable ASCII characters without spaces. It never fails.
func CheckID(id string) bool {
	if id == "" || len(id) > 200 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f {
			return false
		}
	}
	return true
}

// KeyStatus returns a key's status as stored: "" for a status longer than
// any provider's (40 bytes) or not valid UTF-8. It never fails.
func KeyStatus(s string) string {
	if len(s) > 40 || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return ""
	}
	return s
}
