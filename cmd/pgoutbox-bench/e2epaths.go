package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
)

// e2ePath is one way a commit reaches a subscriber in scenario 10.
type e2ePath struct {
	key  string // for --e2e-paths and the JSON
	name string
	// setup creates what the path needs (tables, a relay, Connect), returns how the writer
	// emits the event and how Centrifugo is configured; its cleanup runs even after an error.
	setup func(ctx context.Context, b *bench) (*e2eSide, error)
}

// e2eSide is a path made ready for the writer and the subscribers.
type e2eSide struct {
	// event is the statement after the business UPDATE, in the same transaction; $1 is the
	// channel, $2 the event's value. Empty: the baseline, no event.
	event string
	// centrifugo is the path's part of Centrifugo's configuration; nil: no Centrifugo.
	centrifugo map[string]any
	// searchPath is the writer's search_path ("" for the server's): functions that name their
	// tables unqualified find them through it.
	searchPath string
	// config says how the path is configured, for the report.
	config  string
	relay   *relayProc
	slot    string // the replication slot whose walsender is metered
	connect int    // Kafka Connect's pid, 0 without
	cleanup []func() error
}

func (s *e2eSide) close() error {
	var errs []error
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		errs = append(errs, s.cleanup[i]())
	}
	return errors.Join(errs...)
}

// e2ePayload is every event's data: the value, the commit's clock as microseconds since the epoch
// (clock_timestamp() at the statement, microseconds before the commit), and a body that makes it
// about 200 bytes of JSON, as in the other scenarios.
var e2ePayload = fmt.Sprintf(`jsonb_build_object('v', $2::bigint, 't', (extract(epoch from clock_timestamp()) * 1e6)::bigint, 'body', repeat('x', %d))`, payloadFill)

// e2ePaths are scenario 10's paths, in the report's order.
var e2ePaths = []e2ePath{
	{"table", "pgoutbox, table outbox → Kafka → Centrifugo", pgoutboxPath(false)},
	{"send", "pgoutbox, WAL-only pgoutbox_send() → Kafka → Centrifugo", pgoutboxPath(true)},
	{"stream", "Centrifugo PostgreSQL stream broker (cf_stream_publish)", streamBrokerPath},
	{"cfoutbox", "Centrifugo PostgreSQL outbox consumer (polled table)", cfOutboxPath},
	{"debezium", "Debezium outbox router → Kafka → Centrifugo", debeziumPath},
	{"baseline", "baseline: the business UPDATE alone, no event", baselinePath},
}

func baselinePath(context.Context, *bench) (*e2eSide, error) {
	return &e2eSide{config: "no event, no Centrifugo: what the other paths add to the writer's commit"}, nil
}

// pgoutboxPath is a relay on an outbox of its own schema (table <schema>.outbox, the functions
// pgoutbox_send in it, message prefix = the schema), publishing into a topic Centrifugo's Kafka
// consumer reads as deploy/centrifugo/config.yaml does.
func pgoutboxPath(walOnly bool) func(context.Context, *bench) (*e2eSide, error) {
	return func(ctx context.Context, b *bench) (*e2eSide, error) {
		label, env := "e2et", []string{"PGOUTBOX_RETENTION=delete-after-publish"}
		if walOnly {
			label, env = "e2es", nil
		}
		s := &e2eSide{}
		o, err := b.newSchemaOutbox(ctx, label)
		s.cleanup = append(s.cleanup, o.dropSchema)
		if err != nil {
			return s, err
		}
		s.slot = o.Name
		s.event = fmt.Sprintf("INSERT INTO %s (channel, name, data) VALUES ($1, 'e2e', %s)", pgx.Identifier{o.Name, "outbox"}.Sanitize(), e2ePayload)
		s.config = "pgoutbox defaults (acks=all, exactly-once), --retention=delete-after-publish; "
		if walOnly {
			s.event = fmt.Sprintf("SELECT %s($1, 'e2e', %s)", pgx.Identifier{o.Name, "pgoutbox_send"}.Sanitize(), e2ePayload)
			s.config = "pgoutbox defaults (acks=all, exactly-once), pgoutbox_send(); "
		}
		s.config += "Centrifugo's Kafka consumer as deploy/centrifugo/config.yaml (publication-data mode, channel and idempotency key from pgoutbox's headers, franz-go defaults)"
		if s.relay, err = b.startRelay(o, append(o.schemaEnv(), env...)...); err != nil {
			return s, err
		}
		relay := s.relay
		s.cleanup = append(s.cleanup, relay.stop)
		if err := relay.WaitStreaming(ctx, time.Minute); err != nil {
			return s, err
		}
		s.centrifugo = kafkaConsumer(b.brokers(), o.Name, "pgoutbox-channel", "pgoutbox-position", "pgoutbox-")
		return s, nil
	}
}

// newE2ESchema creates a schema of its own for a Centrifugo path and drops it at cleanup.
func (b *bench) newE2ESchema(ctx context.Context, s *e2eSide, label string) (string, error) {
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	name := fmt.Sprintf("bench_%s_%x", label, r)
	s.cleanup = append(s.cleanup, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return b.exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
	})
	return name, b.exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize())
}

// withSearchPath is the database URL with search_path set to schema (pgx sends unknown URL
// parameters as run-time parameters), so that Centrifugo creates its tables there.
func withSearchPath(databaseURL, schema string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// streamBrokerPath is Centrifugo's PostgreSQL stream broker: the writer calls cf_stream_publish
// in its transaction; Centrifugo's per-shard workers read the stream table and deliver.
// Configuration: the broker's defaults (8 shards, pool of 16, 100 ms poll) with use_notify on,
// the low-latency wake-up its documentation offers (off by default: then up to 100 ms more).
// History size and TTL are passed as the namespace's, so that recovery works as on the others.
func streamBrokerPath(ctx context.Context, b *bench) (*e2eSide, error) {
	s := &e2eSide{}
	schema, err := b.newE2ESchema(ctx, s, "e2eb")
	if err != nil {
		return s, err
	}
	dsn, err := withSearchPath(b.opts.databaseURL, schema)
	if err != nil {
		return s, err
	}
	// cf_stream_publish names its tables unqualified: the application's search_path finds them,
	// as with the broker in the application's own schema.
	s.searchPath = schema + ", public"
	s.event = fmt.Sprintf("SELECT * FROM cf_stream_publish($1, %s, p_history_size => 1000, p_history_ttl => interval '24 hours')", e2ePayload)
	s.centrifugo = streamBrokerConfig(dsn)
	s.config = "broker type postgres, defaults (num_shards 8, pool_size 16, outbox poll 100 ms, table_prefix cf) + use_notify: true; " +
		"cf_stream_publish(channel, data, history size 1000, TTL 24 h) in the writer's transaction"
	return s, nil
}

// streamBrokerConfig is Centrifugo's stream broker on the database dsn.
func streamBrokerConfig(dsn string) map[string]any {
	return map[string]any{"broker": map[string]any{"enabled": true, "type": "postgres",
		"postgres": map[string]any{"dsn": dsn, "use_notify": true}}}
}

// createStreamBroker lets Centrifugo create its stream broker's tables and functions in schema
// (it does at start-up), then stops it: the write side measures the application alone.
func (b *bench) createStreamBroker(ctx context.Context, schema string) error {
	dsn, err := withSearchPath(b.opts.databaseURL, schema)
	if err != nil {
		return err
	}
	cf, err := b.startCentrifugo(ctx, b.tmp, streamBrokerConfig(dsn))
	if err != nil {
		return err
	}
	cf.stop()
	return nil
}

// cfOutboxDDL is Centrifugo's documented outbox table in schema, and the trigger that NOTIFYs
// the row's partition on the channel notify.
func cfOutboxDDL(schema string) (table, notify, ddl string) {
	table = pgx.Identifier{schema, "centrifugo_outbox"}.Sanitize()
	notify = schema + "_partition"
	fn := pgx.Identifier{schema, "centrifugo_notify_partition_change"}.Sanitize()
	return table, notify, fmt.Sprintf(`CREATE TABLE %[1]s (
	id bigserial PRIMARY KEY,
	method text NOT NULL,
	payload jsonb NOT NULL,
	partition integer NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE FUNCTION %[2]s() RETURNS trigger AS $$
BEGIN
	PERFORM pg_notify('%[3]s', NEW.partition::text);
	RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER centrifugo_notify_partition_trigger AFTER INSERT ON %[1]s FOR EACH ROW EXECUTE FUNCTION %[2]s();`, table, fn, notify)
}

// cfOutboxPath is Centrifugo's PostgreSQL outbox consumer on the table of its documentation
// (id, method, payload, partition, created_at) with the documented trigger that NOTIFYs the
// partition, so that Centrifugo does not wait for its 300 ms poll.
func cfOutboxPath(ctx context.Context, b *bench) (*e2eSide, error) {
	s := &e2eSide{}
	schema, err := b.newE2ESchema(ctx, s, "e2eo")
	if err != nil {
		return s, err
	}
	table, notify, ddl := cfOutboxDDL(schema)
	if err := b.exec(ctx, ddl); err != nil {
		return s, err
	}
	s.event = fmt.Sprintf("INSERT INTO %s (method, payload) VALUES ('publish', jsonb_build_object('channel', $1::text, 'data', %s))", table, e2ePayload)
	s.centrifugo = map[string]any{"consumers": []any{map[string]any{"name": "bench", "enabled": true, "type": "postgresql",
		"postgresql": map[string]any{"dsn": b.opts.databaseURL, "outbox_table_name": schema + ".centrifugo_outbox",
			"partition_notification_channel": notify}}}}
	s.config = "consumer type postgresql, defaults (1 partition, 100 rows per poll, 300 ms poll, advisory lock) + the documented NOTIFY trigger " +
		"(partition_notification_channel); the writer INSERTs {method: publish, payload: {channel, data}}"
	return s, nil
}

// debeziumPath is Centrifugo's documented CDC recipe: Debezium's PostgreSQL connector with its
// outbox EventRouter in Kafka Connect (scenario 9's harness: standalone, pgoutput, Connect's
// producer defaults, heartbeats), and Centrifugo's Kafka consumer in publication-data mode on its
// topic: the channel from a header the router adds (table.fields.additional.placement), the
// idempotency key from the router's "id" header (the row's sequence_id).
func debeziumPath(ctx context.Context, b *bench) (*e2eSide, error) {
	s := &e2eSide{}
	script, versions, err := b.installDebezium(ctx)
	if err != nil {
		return s, err
	}
	o, err := b.newOutbox(ctx, "e2ed", false)
	s.cleanup = append(s.cleanup, o.drop)
	if err != nil {
		return s, err
	}
	if err := o.dropSlot(ctx, o.Name); err != nil { // the relay's slot, unused here, would pin WAL
		return s, err
	}
	d := &debezium{b: b, o: o, script: script, name: o.Name + "_dbz",
		extra: "transforms.outbox.table.fields.additional.placement=channel:header:pgoutbox-channel\n"}
	s.cleanup = append(s.cleanup, d.drop)
	if err := d.create(ctx); err != nil {
		return s, err
	}
	c, err := d.start()
	if err != nil {
		return s, err
	}
	s.cleanup = append(s.cleanup, c.stop)
	if err := c.waitRunning(ctx, 5*time.Minute); err != nil {
		return s, err
	}
	s.slot, s.connect = d.name, c.cmd.Process.Pid
	s.event = fmt.Sprintf("INSERT INTO %s (channel, name, data) VALUES ($1, 'e2e', %s)", pgx.Identifier{o.Name}.Sanitize(), e2ePayload)
	s.centrifugo = kafkaConsumer(b.brokers(), d.name, "pgoutbox-channel", "id", "")
	s.config = fmt.Sprintf("%s; Connect standalone, Connect's producer defaults, offset flush %d ms, heartbeat %d ms; EventRouter key = channel, value = data, "+
		"channel also as a header; Centrifugo's Kafka consumer (publication-data mode, idempotency key = the router's id header)",
		versions, connectOffsetFlushMs, b.opts.debeziumHeartbeatMs)
	return s, nil
}
