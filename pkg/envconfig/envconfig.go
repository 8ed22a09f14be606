// Package envconfig reads a binary's settings from its environment into one
// typed struct. github.com/caarlos0/env does the parsing, the struct's tags
// hold the names and defaults (so the README's tables can be checked against
// them), and every mistake comes back as one line that names the variable.
//
// Tags besides the library's: range:"lo,hi" bounds a whole number or a
// duration (both ends included; an empty hi means no upper bound) when it is
// set or has a default. A value
// that does not parse and one out of range get the same sentence, which
// states what is wanted.
package envconfig

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"
	"github.com/shopspring/decimal"
)

// Parse fills cfg, a pointer to a struct whose fields carry env and
// envDefault tags, from getenv, and checks every range tag. A variable set to
// the empty string counts as unset. It fails with the first problem in field
// order; the message never quotes a string setting, since secrets are
// strings.
func Parse(getenv func(string) string, cfg any) error {
	fields := settings(reflect.ValueOf(cfg))
	environ := map[string]string{}
	for _, f := range fields {
		if v := getenv(f.key); v != "" {
			environ[f.key] = v
		}
	}
	if err := env.ParseWithOptions(cfg, env.Options{Environment: environ}); err != nil {
		return explain(err, fields, environ)
	}
	for _, f := range fields {
		raw := f.raw(environ)
		if raw == "" {
			continue // unset, no default: zero means "derive it", not "out of range"
		}
		if err := f.checkRange(raw); err != nil {
			return err
		}
	}
	return nil
}

// Setting is one variable a Config struct reads.
type Setting struct {
	// Name is the environment variable.
	Name string
	// Default is its envDefault tag; HasDefault says whether there is one.
	Default    string
	HasDefault bool
}

// Settings lists the variables cfg (a pointer to a Config struct) reads, in
// field order, for documentation checks.
func Settings(cfg any) []Setting {
	var out []Setting
	for _, f := range settings(reflect.ValueOf(cfg)) {
		d, ok := f.field.Tag.Lookup("envDefault")
		out = append(out, Setting{Name: f.key, Default: d, HasDefault: ok})
	}
	return out
}

// setting is a struct field with an env tag, and where it lives.
type setting struct {
	key   string
	field reflect.StructField
	value reflect.Value
}

// settings walks a struct pointer the way the library does: tagged fields,
// and the fields of untagged struct fields.
func settings(ptr reflect.Value) []setting {
	v := ptr.Elem()
	var out []setting
	for i := range v.NumField() {
		sf, fv := v.Type().Field(i), v.Field(i)
		if !sf.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(sf.Tag.Get("env"), ",")
		switch {
		case key == "-":
		case key != "":
			out = append(out, setting{key: key, field: sf, value: fv})
		case fv.Kind() == reflect.Struct:
			out = append(out, settings(fv.Addr())...)
		}
	}
	return out
}

// raw is the text the setting was read from: its variable, else its default.
func (s setting) raw(environ map[string]string) string {
	if v, ok := environ[s.key]; ok {
		return v
	}
	return s.field.Tag.Get("envDefault")
}

var durationType = reflect.TypeFor[time.Duration]()

// checkRange enforces the range tag, if any, on the parsed value.
func (s setting) checkRange(raw string) error {
	r, ok := s.field.Tag.Lookup("range")
	if !ok {
		return nil
	}
	lo, hi, _ := strings.Cut(r, ",")
	if s.field.Type == durationType {
		d := time.Duration(s.value.Int())
		min, _ := time.ParseDuration(lo)
		max, err := time.ParseDuration(hi)
		if d < min || (err == nil && d > max) {
			return s.rangeError(raw)
		}
		return nil
	}
	n := s.value.Int()
	min, _ := strconv.ParseInt(lo, 10, 64)
	max, err := strconv.ParseInt(hi, 10, 64)
	if n < min || (err == nil && n > max) {
		return s.rangeError(raw)
	}
	return nil
}

// rangeError states what a ranged setting wants.
func (s setting) rangeError(raw string) error {
	lo, hi, _ := strings.Cut(s.field.Tag.Get("range"), ",")
	if s.field.Type == durationType {
		if hi == "" {
			return fmt.Errorf("%s: %q is not a duration of at least %s, like 30s or 6h", s.key, raw, lo)
		}
		return fmt.Errorf("%s: %q is not a duration from %s to %s", s.key, raw, lo, hi)
	}
	if hi == "" {
		return fmt.Errorf("%s must be a whole number of at least %s, not %q", s.key, lo, raw)
	}
	return fmt.Errorf("%s must be a whole number from %s to %s, not %q", s.key, lo, hi, raw)
}

// explain turns the library's first error into one line naming the
// variable. The library names struct fields, not variables.
func explain(err error, fields []setting, environ map[string]string) error {
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		err = agg.Errors[0]
	}
	var unset env.VarIsNotSetError
	if errors.As(err, &unset) {
		return fmt.Errorf("%s is required", unset.Key)
	}
	var perr env.ParseError
	if !errors.As(err, &perr) {
		return err
	}
	for _, f := range fields {
		if f.field.Name != perr.Name {
			continue
		}
		raw := f.raw(environ)
		if _, ok := f.field.Tag.Lookup("range"); ok {
			return f.rangeError(raw)
		}
		switch f.field.Type {
		case durationType:
			return fmt.Errorf("%s: %q is not a duration like 30s or 6h", f.key, raw)
		case reflect.TypeFor[int]():
			return fmt.Errorf("%s: %q is not a whole number", f.key, raw)
		case reflect.TypeFor[bool]():
			return fmt.Errorf("%s: %q must be true or false", f.key, raw)
		case reflect.TypeFor[zerolog.Level]():
			return fmt.Errorf("%s: %q is not a level (trace, debug, info, warn, error or disabled)", f.key, raw)
		case reflect.TypeFor[decimal.Decimal]():
			return fmt.Errorf("%s: %q is not an amount like 10 or 2.50", f.key, raw)
		}
		return fmt.Errorf("%s: %w", f.key, perr.Err)
	}
	return err
}

// List is a comma-separated setting. Items are trimmed and empty ones
// dropped, so "a, b," is [a b] and an empty variable an empty list.
type List []string

// UnmarshalText splits text at commas; it never fails.
func (l *List) UnmarshalText(text []byte) error {
	*l = nil
	for _, p := range strings.Split(string(text), ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// BaseURL validates an optional absolute http(s) URL setting called name
// and trims its trailing slash; example shows the expected form in the
// error. Empty stays empty.
func BaseURL(name, v, example string) (string, error) {
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" ||
		u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%s must be an absolute http(s) URL like %s", name, example)
	}
	return strings.TrimRight(v, "/"), nil
}

// SupabaseAuthURL is the Auth server's root, the one derivation both binaries
// use: SUPABASE_AUTH_URL when set (a self-hosted GoTrue), else SUPABASE_URL
// + /auth/v1, else empty. Each is validated as a base URL first, so a typo
// fails at startup, not at the first request.
func SupabaseAuthURL(supabaseURL, authURL string) (string, error) {
	project, err := BaseURL("SUPABASE_URL", supabaseURL, "https://<project-ref>.supabase.co")
	if err != nil {
		return "", err
	}
	auth, err := BaseURL("SUPABASE_AUTH_URL", authURL, "https://<project-ref>.supabase.co/auth/v1")
	if err != nil || auth != "" {
		return auth, err
	}
	if project == "" {
		return "", nil
	}
	return project + "/auth/v1", nil
}
