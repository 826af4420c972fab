//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgoutbox/pgoutbox/integration/harness"
)

// The SASL user of the secure broker. The password is distinctive so that a test can prove it
// never shows up in pgoutbox's output.
const (
	saslUser     = "alice"
	saslPassword = "alice-Scram-s3cret-7Qx"
)

// secureKafka is a private broker with, beside its PLAINTEXT listener (used by the tests to
// create and read topics), a SASL_SSL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; server TLS)
// and an SSL listener that requires a client certificate. Its certificates come from pki.
type secureKafka struct {
	*harness.PrivateKafka
	pki       *testPKI
	SASLSSL   string // host:port of the SASL_SSL listener
	MutualTLS string // host:port of the SSL listener (client certificate required)
}

func startSecureKafka(t *testing.T) *secureKafka {
	t.Helper()
	if testing.Short() {
		t.Skip("a private Kafka broker takes a few seconds to start; skipped with -short")
	}
	lib := harness.KafkaLibDir(t)
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	port, cport, sport, mport := harness.FreePort(t), harness.FreePort(t), harness.FreePort(t), harness.FreePort(t)
	// Keys given again replace the script's own; PEM values are inline, one line each (\n
	// escapes), which needs no key store password: Kafka 4 reads PEM without keytool.
	inline := func(b []byte) string { return strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", `\n`) }
	props := fmt.Sprintf(`listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d,SASL_SSL://127.0.0.1:%[3]d,SSL://127.0.0.1:%[4]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d,SASL_SSL://127.0.0.1:%[3]d,SSL://127.0.0.1:%[4]d
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_%[5]s="%[6]s";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.certificate.chain=%[7]s
ssl.keystore.key=%[8]s
ssl.truststore.type=PEM
ssl.truststore.certificates=%[9]s
listener.name.ssl.ssl.client.auth=required
`, port, cport, sport, mport, saslUser, saslPassword, inline(pki.ServerCertPEM), inline(pki.ServerKeyPEM), inline(pki.CAPEM))
	propsFile := filepath.Join(dir, "secure.properties")
	if err := os.WriteFile(propsFile, []byte(props), 0o600); err != nil {
		t.Fatal(err)
	}
	k := &secureKafka{
		PrivateKafka: harness.NewPrivateKafka(t, []string{fmt.Sprintf("127.0.0.1:%d", port)},
			append(os.Environ(),
				"PGOUTBOX_STATE_DIR="+filepath.Join(dir, "state"),
				fmt.Sprintf("PGOUTBOX_KAFKA_PORT=%d", port),
				fmt.Sprintf("PGOUTBOX_KAFKA_CONTROLLER_PORT=%d", cport),
				"PGOUTBOX_KAFKA_LIB_DIR="+lib,
				"PGOUTBOX_KAFKA_EXTRA_PROPERTIES="+propsFile,
				fmt.Sprintf("PGOUTBOX_KAFKA_SCRAM=SCRAM-SHA-256=[name=%[1]s,password=%[2]s]\nSCRAM-SHA-512=[name=%[1]s,password=%[2]s]", saslUser, saslPassword),
			)),
		pki:       pki,
		SASLSSL:   fmt.Sprintf("127.0.0.1:%d", sport),
		MutualTLS: fmt.Sprintf("127.0.0.1:%d", mport),
	}
	k.Start()
	t.Cleanup(k.Stop)
	return k
}

// TestKafkaSecurity: pgoutbox publishes through TLS and SASL listeners (SCRAM-SHA-256 with the
// password from a file, SCRAM-SHA-512, PLAIN, and a client certificate), `setup` talks to Kafka
// the same way, and each misconfiguration stops the start-up with an error that names the
// cause — never with the password, which no output contains, even at debug level.
func TestKafkaSecurity(t *testing.T) {
	t.Parallel()
	k := startSecureKafka(t)
	svc := harness.Services{DatabaseURL: harness.NeedPostgres(t), Brokers: k.Brokers}
	passwordFile := filepath.Join(t.TempDir(), "sasl-password")
	if err := os.WriteFile(passwordFile, []byte(saslPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	saslEnv := func(mechanism string, password ...string) []string {
		env := []string{"PGOUTBOX_KAFKA_BROKERS=" + k.SASLSSL, "PGOUTBOX_KAFKA_TLS=true",
			"PGOUTBOX_KAFKA_TLS_CA_FILE=" + k.pki.CAFile,
			"PGOUTBOX_KAFKA_SASL_MECHANISM=" + mechanism, "PGOUTBOX_KAFKA_SASL_USERNAME=" + saslUser}
		return append(env, password...)
	}
	mtlsEnv := []string{"PGOUTBOX_KAFKA_BROKERS=" + k.MutualTLS, "PGOUTBOX_KAFKA_TLS=true",
		"PGOUTBOX_KAFKA_TLS_CA_FILE=" + k.pki.CAFile,
		"PGOUTBOX_KAFKA_TLS_CERT_FILE=" + k.pki.ClientCertFile, "PGOUTBOX_KAFKA_TLS_KEY_FILE=" + k.pki.ClientKeyFile}

	t.Run("publishes", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			env  []string
		}{
			{"scram-sha-256, password file", saslEnv("SCRAM-SHA-256", "PGOUTBOX_KAFKA_SASL_PASSWORD_FILE="+passwordFile)},
			{"scram-sha-512", saslEnv("scram-sha-512", "PGOUTBOX_KAFKA_SASL_PASSWORD="+saslPassword)},
			{"plain over tls", saslEnv("PLAIN", "PGOUTBOX_KAFKA_SASL_PASSWORD="+saslPassword)},
			{"client certificate", mtlsEnv},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				e := harness.NewOutboxOn(t, svc, 2)
				// The topic exists: setup asks the controller through the secure listener anyway.
				out, err := e.PgoutboxWith(t, tt.env, "setup", "--partitions", "2")
				if err != nil || !strings.Contains(out, "topic "+e.Name+" exists") {
					t.Fatalf("setup through the secure listener: %v\n%s", err, out)
				}
				relay := e.StartRelay(t, tt.env...)
				relay.WaitLog("streaming started", 30*time.Second)
				for i := range 5 {
					insertReturningID(t, e, fmt.Sprintf("ch-%d", i), `{"secure":true}`, "")
				}
				harness.WaitRecords(t, k.Brokers, e.Name, 5, time.Minute)
				relay.Stop(30 * time.Second)
				checkNoSecret(t, out+relay.Log.String(), saslPassword)
			})
		}
	})

	t.Run("refuses", func(t *testing.T) {
		e := harness.NewOutboxOn(t, svc, 1)
		for _, tt := range []struct {
			name string
			env  []string
			want []string // in the last line, case-insensitive
		}{
			{"wrong password", saslEnv("SCRAM-SHA-256", "PGOUTBOX_KAFKA_SASL_PASSWORD=wrong-"+saslPassword),
				[]string{"sasl", "authentication"}},
			{"unknown CA", []string{"PGOUTBOX_KAFKA_BROKERS=" + k.SASLSSL, "PGOUTBOX_KAFKA_TLS=true",
				"PGOUTBOX_KAFKA_SASL_MECHANISM=SCRAM-SHA-256", "PGOUTBOX_KAFKA_SASL_USERNAME=" + saslUser,
				"PGOUTBOX_KAFKA_SASL_PASSWORD=" + saslPassword}, []string{"certificate signed by unknown authority", k.SASLSSL, "CA file"}},
			{"no client certificate", mtlsEnv[:3], []string{k.MutualTLS, "client certificate"}},
			{"missing CA file", saslEnv("SCRAM-SHA-256", "PGOUTBOX_KAFKA_SASL_PASSWORD="+saslPassword,
				"PGOUTBOX_KAFKA_TLS_CA_FILE=/nonexistent/ca.crt"), []string{"--kafka-tls-ca-file", "/nonexistent/ca.crt"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				relay := e.StartRelay(t, append(tt.env, "PGOUTBOX_KAFKA_REQUEST_TIMEOUT=5s")...)
				if code := relay.WaitExit(2 * time.Minute); code == 0 {
					t.Fatal("exit 0, want non-zero")
				}
				log := relay.Log.String()
				last := strings.ToLower(lastLine(log))
				for _, w := range tt.want {
					if !strings.Contains(last, strings.ToLower(w)) {
						t.Errorf("error does not mention %q:\n%s", w, lastLine(log))
					}
				}
				t.Logf("%s", lastLine(log))
				checkNoSecret(t, log, saslPassword)
			})
		}
	})
}

// checkNoSecret fails the test when output contains the secret.
func checkNoSecret(t *testing.T, output, secret string) {
	t.Helper()
	if strings.Contains(output, secret) {
		t.Errorf("a secret appears in the output:\n%s", output)
	}
}
