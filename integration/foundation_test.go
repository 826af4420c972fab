//go:build integration

package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/segmentio/kafka-go"
)

// TestPostgres_PgoutputRoundTrip proves the PostgreSQL ground is real: a logical slot with
// pgoutput on a publication delivers committed inserts, decoded with pglogrepl.
func TestPostgres_PgoutputRoundTrip(t *testing.T) {
	t.Parallel()
	url := harness.NeedPostgres(t)
	name := harness.UniqueName(t)

	harness.ExecSQL(t, url, fmt.Sprintf(`CREATE TABLE %s (id bigserial PRIMARY KEY, channel text NOT NULL, data jsonb)`, name))
	t.Cleanup(func() { harness.ExecSQL(t, url, fmt.Sprintf(`DROP TABLE IF EXISTS %s`, name)) })
	harness.ExecSQL(t, url, fmt.Sprintf(`CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert')`, name, name))
	t.Cleanup(func() { harness.ExecSQL(t, url, fmt.Sprintf(`DROP PUBLICATION IF EXISTS %s`, name)) })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	repl := harness.ReplicationConn(t, url)
	harness.DropSlotAtCleanup(t, url, name)
	slot, err := pglogrepl.CreateReplicationSlot(ctx, repl, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication})
	if err != nil {
		t.Fatalf("create slot: %v", err)
	}

	const rows = 5
	for i := range rows {
		harness.ExecSQL(t, url, fmt.Sprintf(`INSERT INTO %s (channel, data) VALUES ($1, $2)`, name),
			fmt.Sprintf("ch-%d", i), fmt.Sprintf(`{"n": %d}`, i))
	}

	start, err := pglogrepl.ParseLSN(slot.ConsistentPoint)
	if err != nil {
		t.Fatal(err)
	}
	err = pglogrepl.StartReplication(ctx, repl, name, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", fmt.Sprintf("publication_names '%s'", name)},
	})
	if err != nil {
		t.Fatalf("start replication: %v", err)
	}

	var got []string
	var begins, commits int
	relations := map[uint32]*pglogrepl.RelationMessage{}
	for len(got) < rows || commits < rows {
		msg, err := repl.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive after %d rows: %v", len(got), err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			t.Fatal(err)
		}
		lm, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			t.Fatal(err)
		}
		switch m := lm.(type) {
		case *pglogrepl.BeginMessage:
			begins++
		case *pglogrepl.CommitMessage:
			commits++
			if m.TransactionEndLSN <= m.CommitLSN {
				t.Errorf("end LSN %s not after commit LSN %s", m.TransactionEndLSN, m.CommitLSN)
			}
		case *pglogrepl.RelationMessage:
			relations[m.RelationID] = m
		case *pglogrepl.InsertMessage:
			rel := relations[m.RelationID]
			if rel == nil || rel.RelationName != name {
				t.Fatalf("insert into unknown relation %d", m.RelationID)
			}
			got = append(got, string(m.Tuple.Columns[1].Data)+" "+string(m.Tuple.Columns[2].Data))
		}
	}
	if begins != rows {
		t.Errorf("begins = %d, want %d", begins, rows)
	}
	for i := range rows {
		if want := fmt.Sprintf(`ch-%d {"n": %d}`, i, i); got[i] != want {
			t.Errorf("row %d = %q, want %q", i, got[i], want)
		}
	}
}

// TestKafka_KeyedProduceConsume proves the Kafka ground is real: a keyed, acks=all write to a
// 3-partition topic comes back with its keys, values and headers, in order within each partition,
// on the partition the Java client's murmur2 would choose.
func TestKafka_KeyedProduceConsume(t *testing.T) {
	t.Parallel()
	brokers := harness.NeedKafka(t)
	topic := harness.UniqueName(t)
	harness.CreateTopic(t, brokers, topic, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		RequiredAcks: kafka.RequireAll,
		Balancer:     kafka.Murmur2Balancer{Consistent: true},
		BatchTimeout: 5 * time.Millisecond,
	}
	defer func() { _ = w.Close() }()

	const n, keys = 300, 10
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{
			Key:     fmt.Appendf(nil, "key-%d", i%keys),
			Value:   fmt.Appendf(nil, "%d", i),
			Headers: []kafka.Header{{Key: "seq", Value: fmt.Appendf(nil, "%d", i)}},
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("write: %v", err)
	}

	balancer := kafka.Murmur2Balancer{Consistent: true}
	seen := 0
	for p := range 3 {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		end, err := harness.LastOffset(ctx, brokers, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		lastPerKey := map[string]int{}
		for off := int64(0); off < end; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read partition %d: %v", p, err)
			}
			var v int
			_, _ = fmt.Sscanf(string(m.Value), "%d", &v)
			if want := balancer.Balance(kafka.Message{Key: m.Key}, 0, 1, 2); want != p {
				t.Errorf("key %s on partition %d, murmur2 says %d", m.Key, p, want)
			}
			if string(m.Key) != fmt.Sprintf("key-%d", v%keys) {
				t.Errorf("value %d came with key %s", v, m.Key)
			}
			if len(m.Headers) != 1 || string(m.Headers[0].Value) != string(m.Value) {
				t.Errorf("value %d came with headers %v", v, m.Headers)
			}
			if last, ok := lastPerKey[string(m.Key)]; ok && v <= last {
				t.Errorf("partition %d: %d after %d for key %s", p, v, last, m.Key)
			}
			lastPerKey[string(m.Key)] = v
			seen++
		}
		_ = r.Close()
	}
	if seen != n {
		t.Errorf("consumed %d messages, want %d", seen, n)
	}
}
