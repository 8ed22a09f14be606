// Package db carries Tokka's SQL migrations, embedded so the binaries need no
// files beside them.
package db

import "embed"

// Migrations holds db/migrations/*.sql in goose's format.
//
//go:embed migrations/*.sql
var Migrations embed.FS
