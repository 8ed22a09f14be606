// Package spectest validates every HTTP response a test sees against
// openapi.yaml, so the spec cannot drift from what the API really returns.
package spectest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	openapi "github.com/tokka-dev/tokka"
)

var (
	once    sync.Once
	router  routers.Router
	loadErr error
)

func load() (routers.Router, error) {
	once.Do(func() {
		openapi3filter.RegisterBodyDecoder("application/yaml", openapi3filter.YamlBodyDecoder)
		doc, err := openapi3.NewLoader().LoadFromData(openapi.Spec)
		if err != nil {
			loadErr = fmt.Errorf("spectest: openapi.yaml does not load: %w", err)
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			loadErr = fmt.Errorf("spectest: openapi.yaml is not valid: %w", err)
			return
		}
		// Tests listen on random ports; match paths on any host.
		doc.Servers = nil
		router, loadErr = legacy.NewRouter(doc)
	})
	return router, loadErr
}

// Transport is an http.RoundTripper that fails the test when a response's
// status, headers or body is not what openapi.yaml declares for the request's
// route, or when the route is not in the spec at all.
type Transport struct {
	TB   testing.TB
	Base http.RoundTripper
}

// Client returns an http.Client whose every response is validated.
func Client(tb testing.TB) *http.Client {
	return &http.Client{Transport: &Transport{TB: tb}}
}

// RoundTrip performs the request and validates the response.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if verr := Validate(req, resp.StatusCode, resp.Header, body); verr != nil {
		t.TB.Errorf("response to %s %s does not match openapi.yaml: %v", req.Method, req.URL.Path, verr)
	}
	return resp, nil
}

// Validate checks one response against the spec.
func Validate(req *http.Request, status int, header http.Header, body []byte) error {
	r, err := load()
	if err != nil {
		return err
	}
	route, params, err := r.FindRoute(req)
	if err != nil {
		// Unknown routes and methods answer with a problem document; the
		// spec does not (and should not) list them.
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			if ct := header.Get("Content-Type"); ct != "application/problem+json" {
				return fmt.Errorf("unrouted %d has Content-Type %q", status, ct)
			}
			return nil
		}
		return fmt.Errorf("route not in spec: %w", err)
	}
	// A HEAD response has no body (RFC 9110 §9.3.2); its status and
	// headers are checked as declared.
	head := req.Method == http.MethodHead
	if head && len(body) > 0 {
		return fmt.Errorf("a response to HEAD has a body of %d bytes", len(body))
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: status,
		Header: header,
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
			ExcludeResponseBody:   head,
		},
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(req.Context(), in)
}
