package httpapi

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
	"golang.org/x/text/unicode/norm"

	"github.com/tokka-dev/tokka/pkg/tokka"
)

// Names people give things (a connection's label, a budget's name) are at
// most maxNameCharacters user-perceived characters (grapheme clusters: "é",
// "🇫🇷" and "👍🏽" are one each) and maxNameCodePoints code points, the
// database's limit, which only a string of heavily combined characters
// reaches.
const (
	maxNameCharacters = 100
	maxNameCodePoints = 400
)

// zeroWidthJoiner joins emoji into one ("👩‍💻" is 👩, U+200D, 💻).
const zeroWidthJoiner = 0x200D

// invisible reports whether r is a character that changes how the text
// around it is shown without being seen itself: the bidirectional
// overrides and isolates (U+202A–U+202E, U+2066–U+2069), which can make a
// name read differently from what it is, and the zero-width characters
// (U+200B–U+200D, U+2060, U+FEFF), which make two names that look the same
// differ. The joiner is not invisible between two emoji, where it makes
// one visible character of them (see emojiJoin).
func invisible(r rune) bool {
	switch {
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	case r >= 0x200B && r <= 0x200D, r == 0x2060, r == 0xFEFF:
		return true
	}
	return false
}

// emojiJoin reports whether a zero-width joiner between prev and next is
// part of an emoji sequence: after a symbol (or its skin-tone modifier or
// emoji presentation selector, U+FE0F) and before a symbol.
func emojiJoin(prev, next rune) bool {
	before := unicode.Is(unicode.So, prev) || unicode.Is(unicode.Sk, prev) || prev == 0xFE0F
	return before && unicode.Is(unicode.So, next)
}

// cleanName returns a name as it is stored: trimmed of surrounding white
// space and in Unicode normalization form C, so the same text typed on two
// keyboards is the same name. It is a CodeInvalid error on field when the
// result is empty (an empty or white-space-only name is refused, never
// defaulted), too long, or holds a control or invisible character.
func cleanName(field, v string) (string, error) {
	length := field + " must be 1 to " + strconv.Itoa(maxNameCharacters) + " characters"
	if !utf8.ValidString(v) {
		return "", &tokka.Error{Code: tokka.CodeInvalid, Field: field, Message: field + " is not valid UTF-8"}
	}
	v = norm.NFC.String(strings.TrimSpace(v))
	if v == "" {
		return "", &tokka.Error{Code: tokka.CodeInvalid, Field: field, Message: length + "; leave it out instead of sending it empty"}
	}
	runes := []rune(v)
	for i, r := range runes {
		if unicode.IsControl(r) {
			return "", &tokka.Error{Code: tokka.CodeInvalid, Field: field, Message: field + " must not contain control characters"}
		}
		if r == zeroWidthJoiner && i > 0 && i+1 < len(runes) && emojiJoin(runes[i-1], runes[i+1]) {
			continue
		}
		if invisible(r) {
			return "", &tokka.Error{Code: tokka.CodeInvalid, Field: field,
				Message: field + " must not contain bidirectional overrides or isolates, or zero-width characters"}
		}
	}
	if uniseg.GraphemeClusterCount(v) > maxNameCharacters || len(runes) > maxNameCodePoints {
		return "", &tokka.Error{Code: tokka.CodeInvalid, Field: field, Message: length}
	}
	return v, nil
}
