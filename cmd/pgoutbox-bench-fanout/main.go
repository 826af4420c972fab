// Command pgoutbox-bench-fanout measures the fan-out: N WebSocket subscribers (centrifuge-go, in
// this process) on C channels, through the topology's WebSocket address (haproxy on the cluster
// topology, the node itself on the single-node one), while writers commit at a fixed rate. Per
// scenario it reports commit→client latency (the commit's clock_timestamp() against the
// subscriber's receive time, one clock), deliveries/s, gaps and duplicates, re-syncs (a client
// whose stream Centrifugo cannot resume reads its channel's value from the database again, as a
// model of the SDK does, and counts no gap for what that read holds), Centrifugo's RSS and CPU
// per node, the relay's, Kafka's and PostgreSQL's CPU, and the machine's busy share; with
// --kill it SIGKILLs a Centrifugo node at mid-run (cluster only) and reports the time until every
// client it had was connected again and recovered.
//
//	go run ./cmd/pgoutbox-bench-fanout [--quick] [--topology single|cluster|both] [--kill]
//
// Everything is on loopback and bounded: a fixed number of clients, a fixed duration. The
// topology must be running (`make up`, `PGOUTBOX_TOPOLOGY=cluster make up`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type options struct {
	subscribers int
	channels    int
	commitRate  int
	duration    time.Duration
	topologies  []string
	kill        bool
}

func main() {
	var o options
	var topology string
	quick := flag.Bool("quick", false, "a short run: 1,000 subscribers, 20 channels, 50 commits/s, 40 s")
	flag.IntVar(&o.subscribers, "subscribers", 10000, "WebSocket subscribers, each on one channel")
	flag.IntVar(&o.channels, "channels", 100, "channels; the subscribers are spread evenly over them")
	flag.IntVar(&o.commitRate, "commit-rate", 100, "commits per second over all channels (deliveries/s = rate × subscribers/channels)")
	flag.DurationVar(&o.duration, "duration", 5*time.Minute, "how long the writers commit")
	flag.StringVar(&topology, "topology", "both", "single, cluster or both")
	flag.BoolVar(&o.kill, "kill", true, "on the cluster, also a run that SIGKILLs centrifugo-1 at mid-run")
	flag.Parse()
	if *quick {
		o.subscribers, o.channels, o.commitRate, o.duration = 1000, 20, 50, 40*time.Second
	}
	switch topology {
	case "both":
		o.topologies = []string{"single", "cluster"}
	case "single", "cluster":
		o.topologies = []string{topology}
	default:
		fmt.Fprintf(os.Stderr, "--topology %q: want single, cluster or both\n", topology)
		os.Exit(2)
	}
	if o.subscribers < o.channels || o.channels < 1 || o.commitRate < 1 {
		fmt.Fprintln(os.Stderr, "want --channels ≥ 1, --subscribers ≥ --channels, --commit-rate ≥ 1")
		os.Exit(2)
	}
	// Ctrl-C or SIGTERM ends the scenario early; its relay, slot and table are still removed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var rows []result
	for _, top := range o.topologies {
		runs := []bool{false}
		if top == "cluster" && o.kill {
			runs = append(runs, true)
		}
		for _, kill := range runs {
			r, err := runScenario(ctx, o, top, kill)
			if err != nil {
				fmt.Fprintf(os.Stderr, "fan-out %s: %v\n", top, err)
				stop()
				os.Exit(1)

			}
			rows = append(rows, r)
			fmt.Fprintln(os.Stderr, r.String())
		}
	}
	printTable(o, rows)
}

// topologyEnv is `make env` for one topology: the KEY=value lines of deploy/local/services.sh.
func topologyEnv(topology string) (map[string]string, error) {
	cmd := exec.CommandContext(context.Background(), "deploy/local/services.sh", "env")
	cmd.Env = append(os.Environ(), "PGOUTBOX_TOPOLOGY="+topology)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("deploy/local/services.sh env (run it from the repository's root): %w", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env, nil
}
