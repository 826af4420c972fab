package main

import (
	"os"
	"runtime"
)

// relayProcs sets how many threads may run the relay's Go code at once (GOMAXPROCS) and returns
// the number: one, unless the operator set GOMAXPROCS.
//
// Why one: the relay is a single ordered stream, and each event passes through a few goroutines
// (the stream, the sink's pipeline, kafka-go's connection, the acknowledgement back). On a live
// stream of small transactions, with a P idle, every one of those hand-offs wakes a sleeping
// thread to run the goroutine, which then finds little to do and sleeps again; in a perf profile
// at 3,000 events/s most of the relay's CPU was those wake-ups (the kernel's context switches,
// the scheduler's spinning, sysmon), not decoding or producing. With one P the woken goroutine
// waits on the run queue of the thread that is already awake. What one P costs is parallelism
// the relay hardly has: decoding is a few µs per event, Kafka's round trips are waiting, not CPU.
// docs/performance.md ("Where the relay's CPU goes") has the measurements.
func relayProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(1)
	return 1
}
