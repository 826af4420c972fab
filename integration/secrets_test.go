//go:build integration

package integration

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// TestSecrets_NeverInOutput: passwords given by environment or by *_FILE never appear in what
// the binary prints — its --help, invalid-configuration report, and the errors of a failed
// connection to PostgreSQL or Kafka — at debug level, for every command.
func TestSecrets_NeverInOutput(t *testing.T) {
	t.Parallel()
	e := harness.NewOutbox(t, 1)
	u, err := url.Parse(e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	withPassword := func(pass string) string {
		v := *u
		v.User = url.UserPassword(u.User.Username(), pass)
		return v.String()
	}
	file := func(content string) string {
		path := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	port := u.Port()
	tests := []struct {
		name   string
		args   []string
		env    []string
		secret string
		want   string // in the output
	}{
		{"help", []string{"run", "--help"},
			[]string{"PGOUTBOX_DATABASE_URL=" + withPassword("help-s3cret-1"), "PGOUTBOX_KAFKA_SASL_PASSWORD=help-s3cret-1"},
			"help-s3cret-1", "PGOUTBOX_KAFKA_SASL_PASSWORD_FILE"},
		{"wrong password from a file", []string{"run"},
			[]string{"PGOUTBOX_DATABASE_URL=", "PGOUTBOX_DATABASE_URL_FILE=" + file(withPassword("file-s3cret-2"))},
			"file-s3cret-2", "password authentication failed"},
		{"wrong password in a key=value string", []string{"setup"},
			[]string{fmt.Sprintf("PGOUTBOX_DATABASE_URL=host=127.0.0.1 port=%s user=pgoutbox dbname=pgoutbox password=kv-s3cret-3", port)},
			"kv-s3cret-3", "password authentication failed"},
		{"unreachable server", []string{"status"},
			[]string{"PGOUTBOX_DATABASE_URL=postgres://pgoutbox:down-s3cret-4@127.0.0.1:" + fmt.Sprint(harness.FreePort(t)) + "/pgoutbox"},
			"down-s3cret-4", "(database postgres://pgoutbox:"}, // the URL, its password redacted
		{"both URL and URL file", []string{"run"},
			[]string{"PGOUTBOX_DATABASE_URL=" + withPassword("dup-s3cret-5"), "PGOUTBOX_DATABASE_URL_FILE=" + file(withPassword("dup-s3cret-5"))},
			"dup-s3cret-5", "set only one of them"},
		{"SASL against a broker without SASL", []string{"run"},
			[]string{"PGOUTBOX_KAFKA_SASL_MECHANISM=SCRAM-SHA-512", "PGOUTBOX_KAFKA_SASL_USERNAME=alice",
				"PGOUTBOX_KAFKA_SASL_PASSWORD_FILE=" + file("sasl-s3cret-6"), "PGOUTBOX_KAFKA_REQUEST_TIMEOUT=5s"},
			"sasl-s3cret-6", "kafka"},
		{"invalid SASL settings", []string{"setup", "--partitions", "1"},
			[]string{"PGOUTBOX_KAFKA_SASL_MECHANISM=KERBEROS", "PGOUTBOX_KAFKA_SASL_PASSWORD=bad-s3cret-7"},
			"bad-s3cret-7", "--kafka-sasl-mechanism"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := e.PgoutboxWith(t, append(tt.env, "PGOUTBOX_LOG_LEVEL=debug"), tt.args...)
			if tt.name != "help" && err == nil {
				t.Errorf("exit 0, want a failure:\n%s", out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output does not mention %q:\n%s", tt.want, out)
			}
			checkNoSecret(t, out, tt.secret)
			t.Logf("%s", lastLine(out))
		})
	}
}
