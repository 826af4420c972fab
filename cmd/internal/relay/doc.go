// Package relay is the pipeline of `pgoutbox run`: replication sessions from a capture stream
// into the Kafka sink, the checkpoint ledger between them, reconnection, drain on shutdown, the
// outbox janitor in the acknowledgement path, and the slot monitor.
//
// It owns orchestration only. Reading PostgreSQL, writing Kafka and the ledger's arithmetic
// live in capture, sink and checkpoint; the relay reaches them through the small interfaces
// declared in deps.go, so every path — reconnect and backoff, a standby waiting for the slot,
// a sink or ledger failure, drain within and past the shutdown timeout, retention — is unit
// tested with fakes. [New] builds a Relay; [Relay.Run] blocks until the context is cancelled
// (a clean exit, nil) or the pipeline fails (an error: the process must exit non-zero).
//
// It lives under cmd/internal because the command and the benchmark both need it and nothing
// outside this module should.
package relay
