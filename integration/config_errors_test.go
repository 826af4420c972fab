//go:build integration

package integration

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestRun_BadConfiguration: each misconfiguration makes `pgoutbox run` exit non-zero at
// start-up with one error line that names the problem and the fix — never a retry loop, never
// a silent start. (Kafka down is not a misconfiguration: the relay waits for it, see
// TestRun_KafkaDownAtStart.)
func TestRun_BadConfiguration(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 1)
	u, err := url.Parse(e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	withUser := func(user, pass string) string {
		v := *u
		v.User = url.UserPassword(user, pass)
		return v.String()
	}
	withHost := func(host string) string {
		v := *u
		v.Host = host
		return v.String()
	}
	tests := []struct {
		name string
		env  []string
		want []string // all of these in the error line
	}{
		{"wrong password", []string{"PGOUTBOX_DATABASE_URL=" + withUser(u.User.Username(), "wrong-secret")},
			[]string{"password authentication failed", "--database-url"}},
		{"unknown host", []string{"PGOUTBOX_DATABASE_URL=" + withHost("no-such-host.invalid:5432")},
			[]string{"connect to PostgreSQL", "no-such-host.invalid"}},
		{"missing topic", []string{"PGOUTBOX_TOPIC=" + e.Name + "_missing"},
			[]string{e.Name + "_missing", "pgoutbox setup --partitions"}},
		{"missing publication", []string{"PGOUTBOX_PUBLICATION=" + e.Name + "_missing"},
			[]string{"publication", e.Name + "_missing", "does not exist", "pgoutbox setup"}},
		{"wrong table", []string{"PGOUTBOX_TABLE=" + e.Name + "_missing"},
			[]string{e.Name + "_missing", "does not exist", "--table"}},
		{"missing slot", []string{"PGOUTBOX_SLOT=" + e.Name + "_missing"},
			[]string{"slot", e.Name + "_missing", "does not exist", "pgoutbox setup"}},
		{"non-replication role", []string{"PGOUTBOX_DATABASE_URL=" + withUser("pgoutbox_norepl", "pgoutbox_norepl")},
			[]string{"pgoutbox_norepl", "REPLICATION"}},
		{"invalid setting", []string{"PGOUTBOX_ON_BAD_ROW=ignore", "PGOUTBOX_LOG_FORMAT=xml"},
			[]string{"--on-bad-row", "--log-format"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := e.StartRelay(t, tt.env...)
			if code := p.WaitExit(time.Minute); code == 0 {
				t.Fatalf("exit 0, want non-zero")
			}
			log := p.Log.String()
			lines := strings.Split(strings.TrimSpace(log), "\n")
			last := lines[len(lines)-1]
			if tt.name == "invalid setting" {
				last = log // listed one per line, all at once
			}
			for _, w := range tt.want {
				if !strings.Contains(last, w) {
					t.Errorf("error does not mention %q:\n%s", w, last)
				}
			}
			t.Logf("%s", last)
			if strings.Contains(log, "wrong-secret") {
				t.Errorf("the password appears in the output:\n%s", log)
			}
		})
	}
}
