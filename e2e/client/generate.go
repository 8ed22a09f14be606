// Package client is a typed Go client for Tokka's API, generated from
// openapi.yaml by oapi-codegen. The e2e tests drive the real binaries
// through it, so the spec is proven usable by a standard generator, and
// TestGeneratedClientIsCurrent fails when client.gen.go and the spec drift
// apart: run `go generate ./e2e/client` after changing openapi.yaml.
package client

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -config oapi-codegen.yaml ../../openapi.yaml
