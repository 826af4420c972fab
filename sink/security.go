package sink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms accepted by Security.SASLMechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Security configures how the connections to the brokers are encrypted and authenticated. The
// zero value is plaintext without authentication (a broker's PLAINTEXT listener).
//
// Files are read by New, so a missing or malformed file is an error at start-up, not at the
// first produce request.
type Security struct {
	// TLS encrypts every connection and verifies the brokers' certificates (and their host
	// names) against CAFile, or the system's roots when CAFile is "". Default false.
	TLS bool

	// CAFile is a PEM file with the certificates of the CAs that signed the brokers'
	// certificates. Needs TLS. Default "": the system's roots.
	CAFile string

	// CertFile and KeyFile are a PEM client certificate and its private key, presented to
	// brokers that authenticate clients by certificate (ssl.client.auth=required). Both or
	// neither; they need TLS. Default none.
	CertFile string
	KeyFile  string

	// SASLMechanism is "" (no SASL), "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512" (any case).
	// PLAIN sends the password as is: use it only with TLS. Default "".
	SASLMechanism string

	// SASLUsername and SASLPassword are the SASL credentials; both are required with a
	// mechanism. Default none.
	SASLUsername string
	SASLPassword string
}

// String describes s without its password, so that logging a Config never leaks it.
func (s Security) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tls=%v", s.TLS)
	if s.CAFile != "" {
		fmt.Fprintf(&b, " ca=%s", s.CAFile)
	}
	if s.CertFile != "" {
		fmt.Fprintf(&b, " cert=%s", s.CertFile)
	}
	if s.SASLMechanism != "" {
		fmt.Fprintf(&b, " sasl=%s user=%s", s.SASLMechanism, s.SASLUsername)
	}
	return b.String()
}

// GoString is String, for %#v.
func (s Security) GoString() string { return "sink.Security{" + s.String() + "}" }

// SecurityNames names the settings of a [Security] in problem messages, so that a command can
// use its flag names; a field left empty takes the name in words (see [Security.Problems]).
type SecurityNames struct {
	TLS, CAFile, CertFile, KeyFile string
	Mechanism, Username, Password  string
}

func (n SecurityNames) withDefaults() SecurityNames {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&n.TLS, "kafka TLS")
	def(&n.CAFile, "the kafka TLS CA file")
	def(&n.CertFile, "the client certificate file")
	def(&n.KeyFile, "the client key file")
	def(&n.Mechanism, "the kafka SASL mechanism")
	def(&n.Username, "the SASL username")
	def(&n.Password, "the SASL password")
	return n
}

// Problems returns every mistake in s that can be seen without the files, all at once, naming
// each setting as n says: TLS files without TLS, a certificate without its key, SASL
// credentials without a mechanism, a mechanism without credentials, an unknown mechanism. The
// files are read when the client is made (New), which reports what is wrong in them;
// [Security.MissingFiles] finds those that cannot be found before that. These are the TLS and
// SASL rules of pgoutbox: the command and the sink both ask them here.
func (s Security) Problems(n SecurityNames) []error {
	n = n.withDefaults()
	var errs []error
	if !s.TLS && (s.CAFile != "" || s.CertFile != "" || s.KeyFile != "") {
		errs = append(errs, fmt.Errorf("%s, %s and %s need %s: TLS is off; turn it on", n.CAFile, n.CertFile, n.KeyFile, n.TLS))
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s and %s go together: set both the certificate and the key file, or neither", n.CertFile, n.KeyFile))
	}
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
		if s.SASLUsername != "" || s.SASLPassword != "" {
			errs = append(errs, fmt.Errorf("%s/%s are set but no SASL mechanism: set %s to SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN", n.Username, n.Password, n.Mechanism))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.SASLUsername == "" || s.SASLPassword == "" {
			errs = append(errs, fmt.Errorf("%s %s needs a username and a password: set %s and %s", n.Mechanism, strings.ToUpper(s.SASLMechanism), n.Username, n.Password))
		}
	default:
		errs = append(errs, fmt.Errorf("%s %q: use SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN", n.Mechanism, s.SASLMechanism))
	}
	return errs
}

// MissingFiles returns a problem, named as n says, for each TLS file of s that cannot be found.
func (s Security) MissingFiles(n SecurityNames) []error {
	n = n.withDefaults()
	var errs []error
	for _, f := range []struct{ name, path string }{{n.CAFile, s.CAFile}, {n.CertFile, s.CertFile}, {n.KeyFile, s.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		}
	}
	return errs
}

// tlsConfig reads the certificate files; nil means plaintext.
func (s Security) tlsConfig() (*tls.Config, error) {
	if !s.TLS {
		return nil, nil
	}
	// kafka-go fills ServerName in from each broker's address, so host names are verified.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka TLS CA file %s: no PEM certificate in it", s.CAFile)
		}
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS client certificate %s with key %s: %w", s.CertFile, s.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// mechanism returns the SASL mechanism; nil means no SASL.
func (s Security) mechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: s.SASLUsername, Password: s.SASLPassword}, nil
	case SASLScramSHA256:
		return scramMechanism(scram.SHA256, s)
	case SASLScramSHA512:
		return scramMechanism(scram.SHA512, s)
	}
	return nil, fmt.Errorf("kafka SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMechanism)
}

func scramMechanism(algo scram.Algorithm, s Security) (sasl.Mechanism, error) {
	m, err := scram.Mechanism(algo, s.SASLUsername, s.SASLPassword)
	if err != nil {
		// Not wrapped: the SCRAM library's error quotes the password.
		return nil, fmt.Errorf("kafka SASL %s: the username or the password has a character that SASLprep (RFC 4013) prohibits, e.g. a control character",
			algo.Name())
	}
	return m, nil
}

// tlsHint is the fix for a failed TLS handshake, where "is Kafka running?" would mislead.
const tlsHint = "the TLS handshake failed: check that the addresses are TLS listeners, the CA file " +
	"(the CAs that signed the brokers' certificates, for host names as given), and the client certificate if the broker requires one"

// tlsFailure reports whether err is a failed TLS handshake: a broker certificate that does not
// verify, an answer that is not TLS, or an alert from the broker (e.g. it wants a client
// certificate), which crypto/tls reports as a *net.OpError "remote error".
func tlsFailure(err error) bool {
	var (
		verify *tls.CertificateVerificationError
		header tls.RecordHeaderError
		op     *net.OpError
	)
	return errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &op) && op.Op == "remote error"
}
