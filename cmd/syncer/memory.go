package main

import "runtime/debug"

// defaultMemoryLimit is the syncer's soft memory limit (Go's GOMEMLIMIT)
// when the environment sets none: the garbage collector works harder as
// the heap nears it, so a syncer with far more work than bench/syncer's
// 10,000 connections (which peak near 50 MiB resident) stays inside the
// 256Mi the Kubernetes manifests allow. It is soft: a larger live heap is
// still allocated, at the price of more collection.
const defaultMemoryLimit = 170 << 20

// limitMemory applies defaultMemoryLimit unless GOMEMLIMIT is set (the
// runtime has then read it), and returns the limit in force.
func limitMemory(getenv func(string) string) int64 {
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	return debug.SetMemoryLimit(-1)
}
