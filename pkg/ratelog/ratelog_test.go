package ratelog

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tokka-dev/tokka/pkg/logtest"
)

// TestFirstLineThenASummary: of many occurrences of one failure, the first
// is logged in full and the rest become one summary line that counts them;
// another key has its own interval; after the interval the next occurrence
// is logged in full again.
func TestFirstLineThenASummary(t *testing.T) {
	t.Parallel()
	buf := &logtest.Buffer{}
	l := New(zerolog.New(buf), time.Minute)
	var ends []func()
	l.after = func(d time.Duration, f func()) {
		require.Equal(t, time.Minute, d)
		ends = append(ends, f)
	}
	for i := range 1000 {
		l.Error("database down").Int("n", i).Msg("request failed")
	}
	l.Warn("auth down").Msg("session check failed")
	require.Len(t, buf.Lines(), 2)
	require.Len(t, ends, 2, "one interval per key")
	for _, end := range ends {
		end()
	}
	lines := buf.Lines()
	require.Len(t, lines, 3)
	require.Contains(t, lines[0], `"level":"error","n":0,"message":"request failed"`)
	require.Contains(t, lines[1], `"message":"session check failed"`)
	require.Contains(t, lines[2], `"level":"error","repeated":"database down","suppressed":999`)

	l.Error("database down").Int("n", 1000).Msg("request failed")
	require.Contains(t, buf.Lines()[3], `"n":1000`, "a new interval starts with a full line")
	require.Len(t, ends, 3)
	ends[2]()
	require.Len(t, buf.Lines(), 4, "an interval with nothing suppressed ends without a summary")
}
