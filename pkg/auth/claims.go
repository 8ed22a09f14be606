package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode/utf8"
)

// knownClaims are the top-level claims a Supabase access token carries
// (shared reference, §1) and that Tokka, the JWT library or the database's
// RLS functions may read.
var knownClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "email", "phone", "app_metadata",
	"user_metadata", "role", "aal", "amr", "session_id", "is_anonymous", "client_id", "scope"}

// maxClaims bounds the number of members an object in a token may have;
// Supabase tokens have about fifteen, custom hooks add a few.
const maxClaims = 64

// payloadClaims is what checkPayload reads from the verified payload itself.
type payloadClaims struct {
	emailVerified bool
}

// errPayload is a payload that Go and Postgres could read differently.
type errPayload string

func (e errPayload) Error() string { return string(e) }

// checkPayload makes sure the api and the database read the same claims
// from payload. Go's encoding/json matches member names case-insensitively
// (Unicode simple folding, so "ſub" is "sub") and keeps the last of two
// equal names; Postgres's jsonb ->> 'sub' matches exactly. So the payload
// must be one valid UTF-8 JSON object with no member named twice at the top
// level in any case variant, no member that is a case variant of a known
// claim without being spelt exactly as it, and no escaped NUL (which jsonb
// refuses); in user_metadata the same holds for email_verified, the one
// member Tokka reads there. It also checks that exp, iat and nbf are JSON
// numbers as RFC 7519 requires (the JWT library would take "123" in quotes).
func checkPayload(payload []byte) (payloadClaims, error) {
	var out payloadClaims
	if !utf8.Valid(payload) || bytes.Contains(payload, []byte(`\u0000`)) {
		return out, errPayload("payload is not valid UTF-8 JSON that Postgres accepts")
	}
	members, err := objectMembers(payload)
	if err != nil {
		return out, err
	}
	if len(members) > maxClaims {
		return out, errPayload("payload has too many claims")
	}
	for i, m := range members {
		for _, prev := range members[:i] {
			if strings.EqualFold(prev.name, m.name) {
				return out, errPayload("a claim is named twice")
			}
		}
		for _, k := range knownClaims {
			if m.name != k && strings.EqualFold(m.name, k) {
				return out, errPayload("a claim name is a case variant of a known claim")
			}
		}
		switch m.name {
		case "exp", "iat", "nbf":
			if len(m.value) == 0 || m.value[0] < '0' || m.value[0] > '9' {
				return out, errPayload("a time claim is not a number")
			}
		case "user_metadata":
			if out.emailVerified, err = emailVerified(m.value); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// emailVerified reads user_metadata.email_verified: true only for the JSON
// value true. A user_metadata that is not an object has no such member.
func emailVerified(raw json.RawMessage) (bool, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return false, nil
	}
	members, err := objectMembers(raw)
	if err != nil {
		return false, err
	}
	if len(members) > maxClaims {
		return false, errPayload("user_metadata has too many members")
	}
	verified, seen := false, false
	for _, m := range members {
		if !strings.EqualFold(m.name, "email_verified") {
			continue
		}
		if seen || m.name != "email_verified" {
			return false, errPayload("user_metadata names email_verified twice or in another case")
		}
		seen = true
		verified = string(m.value) == "true"
	}
	return verified, nil
}

type member struct {
	name  string
	value json.RawMessage
}

// objectMembers splits one JSON object into its members, in order and with
// duplicates kept, and refuses anything after the object.
func objectMembers(raw []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	bad := errPayload("payload is not one JSON object")
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, bad
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad
		}
		name, ok := tok.(string)
		if !ok {
			return nil, bad
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, bad
		}
		out = append(out, member{name: name, value: v})
		if len(out) > maxClaims {
			return out, nil // the caller refuses it; no need to read on
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, bad
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad
	}
	return out, nil
}
