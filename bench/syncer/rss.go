package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"
)

// rssSampleEvery is how often the syncer's peak resident memory is read.
const rssSampleEvery = 100 * time.Millisecond

// peakRSS follows a running process's VmHWM (its resident high-water
// mark) in /proc until stop is called, and returns the last value read,
// in bytes. The kernel's own figure for a child, ru_maxrss, cannot be
// used: exec records the high-water mark of the memory it replaces, and
// Go starts a child on its parent's memory (vfork), so the child's
// ru_maxrss is at least the benchmark's own peak (its seeding of 10,000
// sealed keys took it past 200 MB). VmHWM belongs to the process's own
// memory since exec; being a high-water mark, it loses at most what the
// process added in its last rssSampleEvery.
func peakRSS(pid int) (stop func() int64) {
	done := make(chan struct{})
	result := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(rssSampleEvery)
		defer t.Stop()
		for {
			if v, ok := vmHWM(pid); ok {
				peak = max(peak, v)
			}
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		return <-result
	}
}

// vmHWM reads VmHWM from /proc/pid/status, in bytes.
func vmHWM(pid int) (int64, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		return kb << 10, err == nil
	}
	return 0, false
}
