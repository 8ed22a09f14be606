package main

import (
	"os/exec"
	"syscall"
	"testing"
)

// The syncer's peak is its own, not the benchmark's: after this process
// has touched 256 MiB, a small child started from it measures a few MiB
// through peakRSS, while the kernel's ru_maxrss for the same child
// reports at least this process's peak (the figure bench/syncer printed
// before).
func TestPeakRSSIsTheChildsOwn(t *testing.T) {
	ballast := make([]byte, 256<<20)
	for i := range ballast {
		if i%4096 == 0 {
			ballast[i] = 1
		}
	}
	cmd := exec.Command("sleep", "0.5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rss := peakRSS(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	peak := rss()
	if peak <= 0 || peak > 32<<20 {
		t.Fatalf("peakRSS of sleep = %d bytes; want a few MiB", peak)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss<<10 < 200<<20 {
		t.Logf("ru_maxrss of the child is %d KiB: this kernel does not pass the parent's peak on", ru.Maxrss)
	}
	ballast[0] = 2 // keep the ballast alive until here
}
