// Package integration holds pgoutbox's end-to-end tests. They run against a real PostgreSQL
// (wal_level=logical) and a real Apache Kafka broker — never mocks — and are compiled only with
// the `integration` build tag:
//
//	make test                                   # starts the local services, runs everything
//	go test -race -tags integration ./integration/
//
// The services are found through PGOUTBOX_TEST_DATABASE_URL and PGOUTBOX_TEST_KAFKA_BROKERS
// (defaults: the local services of deploy/local). A test whose service is unreachable skips when
// run by hand, and FAILS under CI=true: a CI run that silently skipped its proofs would be green
// and worthless.
//
// The helpers they share with cmd/pgoutbox-bench (services, private servers, the relay process,
// topic and slot readers, workload writers, Eventually) live in package harness (integration/harness).
//
// Every test gets its own table, publication, slot and topic, named from the test's name, and
// drops its slots when it ends: a forgotten slot pins WAL forever.
package integration
