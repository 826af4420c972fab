//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"

	"github.com/centrifugal/centrifuge-go"
	"go.yaml.in/yaml/v3"

	pgrecord "github.com/pgoutbox/pgoutbox/record"
)

// fanoutTags are the publication tags a browser reads: the pgoutbox-* headers, which the
// shipped Centrifugo configuration turns into tags without their prefix.
var fanoutTags = []string{"id", "name", "commit-lsn", "commit-index", "position", "xid", "channel"}

// connectClient connects a centrifuge-go client as user; the test's end closes it.
func connectClient(t *testing.T, cf *harness.Centrifugo, user string) *centrifuge.Client {
	t.Helper()
	c := centrifuge.NewJsonClient(cf.WSURL(), centrifuge.Config{Token: cf.Token(user), HandshakeTimeout: harness.ClientHandshakeTimeout})
	if err := c.Connect(); err != nil {
		t.Fatalf("connect to centrifugo: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestFanout_EndToEnd: a committed outbox row reaches a WebSocket client through the relay,
// Kafka and Centrifugo's Kafka consumer, with no code between them: data = the payload, and
// every pgoutbox-* header as a tag, among them the transaction's full xid (equal to what
// pg_current_xact_id() said inside it) and the optimistic-update mutation id and rejected flag.
func TestFanout_EndToEnd(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 3)
	harness.ExecSQL(t, e.DatabaseURL, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN mutation_id text, ADD COLUMN rejected boolean`, e.Name))
	e.StartRelay(t, "PGOUTBOX_MUTATION_ID_COLUMN=mutation_id", "PGOUTBOX_REJECTED_COLUMN=rejected")
	cf := harness.StartCentrifugo(t, e.Brokers, e.Name)

	const channel = "outbox:e2e"
	client := connectClient(t, cf, "alice")
	sub, err := client.NewSubscription(channel, centrifuge.SubscriptionConfig{Positioned: true, Recoverable: true, Token: cf.SubToken("alice", channel)})
	if err != nil {
		t.Fatal(err)
	}
	pubs := make(chan centrifuge.PublicationEvent, 10)
	subscribed := make(chan struct{}, 1)
	sub.OnPublication(func(ev centrifuge.PublicationEvent) { pubs <- ev })
	sub.OnSubscribed(func(centrifuge.SubscribedEvent) { subscribed <- struct{}{} })
	if err := sub.Subscribe(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-subscribed:
	case <-time.After(20 * time.Second):
		t.Fatal("not subscribed within 20s")
	}

	ctx := context.Background()
	conn := harness.Connect(t, e.DatabaseURL)
	var xids [2]uint64
	for i, row := range []struct{ data, mutation, rejected any }{
		{`{"n": 1}`, nil, nil},
		{`{"n": 2}`, "m-42", true},
	} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&xids[i]); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (channel, name, data, mutation_id, rejected) VALUES ($1, 'todo.saved', $2, $3, $4)`, e.Name),
			channel, row.data, row.mutation, row.rejected)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}

	var prev pgrecord.Position
	var got [2]centrifuge.PublicationEvent
	for i := range 2 {
		var ev centrifuge.PublicationEvent
		select {
		case ev = <-pubs:
		case <-time.After(60 * time.Second):
			t.Fatalf("publication %d did not reach the client within 60s", i+1)
		}
		var data struct{ N int }
		if err := json.Unmarshal(ev.Data, &data); err != nil || data.N != i+1 {
			t.Errorf("publication %d: data %s, want {\"n\": %d}", i+1, ev.Data, i+1)
		}
		for _, k := range fanoutTags {
			if ev.Tags[k] == "" {
				t.Errorf("publication %d: no tag %q (tags %v)", i+1, k, ev.Tags)
			}
		}
		if ev.Tags["channel"] != channel || ev.Tags["name"] != "todo.saved" {
			t.Errorf("publication %d: tags channel=%q name=%q", i+1, ev.Tags["channel"], ev.Tags["name"])
		}
		if got := ev.Tags["xid"]; got != strconv.FormatUint(xids[i], 10) {
			t.Errorf("publication %d: tag xid %q, want the transaction's pg_current_xact_id() %d", i+1, got, xids[i])
		}
		pos, err := pgrecord.ParsePosition(ev.Tags["position"])
		if err != nil {
			t.Errorf("publication %d: %v", i+1, err)
		} else if pos.Compare(prev) <= 0 {
			t.Errorf("publication %d: position %v not after %v", i+1, pos, prev)
		}
		prev = pos
		got[i] = ev
		t.Logf("publication %d: offset %d tags %v data %s", i+1, ev.Offset, ev.Tags, ev.Data)
	}
	// The first row had no mutation id and no rejected flag (NULL): no such tags. The second is
	// a rejected optimistic update, which reaches its client with its mutation id.
	if _, ok := got[0].Tags["mutation-id"]; ok {
		t.Errorf("publication 1: tag mutation-id %q for a NULL column", got[0].Tags["mutation-id"])
	}
	if got[1].Tags["mutation-id"] != "m-42" || got[1].Tags["rejected"] != "true" {
		t.Errorf("publication 2: tags mutation-id=%q rejected=%q, want m-42 and true", got[1].Tags["mutation-id"], got[1].Tags["rejected"])
	}
}

// TestFanout_ConfigAndCompose: the local script and docker-compose run the same Centrifugo
// version and configuration, and that configuration reads pgoutbox's header names.
func TestFanout_ConfigAndCompose(t *testing.T) {
	t.Parallel()
	script, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "local", "centrifugo.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^VERSION=(\S+)$`).FindSubmatch(script); m == nil || string(m[1]) != harness.CentrifugoVersion {
		t.Errorf("deploy/local/centrifugo.sh: VERSION %q, want %s", m, harness.CentrifugoVersion)
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	s, ok := c.Services["centrifugo"]
	switch {
	case !ok:
		t.Fatal("docker-compose.yml has no centrifugo service")
	case s.Image != "centrifugo/centrifugo:"+harness.CentrifugoVersion:
		t.Errorf("centrifugo: image %s, want centrifugo/centrifugo:%s", s.Image, harness.CentrifugoVersion)
	}
	found := false
	for _, v := range s.Volumes {
		found = found || v == "./deploy/centrifugo/config.yaml:/centrifugo/config.yaml:ro"
	}
	if !found {
		t.Errorf("centrifugo: volumes %v do not mount deploy/centrifugo/config.yaml", s.Volumes)
	}

	// The Kafka consumer reads pgoutbox's header names.
	cfgText, err := os.ReadFile(harness.CentrifugoConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Consumers []struct {
			Name  string `yaml:"name"`
			Type  string `yaml:"type"`
			Kafka struct {
				Mode struct {
					Enabled        bool   `yaml:"enabled"`
					Channels       string `yaml:"channels_header"`
					IdempotencyKey string `yaml:"idempotency_key_header"`
					TagsPrefix     string `yaml:"tags_header_prefix"`
				} `yaml:"publication_data_mode"`
			} `yaml:"kafka"`
		} `yaml:"consumers"`
	}
	if err := yaml.Unmarshal(cfgText, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Consumers) != 1 || cfg.Consumers[0].Name != "pgoutbox" || cfg.Consumers[0].Type != "kafka" {
		t.Fatalf("config: consumers %+v, want one kafka consumer named pgoutbox (the env variables name it)", cfg.Consumers)
	}
	m := cfg.Consumers[0].Kafka.Mode
	if !m.Enabled || m.Channels != "pgoutbox-channel" || m.IdempotencyKey != "pgoutbox-position" || m.TagsPrefix != "pgoutbox-" {
		t.Errorf("config: publication_data_mode %+v, want channels from pgoutbox-channel, idempotency key pgoutbox-position, tags prefix pgoutbox-", m)
	}
}
