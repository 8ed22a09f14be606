package main

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMemoryLimitDefaultsUnlessGOMEMLIMITIsSet: without GOMEMLIMIT the
// syncer limits itself to defaultMemoryLimit; with it, the operator's
// value (which the runtime read at start) stays.
func TestMemoryLimitDefaultsUnlessGOMEMLIMITIsSet(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	require.EqualValues(t, defaultMemoryLimit, limitMemory(func(string) string { return "" }))
	debug.SetMemoryLimit(300 << 20) // as the runtime would have from GOMEMLIMIT=300MiB
	require.EqualValues(t, 300<<20, limitMemory(func(k string) string {
		if k == "GOMEMLIMIT" {
			return "300MiB"
		}
		return ""
	}))
}
