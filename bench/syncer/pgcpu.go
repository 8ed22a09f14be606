package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux Go runs on.
const clockTicks = 100

// pgSampleEvery is how often the backends' CPU is read. A backend that
// exits between two reads loses what it used since the last one; the
// syncer's pool keeps its connections until the syncer exits.
const pgSampleEvery = 100 * time.Millisecond

// pgSampler adds up the CPU time the PostgreSQL backends serving one
// database use while it runs, from /proc: the server must run on this
// machine (as the local one scripts/test starts does) under a process title
// naming the database (the default, update_process_title on).
type pgSampler struct {
	cancel context.CancelFunc
	done   chan struct{}
	first  map[int]int64 // ticks of the backends already there at the start
	last   map[int]int64
}

// samplePG starts reading the CPU of database's backends.
func samplePG(ctx context.Context, database string) *pgSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &pgSampler{cancel: cancel, done: make(chan struct{}), last: map[int]int64{}}
	s.first = backendTicks(database)
	go func() {
		defer close(s.done)
		t := time.NewTicker(pgSampleEvery)
		defer t.Stop()
		for {
			for pid, ticks := range backendTicks(database) {
				s.last[pid] = ticks
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the CPU time used since the start;
// ok is false when no backend of the database was found (the server is
// not on this machine, or not Linux).
func (s *pgSampler) stop() (cpu time.Duration, ok bool) {
	s.cancel()
	<-s.done
	var ticks int64
	for pid, t := range s.last {
		ticks += t - s.first[pid]
	}
	return time.Duration(ticks) * time.Second / clockTicks, len(s.last) > 0
}

// backendTicks reads user+system ticks of every process whose title says
// it is a PostgreSQL backend connected to database.
func backendTicks(database string) map[int]int64 {
	out := map[int]int64{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		title, err := os.ReadFile(dir + "/cmdline")
		if err != nil || !bytes.HasPrefix(title, []byte("postgres: ")) {
			continue
		}
		// "postgres: [cluster: ]user database host state"
		if !slices.Contains(strings.Fields(string(bytes.ReplaceAll(title, []byte{0}, []byte{' '})))[1:], database) {
			continue
		}
		stat, err := os.ReadFile(dir + "/stat")
		if err != nil {
			continue
		}
		// Fields after "pid (comm) ": utime and stime are the 12th and 13th.
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		pid, _ := strconv.Atoi(filepath.Base(dir))
		out[pid] = utime + stime
	}
	return out
}
