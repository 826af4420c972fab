package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSecretFile_FromEnvironment(t *testing.T) {
	t.Setenv("PGOUTBOX_DATABASE_URL_FILE", writeFile(t, "postgres://u:from-file@h:5432/db\n"))
	t.Setenv("PGOUTBOX_KAFKA_SASL_PASSWORD_FILE", writeFile(t, "s3cret\r\n"))
	var c Config
	fs, err := newFlagSet("run", scopeRun, &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != "postgres://u:from-file@h:5432/db" || c.KafkaSASLPassword != "s3cret" {
		t.Errorf("got URL %q, password %q; want the files' contents without the line end", c.DatabaseURL, c.KafkaSASLPassword)
	}
}

func TestSecretFile_FlagOverEnvironment(t *testing.T) {
	t.Setenv("PGOUTBOX_KAFKA_SASL_PASSWORD_FILE", writeFile(t, "from-env-file"))
	var c Config
	fs, err := newFlagSet("run", scopeRun, &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--kafka-sasl-password-file", writeFile(t, "from-flag-file")}); err != nil {
		t.Fatal(err)
	}
	if c.KafkaSASLPassword != "from-flag-file" {
		t.Errorf("password %q, want the flag's file", c.KafkaSASLPassword)
	}
}

func TestSecretFile_Problems(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"both set", map[string]string{"PGOUTBOX_DATABASE_URL": "postgres://u:in-env@h/db",
			"PGOUTBOX_DATABASE_URL_FILE": writeFile(t, "postgres://u:in-file@h/db")},
			[]string{"PGOUTBOX_DATABASE_URL_FILE", "PGOUTBOX_DATABASE_URL)", "only one"}},
		{"missing file", map[string]string{"PGOUTBOX_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password"},
			[]string{"PGOUTBOX_KAFKA_SASL_PASSWORD_FILE", "/nonexistent/password"}},
		{"empty file", map[string]string{"PGOUTBOX_KAFKA_SASL_PASSWORD_FILE": writeFile(t, "\n")}, []string{"is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var c Config
			_, err := newFlagSet("run", scopeRun, &c)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
			for _, secret := range []string{"in-env", "in-file"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret: %v", err)
				}
			}
		})
	}
}

func TestConfig_SecurityProblems(t *testing.T) {
	t.Parallel()
	valid := func() Config {
		var c Config
		_ = c.settings()
		c.DatabaseURL, c.KafkaBrokers = "postgres://u@h:5432/db", "k:9092"
		return c
	}
	cert := writeFile(t, "not checked here")
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"plaintext", func(*Config) {}, nil},
		{"scram over tls", func(c *Config) {
			c.KafkaTLS, c.KafkaTLSCAFile = true, cert
			c.KafkaSASLMechanism, c.KafkaSASLUsername, c.KafkaSASLPassword = "scram-sha-256", "u", "p"
		}, nil},
		{"files without tls", func(c *Config) { c.KafkaTLSCAFile = cert }, []string{"need --kafka-tls"}},
		{"cert without key", func(c *Config) { c.KafkaTLS, c.KafkaTLSCertFile = true, cert }, []string{"--kafka-tls-key-file"}},
		{"missing file", func(c *Config) { c.KafkaTLS, c.KafkaTLSCAFile = true, "/nonexistent/ca.pem" },
			[]string{"--kafka-tls-ca-file", "/nonexistent/ca.pem"}},
		{"unknown mechanism", func(c *Config) { c.KafkaSASLMechanism = "GSSAPI" }, []string{`"GSSAPI"`}},
		{"no password", func(c *Config) { c.KafkaSASLMechanism, c.KafkaSASLUsername = "PLAIN", "u" },
			[]string{"--kafka-sasl-password-file"}},
		{"password without mechanism", func(c *Config) { c.KafkaSASLPassword = "hunter2" }, []string{"--kafka-sasl-mechanism"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tt.edit(&c)
			err := c.Validate(scopeRun)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// TestHelp_HidesSecrets: --help prints each setting's default, never the value that the
// environment gave it.
func TestHelp_HidesSecrets(t *testing.T) {
	t.Setenv("PGOUTBOX_DATABASE_URL", "postgres://u:db-secret-1@h:5432/db")
	t.Setenv("PGOUTBOX_KAFKA_SASL_PASSWORD", "sasl-secret-2")
	for _, args := range [][]string{{"run", "--help"}, {"setup", "-h"}, {"status", "--help"}, {"help", "run"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, stderr.String())
		}
		out := stdout.String() + stderr.String()
		for _, secret := range []string{"db-secret-1", "sasl-secret-2"} {
			if strings.Contains(out, secret) {
				t.Errorf("%v shows %q:\n%s", args, secret, out)
			}
		}
		if !strings.Contains(out, "PGOUTBOX_DATABASE_URL_FILE") {
			t.Errorf("%v does not list PGOUTBOX_DATABASE_URL_FILE:\n%s", args, out)
		}
	}
}
