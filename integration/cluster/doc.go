// Package cluster holds the fault tests of the cluster topology (deploy/local/cluster.sh: three
// Kafka brokers, Redis, two Centrifugo nodes behind haproxy). They run with the `cluster` build
// tag, from `make test-cluster`, against real services: each test kills, stops or restarts a
// node mid-stream while writers commit counters on many channels and centrifuge-go subscribers
// and Chromium pages on the models SDK (@pgoutbox/models) follow them, then checks that every
// subscriber's and page's state equals the database's with no gap and no double-apply, and that
// Kafka holds every committed event exactly once.
package cluster
