package main

import (
	"runtime"
	"testing"
)

// TestRelayProcs: one thread by default; GOMAXPROCS in the environment wins.
func TestRelayProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	if got := relayProcs(); got != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("GOMAXPROCS unset: relayProcs() = %d, runtime.GOMAXPROCS = %d, want 1", got, runtime.GOMAXPROCS(0))
	}
	runtime.GOMAXPROCS(3) // as the runtime would have read GOMAXPROCS=3 at start
	t.Setenv("GOMAXPROCS", "3")
	if got := relayProcs(); got != 3 || runtime.GOMAXPROCS(0) != 3 {
		t.Errorf("GOMAXPROCS=3: relayProcs() = %d, runtime.GOMAXPROCS = %d, want 3", got, runtime.GOMAXPROCS(0))
	}
}
