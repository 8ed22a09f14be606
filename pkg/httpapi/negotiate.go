package httpapi

import (
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Media types the api answers in. Errors are always problemJSON, whatever
// the request accepts (RFC 9110 §15.5.7 allows it).
const (
	mediaJSON        = "application/json"
	mediaProblemJSON = "application/problem+json"
	mediaCSV         = "text/csv"
	mediaYAML        = "application/yaml"
)

// routeMediaTypes are the routes that answer in something other than JSON;
// a client may ask for any one of the listed types.
var routeMediaTypes = map[string][]string{
	"/v1/usage/export.csv":       {mediaCSV},
	"/v1/usage/export.focus.csv": {mediaCSV},
	"/openapi.yaml":              {mediaYAML},
}

// jsonMediaTypes are what a JSON route offers: its responses are JSON and
// its errors problem+json, so a client that takes either is answered.
var jsonMediaTypes = []string{mediaJSON, mediaProblemJSON}

// negotiate refuses with 406 a request whose Accept header rules out every
// media type its route answers in. No Accept header, */* and any range that
// matches are fine.
func negotiate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		offers, ok := routeMediaTypes[c.Path()]
		if !ok {
			offers = jsonMediaTypes
		}
		if !acceptable(c.Request().Header.Values(echo.HeaderAccept), offers) {
			return tokka.Errorf(tokka.CodeNotAcceptable, "this resource is available only as %s", offers[0])
		}
		return next(c)
	}
}

// acceptable reports whether any of offers is acceptable under the Accept
// header values (RFC 9110 §12.5.1): each offer takes the quality of the
// most specific media range that matches it, and quality 0 means "not
// this". Elements that do not parse are ignored; no header at all accepts
// everything.
func acceptable(accept []string, offers []string) bool {
	if len(accept) == 0 {
		return true
	}
	type mediaRange struct {
		typ, sub string
		q        float64
	}
	var ranges []mediaRange
	for _, v := range accept {
		for _, elem := range strings.Split(v, ",") {
			if strings.TrimSpace(elem) == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(elem)
			if err != nil {
				continue
			}
			typ, sub, ok := strings.Cut(mt, "/")
			if !ok {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(s, 64); err != nil || q < 0 || q > 1 {
					continue
				}
			}
			ranges = append(ranges, mediaRange{typ: typ, sub: sub, q: q})
		}
	}
	for _, offer := range offers {
		typ, sub, _ := strings.Cut(offer, "/")
		best, q := -1, 0.0
		for _, r := range ranges {
			specificity := -1
			switch {
			case r.typ == typ && r.sub == sub:
				specificity = 2
			case r.typ == typ && r.sub == "*":
				specificity = 1
			case r.typ == "*" && r.sub == "*":
				specificity = 0
			}
			if specificity > best {
				best, q = specificity, r.q
			}
		}
		if best >= 0 && q > 0 {
			return true
		}
	}
	return false
}

// jsonContentType reports whether a request's Content-Type is JSON: the
// media type application/json exactly (in any case), with no parameter but
// an optional charset=utf-8. A prefix is not enough (application/jsonx is
// another type), and no other charset is accepted.
func jsonContentType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != mediaJSON {
		return false
	}
	for name, v := range params {
		if name != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

// checkText refuses, as CodeInvalid, a JSON body that is not valid UTF-8 or
// whose string escapes name a lone surrogate (\ud800 without its pair):
// encoding/json would quietly turn either into U+FFFD, storing something
// other than what the client sent.
func checkText(body []byte) error {
	if !utf8.Valid(body) {
		return tokka.Errorf(tokka.CodeInvalid, "request body is not valid UTF-8")
	}
	lone := tokka.Errorf(tokka.CodeInvalid, `request body has a lone UTF-16 surrogate escape (such as \ud800)`)
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		// In valid JSON a backslash only appears in a string, starting an
		// escape; anything malformed is the decoder's to refuse.
		if i+1 >= len(body) || body[i+1] != 'u' {
			i++ // skip the escaped character (it may be another backslash)
			continue
		}
		r, ok := hex4(body, i+2)
		if !ok {
			i++
			continue
		}
		i += 5 // the last hex digit
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return lone
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(body) || body[i+1] != '\\' || body[i+2] != 'u' {
				return lone
			}
			low, ok := hex4(body, i+3)
			if !ok || low < 0xDC00 || low > 0xDFFF {
				return lone
			}
			i += 6
		}
	}
	return nil
}

// hex4 reads four hex digits at b[at:].
func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[at:at+4]), 16, 16)
	return rune(n), err == nil
}
