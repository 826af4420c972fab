// Package pipeline is the heart of `pgoutbox run`: it moves outbox rows from a capture stream
// into the Kafka sink and confirms WAL to PostgreSQL only once Kafka has acknowledged it.
//
// Its contract:
//   - rows reach Kafka in commit order per key, and the position confirmed to PostgreSQL never
//     passes a row Kafka has not acknowledged (the checkpoint ledger between stream and sink),
//     nor WAL that the publication guard has not proven to be covered by the publication;
//   - rows and bytes in flight are bounded by Config.Window: a slow Kafka stops reading, it
//     never grows memory;
//   - a lost connection is retried with backoff, a standby waits while another instance holds
//     the slot, and each new session restarts at the slot's confirmed position: rows after it
//     are sent again, and the sink's tail reads skip what Kafka already holds (exactly-once);
//   - on shutdown the stream stops at once and the sink drains for up to ShutdownTimeout; the
//     last confirmed position is then sent to the server;
//   - with a Deleter the janitor deletes published outbox rows before their position is
//     confirmed; the slot monitor reports the slot's alarm level.
//
// It owns orchestration only. Reading PostgreSQL, writing Kafka and the ledger's arithmetic
// live in capture, sink and checkpoint; the pipeline reaches them through the small interfaces
// declared in deps.go, so every path — reconnect and backoff, a standby waiting for the slot,
// a sink or ledger failure, drain within and past the shutdown timeout, retention — is unit
// tested with fakes. [New] builds a Pipeline from a valid [Config] ([Config.Validate]);
// [Pipeline.Run] blocks until the context is cancelled (a clean exit, nil) or the pipeline
// fails (an error: the process must exit non-zero). Every goroutine it starts is joined in an
// errgroup before Run returns.
//
// It imports capture, sink, checkpoint and record, never a driver: the command (cmd/pgoutbox)
// and the benchmark build its dependencies.
package pipeline
