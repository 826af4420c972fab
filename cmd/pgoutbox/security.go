package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/pgoutbox/pgoutbox/sink"
)

// secretFile is the flag.Value of a *-file setting (PGOUTBOX_*_FILE): it reads the secret from
// the file it names into another setting, so that secrets can come from mounted files (container
// secrets) instead of the environment, which other processes of the host may read. String
// shows the path, never the secret.
type secretFile struct {
	path   *string // the file, as given
	secret *string // the setting it fills in
	of     string  // that setting's flag name
}

func (v *secretFile) Set(path string) error {
	if path == "" {
		return nil
	}
	// Both set would leave one silently ignored: say which two conflict instead. (A second
	// file, e.g. a flag over the variable, replaces the first.)
	if *v.secret != "" && *v.path == "" {
		return fmt.Errorf("--%s (%s) is set too; set only one of them", v.of, envName(v.of))
	}
	b, err := os.ReadFile(path) //nolint:gosec // reading the file the operator names is the point
	if err != nil {
		return err // names the path, not the contents
	}
	s := strings.TrimRight(string(b), "\r\n") // files written by editors and `echo` end in a newline
	if s == "" {
		return fmt.Errorf("%s is empty", path)
	}
	*v.path, *v.secret = path, s
	return nil
}

func (v *secretFile) String() string {
	if v.path == nil {
		return ""
	}
	return *v.path
}

// kafkaSecurity is the sink's TLS and SASL configuration.
func (c *Config) kafkaSecurity() sink.Security {
	return sink.Security{
		TLS:           c.KafkaTLS,
		CAFile:        c.KafkaTLSCAFile,
		CertFile:      c.KafkaTLSCertFile,
		KeyFile:       c.KafkaTLSKeyFile,
		SASLMechanism: strings.ToUpper(c.KafkaSASLMechanism),
		SASLUsername:  c.KafkaSASLUsername,
		SASLPassword:  c.KafkaSASLPassword,
	}
}

// securityProblems lists the mistakes in the TLS and SASL settings, by flag name, and the TLS
// files that cannot be found: the rules are the sink's (sink.Security.Problems).
func (c *Config) securityProblems() []error {
	s := c.kafkaSecurity()
	names := sink.SecurityNames{ //nolint:gosec // flag names, not credentials
		TLS:       "--kafka-tls (PGOUTBOX_KAFKA_TLS=true)",
		CAFile:    "--kafka-tls-ca-file",
		CertFile:  "--kafka-tls-cert-file",
		KeyFile:   "--kafka-tls-key-file",
		Mechanism: "--kafka-sasl-mechanism",
		Username:  "--kafka-sasl-username",
		Password:  "--kafka-sasl-password (or --kafka-sasl-password-file)",
	}
	return append(s.Problems(names), s.MissingFiles(names)...)
}
