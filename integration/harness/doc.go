// Package harness starts and drives the real services that pgoutbox is checked against, for the
// integration tests (package integration) and for the benchmark (cmd/pgoutbox-bench): the shared
// PostgreSQL and Kafka (found through PGOUTBOX_TEST_DATABASE_URL and PGOUTBOX_TEST_KAFKA_BROKERS),
// private PostgreSQL clusters, Kafka brokers and Centrifugo servers on free ports, outboxes
// made with `pgoutbox setup`, the relay as a real process, topic and slot readers, workload
// writers, the relay's metrics and memory, and Eventually, the one polling loop.
//
// Functions that take a testing.TB fail (or, for a missing service, skip) the test and clean up
// when it ends; under CI=true a missing service fails, never skips (see Unavailable). Functions
// that take a context return errors instead, for the benchmark.
//
// It is a helper of tests and tools only: no package of the product imports it (depguard in
// .golangci.yml enforces that).
package harness
