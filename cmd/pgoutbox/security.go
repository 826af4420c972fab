package main

import (
	"errors"
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

// securityProblems lists the mistakes in the TLS and SASL settings, by flag name. The files'
// contents are read when the Kafka client is made, which fails the start-up too.
func (c *Config) securityProblems() []error {
	var errs []error
	bad := func(msg string) { errs = append(errs, errors.New(msg)) }
	if !c.KafkaTLS && (c.KafkaTLSCAFile != "" || c.KafkaTLSCertFile != "" || c.KafkaTLSKeyFile != "") {
		bad("--kafka-tls-ca-file, --kafka-tls-cert-file and --kafka-tls-key-file need --kafka-tls (PGOUTBOX_KAFKA_TLS=true)")
	}
	if (c.KafkaTLSCertFile == "") != (c.KafkaTLSKeyFile == "") {
		bad("--kafka-tls-cert-file and --kafka-tls-key-file go together: set both or neither")
	}
	for _, f := range []struct{ flag, path string }{
		{"kafka-tls-ca-file", c.KafkaTLSCAFile}, {"kafka-tls-cert-file", c.KafkaTLSCertFile}, {"kafka-tls-key-file", c.KafkaTLSKeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", f.flag, err))
		}
	}
	switch strings.ToUpper(c.KafkaSASLMechanism) {
	case "":
		if c.KafkaSASLUsername != "" || c.KafkaSASLPassword != "" {
			bad("--kafka-sasl-username/--kafka-sasl-password are set but --kafka-sasl-mechanism is not: set it to SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN")
		}
	case sink.SASLPlain, sink.SASLScramSHA256, sink.SASLScramSHA512:
		if c.KafkaSASLUsername == "" || c.KafkaSASLPassword == "" {
			bad("--kafka-sasl-mechanism needs --kafka-sasl-username and --kafka-sasl-password (or --kafka-sasl-password-file)")
		}
	default:
		errs = append(errs, fmt.Errorf("--kafka-sasl-mechanism %q: use SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN", c.KafkaSASLMechanism))
	}
	return errs
}
