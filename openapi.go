// Package openapi carries openapi.yaml, the API's contract, so the api can
// serve it and tests can validate every response against it.
package openapi

import _ "embed"

// Spec is the contents of openapi.yaml.
//
//go:embed openapi.yaml
var Spec []byte
