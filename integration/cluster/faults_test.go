//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// The shape of every case: 12 channels, one writer each committing every 100 ms (120 events/s
// in all), 8 centrifuge-go subscribers each following every channel through haproxy and 2
// Chromium pages following 8 channels each with the models SDK (pages_test.go), a fault a few
// seconds in with the relay SIGKILLed and restarted while it lasts, then the writers stop and
// every subscriber and page must reach the database's counters with no anomaly, and Kafka must
// hold every event once. Each case logs a FIGURES line.
const (
	caseChannels    = 12
	caseSubscribers = 8
	caseEvery       = 100 * time.Millisecond
	convergeTimeout = 2 * time.Minute
)

func startCase(t *testing.T) (*stack, *writers, fleet, *pages) {
	t.Helper()
	s := newStack(t, 6)
	s.start()
	channels := make([]string, caseChannels)
	for i := range channels {
		channels[i] = fmt.Sprintf("outbox:%s:%d", s.name, i)
	}
	w := startWriters(s, channels, caseEvery)
	// The pages first, one after the other: haproxy's least-connections balance puts one on each
	// Centrifugo node.
	p := startPages(t, s, channels)
	f := startFleet(t, s, w, caseSubscribers)
	time.Sleep(5 * time.Second) // steady state before the fault
	return s, w, f, p
}

// busiestPartitionLeader is the broker leading the partition with the most records.
func busiestPartitionLeader(t *testing.T, s *stack) (node string, partition int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := s.endOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	best := -1
	for p, end := range ends {
		if best < 0 || end > ends[best] {
			best = p
		}
	}
	leaders, err := s.partitionLeaders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("kafka-%d", leaders[best]), best
}

func signal(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill -%v %d: %v", sig, pid, err)
	}
}

// waitGone waits until pid has exited (a SIGKILLed JVM takes a moment).
func waitGone(pid int) {
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCluster_BrokerLeaderKill: SIGKILL of the broker leading the busiest partition mid-stream;
// the relay is killed too while the broker is down (its restart's exactly-once tail read runs
// against the new leaders); the broker is restarted 15 s later.
func TestCluster_BrokerLeaderKill(t *testing.T) {
	s, w, f, p := startCase(t)
	node, partition := busiestPartitionLeader(t, s)
	pid := nodePID(t, node)
	t.Cleanup(func() { clusterCmd(t, "start", node) })
	t.Logf("SIGKILL %s (pid %d), leader of partition %d", node, pid, partition)
	faultAt := time.Now()
	signal(t, pid, syscall.SIGKILL)
	waitGone(pid)
	time.Sleep(3 * time.Second)
	s.crashRelay()
	time.Sleep(12 * time.Second)
	started := time.Now()
	clusterCmd(t, "start", node)
	t.Logf("%s restarted in %v", node, time.Since(started).Round(time.Millisecond))
	time.Sleep(5 * time.Second)
	finish(t, s, w, f, p, faultAt, convergeTimeout)
}

// TestCluster_BrokerStop: one broker stops answering for 30 s (SIGSTOP: its connections stay
// open, requests to it hang — the ambiguous produce, answered by a new leader); the relay is
// killed during the outage.
func TestCluster_BrokerStop(t *testing.T) {
	s, w, f, p := startCase(t)
	node, partition := busiestPartitionLeader(t, s)
	pid := nodePID(t, node)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	t.Logf("SIGSTOP %s (pid %d), leader of partition %d, for 30 s", node, pid, partition)
	faultAt := time.Now()
	signal(t, pid, syscall.SIGSTOP)
	time.Sleep(5 * time.Second)
	s.crashRelay()
	time.Sleep(25 * time.Second)
	signal(t, pid, syscall.SIGCONT)
	time.Sleep(5 * time.Second)
	finish(t, s, w, f, p, faultAt, convergeTimeout)
}

// TestCluster_CentrifugoKill: SIGKILL of one Centrifugo node. Its clients reconnect through
// haproxy to the other node and recover from the history in Redis. Its Kafka partitions stall
// until the consumer group gives them to a live member: Centrifugo v6.9.1's consumer keeps
// franz-go's 45 s session timeout (no setting), so the nodes are static members (a stable
// instance id) and the node is restarted 3 s later, as a supervisor would: it takes its
// partitions back at once. max_after_fault in FIGURES is the stall; the relay is killed during it.
func TestCluster_CentrifugoKill(t *testing.T) {
	s, w, f, p := startCase(t)
	t.Logf("SIGKILL centrifugo-1 (pid %d)", s.nodes[0].cmd.Process.Pid)
	faultAt := time.Now()
	s.nodes[0].kill()
	time.Sleep(1 * time.Second)
	s.crashRelay()
	time.Sleep(2 * time.Second)
	s.nodes[0].start(t)
	s.nodes[0].waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/health", s.nodePorts[0]), time.Minute)
	t.Logf("centrifugo-1 restarted %v after the kill", time.Since(faultAt).Round(time.Millisecond))
	time.Sleep(15 * time.Second)
	fig := finish(t, s, w, f, p, faultAt, convergeTimeout)
	if fig.recoveries == 0 {
		t.Errorf("no subscription recovered from Redis history after the node's SIGKILL")
	}
	// One page per node (startCase): the killed node's page reconnects to the other.
	if fig.pages.Recoveries == 0 {
		t.Errorf("no browser page's model recovered from Redis history after the node's SIGKILL (%d re-syncs)", fig.pages.Resyncs)
	}
	t.Logf("partition takeover stall (the longest commit-to-client time of an event committed after the kill): %v", fig.maxAfterFault.Round(time.Millisecond))
}

// TestCluster_RedisRestart: Redis, which runs without persistence, is SIGKILLed and started
// again empty: every channel's history and epoch are gone, so every subscriber's position is
// unrecoverable; each must notice, bootstrap again (GetState) and converge. The relay is killed
// while Redis is down.
func TestCluster_RedisRestart(t *testing.T) {
	s, w, f, p := startCase(t)
	pid := nodePID(t, "redis")
	t.Cleanup(func() { clusterCmd(t, "start", "redis") })
	t.Logf("SIGKILL redis (pid %d)", pid)
	faultAt := time.Now()
	signal(t, pid, syscall.SIGKILL)
	waitGone(pid)
	time.Sleep(2 * time.Second)
	s.crashRelay()
	time.Sleep(3 * time.Second)
	clusterCmd(t, "start", "redis")
	time.Sleep(10 * time.Second)
	fig := finish(t, s, w, f, p, faultAt, convergeTimeout)
	if fig.resyncs < caseSubscribers {
		t.Errorf("%d re-syncs after Redis lost every history; want at least one per subscriber (%d)", fig.resyncs, caseSubscribers)
	}
	if fig.pages.Resyncs < fig.pages.Pages {
		t.Errorf("%d browser page re-syncs after Redis lost every history; want at least one per page (%d)", fig.pages.Resyncs, fig.pages.Pages)
	}
}
