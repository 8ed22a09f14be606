package logtest_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/logtest"
)

// TestConcurrentWritersKeepWholeLines: lines written from many goroutines
// (a logger's) arrive whole, and Lines splits them back out.
func TestConcurrentWritersKeepWholeLines(t *testing.T) {
	t.Parallel()
	var buf logtest.Buffer
	require.Empty(t, buf.Lines())
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { _, _ = fmt.Fprintf(&buf, "line %02d\n", i) })
	}
	wg.Wait()
	require.Len(t, buf.Lines(), 50)
	for _, l := range buf.Lines() {
		require.Regexp(t, `^line \d\d$`, l)
	}
	require.Contains(t, buf.String(), "line 07\n")
}
