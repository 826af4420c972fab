package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/pipeline"
	"github.com/pgoutbox/pgoutbox/sink"
)

// Config is every setting of pgoutbox. Each one is settable by a flag and by a PGOUTBOX_*
// environment variable (a flag wins over the environment). settings() is the one place that
// names them and sets their defaults (from the constants of the package each setting belongs
// to); `pgoutbox <command> --help` prints them, and a test checks that docs/operating.md lists them.
type Config struct {
	DatabaseURL  string // PostgreSQL URL; the role needs REPLICATION. Required.
	KafkaBrokers string // comma-separated host:port list. Required.
	Topic        string // default topic of every record
	TableName    string // the outbox table, [schema.]name
	Slot         string // logical replication slot
	Publication  string // publication of the outbox inserts

	IDColumn           string // outbox column names
	ChannelColumn      string
	NameColumn         string
	PayloadColumn      string
	HeadersColumn      string // "" = none
	TopicColumn        string // "" = no per-row routing
	MutationIDColumn   string // "" = no pgoutbox-mutation-id header
	RejectedColumn     string // "" = no pgoutbox-rejected header
	ExtraHeaderColumns string // comma-separated

	EventsFrom    string // both|table|messages: which writes become events
	MessagePrefix string // prefix of the logical decoding messages of pgoutbox_send

	HTTPAddr  string // metrics and health
	LogLevel  string // trace|debug|info|warn|error
	LogFormat string // json|console

	MaxInflightEvents int           // rows taken from PostgreSQL and not yet acknowledged
	MaxInflightBytes  int64         // their approximate bytes
	StatusInterval    time.Duration // longest gap between standby status updates
	ShutdownTimeout   time.Duration // how long a shutdown waits for in-flight writes
	ReconnectMax      time.Duration // longest wait between reconnection attempts

	KafkaBatchMessages  int           // most records the sink holds unacknowledged (and so in one request)
	KafkaRequestBytes   int           // most bytes per partition in one produce request
	KafkaRequestTimeout time.Duration // timeout of one produce request
	KafkaLinger         time.Duration // how long a small request waits for more rows while the stream is behind
	KafkaBackoffMax     time.Duration // longest wait between retries of a failed write
	KafkaCompression    string        // none|gzip|snappy|lz4|zstd
	MissingTopicTimeout time.Duration // how long a row's own missing topic is waited for

	ExactlyOnce     bool   // skip rows an earlier session already wrote to Kafka (tail reads)
	OnBadRow        string // stop|dead-letter: what a row that cannot be published does
	DeadLetterTopic string // topic of dead-lettered rows
	Retention       string // none|delete-after-publish
	JanitorBatch    int    // most rows deleted by one statement

	MonitorInterval  time.Duration // how often the slot is checked
	LagWarnBytes     int64         // unconfirmed WAL bytes that warn
	LagCriticalBytes int64         // unconfirmed WAL bytes that are critical
	LagKeepFraction  float64       // retained share of a finite max_slot_wal_keep_size that is critical
	LagWarnAge       time.Duration // age of the oldest unacknowledged commit that warns
	LagCriticalAge   time.Duration // ... that is critical

	// Connection security and secrets read from files (the *_FILE convention of container secrets).
	DatabaseURLFile       string // file holding DatabaseURL
	KafkaTLS              bool   // encrypt the Kafka connections with TLS
	KafkaTLSCAFile        string // PEM CAs of the brokers' certificates
	KafkaTLSCertFile      string // PEM client certificate, for brokers that require one
	KafkaTLSKeyFile       string // its PEM private key
	KafkaSASLMechanism    string // PLAIN|SCRAM-SHA-256|SCRAM-SHA-512
	KafkaSASLUsername     string
	KafkaSASLPassword     string // a secret: never logged
	KafkaSASLPasswordFile string // file holding KafkaSASLPassword

	// status only
	JSON bool // print JSON instead of a table

	// drop-slot only
	Yes bool // really drop the slot

	// recover only
	Apply      bool // act; without it recover only says what it would do
	AcceptLoss bool // close the open stretches without publishing them

	// setup only
	Partitions        int  // create the topic with this many partitions; 0 = do not create it
	ReplicationFactor int  // of a topic setup creates
	PrintSQL          bool // print the SQL instead of running it
	Failover          bool // create the slot as a failover slot (PostgreSQL 17+)
}

// setting binds one Config field to a flag and an environment variable.
type setting struct {
	name  string // flag name; the variable is PGOUTBOX_ + upper-case name with '-' → '_'
	usage string
	value flag.Value
	scope scope
}

type scope int

const (
	scopeRun     scope = 1 << iota // `run` (and the commands that talk to the same services)
	scopeSetup                     // `setup`
	scopeStatus                    // `status`
	scopeDrop                      // `drop-slot`
	scopeRecover                   // `recover`
	scopeAll     = scopeRun | scopeSetup | scopeStatus | scopeDrop | scopeRecover
)

func envName(flagName string) string {
	return "PGOUTBOX_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// settings lists every setting with its default; the defaults are written into c.
func (c *Config) settings() []setting {
	*c = Config{
		Topic: "outbox", TableName: "public.outbox", Slot: "pgoutbox", Publication: "pgoutbox",
		EventsFrom: string(capture.FromBoth), MessagePrefix: capture.DefaultMessagePrefix,
		IDColumn: "sequence_id", ChannelColumn: "channel", NameColumn: "name", PayloadColumn: "data", HeadersColumn: "headers",
		HTTPAddr: "127.0.0.1:9187", LogLevel: "info", LogFormat: "json",
		// Each package owns the defaults of its settings; these are the same constants.
		MaxInflightEvents: pipeline.DefaultMaxInflightEvents, MaxInflightBytes: pipeline.DefaultMaxInflightBytes,
		StatusInterval:  capture.DefaultStatusInterval,
		ShutdownTimeout: pipeline.DefaultShutdownTimeout, ReconnectMax: pipeline.DefaultReconnectMax,
		KafkaBatchMessages: sink.DefaultMaxBatchMessages, KafkaRequestBytes: sink.DefaultMaxRequestBytes,
		KafkaRequestTimeout: sink.DefaultRequestTimeout, KafkaLinger: sink.DefaultLinger, KafkaBackoffMax: sink.DefaultMaxBackoff,
		KafkaCompression: sink.DefaultCompression, MissingTopicTimeout: sink.DefaultMissingTopicWait, ReplicationFactor: 1,
		ExactlyOnce: true, OnBadRow: "stop", Retention: "none", JanitorBatch: pipeline.DefaultJanitorBatch,
		MonitorInterval: pipeline.DefaultMonitorInterval,
		LagWarnBytes:    capture.DefaultLagWarnBytes, LagCriticalBytes: capture.DefaultLagCriticalBytes,
		LagKeepFraction: capture.DefaultKeepFraction, LagWarnAge: capture.DefaultAgeWarn, LagCriticalAge: capture.DefaultAgeCritical,
	}
	return []setting{
		{"database-url", "PostgreSQL URL, e.g. postgres://user:pass@host:5432/db; the role needs REPLICATION (required)", (*stringValue)(&c.DatabaseURL), scopeAll},
		{"kafka-brokers", "comma-separated Kafka bootstrap brokers, host:port (required)", (*stringValue)(&c.KafkaBrokers), scopeAll},
		{"topic", "Kafka topic of the records", (*stringValue)(&c.Topic), scopeAll},
		{"table", "outbox table, [schema.]name", (*stringValue)(&c.TableName), scopeAll},
		{"slot", "logical replication slot (pgoutput)", (*stringValue)(&c.Slot), scopeAll},
		{"publication", "publication of the outbox table's inserts", (*stringValue)(&c.Publication), scopeAll},
		{"id-column", "outbox column with the row id", (*stringValue)(&c.IDColumn), scopeAll},
		{"channel-column", "outbox column with the channel (the Kafka key)", (*stringValue)(&c.ChannelColumn), scopeAll},
		{"name-column", "outbox column with the event name", (*stringValue)(&c.NameColumn), scopeAll},
		{"payload-column", "outbox column with the payload (the Kafka value)", (*stringValue)(&c.PayloadColumn), scopeAll},
		{"headers-column", "outbox jsonb column copied into Kafka headers; empty = none", (*stringValue)(&c.HeadersColumn), scopeAll},
		{"topic-column", "outbox column naming each row's topic; empty = every row goes to --topic", (*stringValue)(&c.TopicColumn), scopeAll},
		{"mutation-id-column", "outbox column with the client's optimistic-update id, sent as pgoutbox-mutation-id; empty = none", (*stringValue)(&c.MutationIDColumn), scopeAll},
		{"rejected-column", "outbox column (boolean) saying the optimistic update was rejected, sent as pgoutbox-rejected; empty = none", (*stringValue)(&c.RejectedColumn), scopeAll},
		{"extra-header-columns", "comma-separated outbox columns copied into Kafka headers", (*stringValue)(&c.ExtraHeaderColumns), scopeAll},
		{"events-from", "which writes become events: both (inserts into the outbox table and pgoutbox_send() messages), table or messages; the other kind is then a bad row", (*stringValue)(&c.EventsFrom), scopeRun | scopeSetup},
		{"message-prefix", "prefix of the logical decoding messages that pgoutbox_send() emits and the relay publishes", (*stringValue)(&c.MessagePrefix), scopeRun | scopeSetup},
		{"log-level", "trace, debug, info, warn or error", (*stringValue)(&c.LogLevel), scopeAll},
		{"log-format", "json or console", (*stringValue)(&c.LogFormat), scopeAll},
		{"http-addr", "address of /metrics, /healthz and /readyz; empty disables", (*stringValue)(&c.HTTPAddr), scopeRun},
		{"max-inflight-events", "rows read from PostgreSQL and not yet acknowledged by Kafka (bounds memory)", (*intValue)(&c.MaxInflightEvents), scopeRun},
		{"max-inflight-bytes", "approximate bytes of those rows (bounds memory)", (*int64Value)(&c.MaxInflightBytes), scopeRun},
		{"status-interval", "longest gap between status updates to PostgreSQL; keep well below wal_sender_timeout", (*durationValue)(&c.StatusInterval), scopeRun},
		{"shutdown-timeout", "how long a shutdown waits for in-flight Kafka writes", (*durationValue)(&c.ShutdownTimeout), scopeRun},
		{"reconnect-max", "longest wait between reconnection attempts to PostgreSQL", (*durationValue)(&c.ReconnectMax), scopeRun},
		{"kafka-batch-messages", "most records the sink holds unacknowledged, all partitions together (and so in one produce request)", (*intValue)(&c.KafkaBatchMessages), scopeRun},
		{"kafka-request-bytes", "most bytes per partition in one produce request; keep below the topic's max.message.bytes", (*intValue)(&c.KafkaRequestBytes), scopeRun},
		{"kafka-request-timeout", "timeout of one produce request", (*durationValue)(&c.KafkaRequestTimeout), scopeRun},
		{"kafka-linger", "while the stream is behind (rows committed over 100ms ago), how long a small produce request waits for more rows; a live stream never waits; 0 = off", (*durationValue)(&c.KafkaLinger), scopeRun},
		{"kafka-backoff-max", "longest wait between retries of a failed Kafka write (retries never stop)", (*durationValue)(&c.KafkaBackoffMax), scopeRun},
		{"kafka-compression", "none, gzip, snappy, lz4 or zstd", (*stringValue)(&c.KafkaCompression), scopeRun},
		{"missing-topic-timeout", "how long a row whose --topic-column names a missing topic waits for it; then it is a bad row (--on-bad-row). An illegal topic name is a bad row at once", (*durationValue)(&c.MissingTopicTimeout), scopeRun},
		{"database-url-file", "file holding the PostgreSQL URL (e.g. a container secret), instead of --database-url", &secretFile{path: &c.DatabaseURLFile, secret: &c.DatabaseURL, of: "database-url"}, scopeAll},
		{"kafka-tls", "encrypt the Kafka connections with TLS, verifying the brokers' certificates and host names", (*boolValue)(&c.KafkaTLS), scopeRun | scopeSetup},
		{"kafka-tls-ca-file", "PEM file of the CAs that signed the brokers' certificates; empty = the system's roots (needs --kafka-tls)", (*stringValue)(&c.KafkaTLSCAFile), scopeRun | scopeSetup},
		{"kafka-tls-cert-file", "PEM client certificate, for brokers with ssl.client.auth=required (needs --kafka-tls and --kafka-tls-key-file)", (*stringValue)(&c.KafkaTLSCertFile), scopeRun | scopeSetup},
		{"kafka-tls-key-file", "PEM private key of --kafka-tls-cert-file", (*stringValue)(&c.KafkaTLSKeyFile), scopeRun | scopeSetup},
		{"kafka-sasl-mechanism", "SASL authentication: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (which sends the password as is: use it with --kafka-tls); empty = none", (*stringValue)(&c.KafkaSASLMechanism), scopeRun | scopeSetup},
		{"kafka-sasl-username", "SASL username", (*stringValue)(&c.KafkaSASLUsername), scopeRun | scopeSetup},
		{"kafka-sasl-password", "SASL password; prefer --kafka-sasl-password-file: other processes of the host can read a command line or environment", (*stringValue)(&c.KafkaSASLPassword), scopeRun | scopeSetup},
		{"kafka-sasl-password-file", "file holding the SASL password (e.g. a container secret), instead of --kafka-sasl-password", &secretFile{path: &c.KafkaSASLPasswordFile, secret: &c.KafkaSASLPassword, of: "kafka-sasl-password"}, scopeRun | scopeSetup},
		{"exactly-once", "after a restart, read each Kafka partition's last record and do not send again what it proves is there; false = at-least-once (e.g. for one run after restoring the database from a file-system copy)", (*boolValue)(&c.ExactlyOnce), scopeRun},
		{"on-bad-row", "stop (halt, naming the row; the slot is not advanced past it) or dead-letter (publish the raw row and the reason to --dead-letter-topic, then go on)", (*stringValue)(&c.OnBadRow), scopeRun | scopeSetup},
		{"dead-letter-topic", `topic of dead-lettered rows; empty = "<topic>.dlq"`, (*stringValue)(&c.DeadLetterTopic), scopeRun | scopeSetup},
		{"retention", "none (the application deletes outbox rows) or delete-after-publish (pgoutbox deletes each row once Kafka acknowledged it)", (*stringValue)(&c.Retention), scopeRun},
		{"janitor-batch", "most rows deleted by one statement with --retention=delete-after-publish", (*intValue)(&c.JanitorBatch), scopeRun},
		{"monitor-interval", "how often the slot's lag is checked", (*durationValue)(&c.MonitorInterval), scopeRun},
		{"lag-warn-bytes", "unconfirmed WAL bytes (pg_current_wal_lsn() - confirmed_flush_lsn) that raise a warning; 0 = off", (*int64Value)(&c.LagWarnBytes), scopeRun | scopeStatus},
		{"lag-critical-bytes", "unconfirmed WAL bytes that are critical (/readyz fails); 0 = off", (*int64Value)(&c.LagCriticalBytes), scopeRun | scopeStatus},
		{"lag-keep-fraction", "with a finite max_slot_wal_keep_size, the share of it retained by the slot that is critical (half of it warns); 0 = off", (*floatValue)(&c.LagKeepFraction), scopeRun | scopeStatus},
		{"lag-warn-age", "age of the oldest commit not yet acknowledged by Kafka that warns; 0 = off", (*durationValue)(&c.LagWarnAge), scopeRun},
		{"lag-critical-age", "age of the oldest commit not yet acknowledged by Kafka that is critical; 0 = off", (*durationValue)(&c.LagCriticalAge), scopeRun},
		{"json", "print JSON instead of a table", (*boolValue)(&c.JSON), scopeStatus},
		{"yes", "drop-slot: really drop the slot (without it, drop-slot only says what would be lost)", (*boolValue)(&c.Yes), scopeDrop},
		{"apply", "recover, dlq redrive: act (without it, they only say what they would do)", (*boolValue)(&c.Apply), scopeRecover},
		{"accept-loss", "recover: give up the events of the open publication stretches instead of publishing them (logged with the positions; needs --apply)", (*boolValue)(&c.AcceptLoss), scopeRecover},
		{"partitions", "create the topic with this many partitions (0: leave Kafka alone)", (*intValue)(&c.Partitions), scopeSetup},
		{"replication-factor", "replication factor of a topic created by setup", (*intValue)(&c.ReplicationFactor), scopeSetup},
		{"print-sql", "print the SQL instead of running it", (*boolValue)(&c.PrintSQL), scopeSetup},
		{"failover", "create the slot as a failover slot, kept on standbys with sync_replication_slots = on (PostgreSQL 17+)", (*boolValue)(&c.Failover), scopeSetup},
	}
}

// newFlagSet binds the settings of one command; environment values are applied before the
// command line is parsed, so a flag wins over its variable. Problems with environment values are
// returned together.
func newFlagSet(command string, sc scope, c *Config) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet("pgoutbox "+command, flag.ContinueOnError)
	var errs []error
	for _, s := range c.settings() {
		if s.scope&sc == 0 {
			continue
		}
		def := s.value.String()
		if def == "" {
			def = `""`
		}
		fs.Var(s.value, s.name, fmt.Sprintf("%s (env %s, default %s)", s.usage, envName(s.name), def))
		if v, ok := os.LookupEnv(envName(s.name)); ok {
			if err := s.value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(s.name), v, err))
			}
		}
	}
	fs.Usage = func() {
		w := fs.Output()
		_, _ = fmt.Fprintf(w, "Usage: %s [flags]\n\nEvery flag can also be set by its environment variable; a flag wins.\n\nFlags:\n", fs.Name())
		fs.VisitAll(func(f *flag.Flag) {
			_, _ = fmt.Fprintf(w, "  --%s\n      %s\n", f.Name, f.Usage)
		})
	}
	return fs, errors.Join(errs...)
}

// Table returns the outbox table configuration.
func (c *Config) Table() (capture.Table, error) {
	t := capture.DefaultTable()
	schema, name, err := capture.ParseTableName(c.TableName)
	if err != nil {
		return t, fmt.Errorf("--table: %w", err)
	}
	t.Schema, t.Name = schema, name
	t.ID, t.Channel, t.EventName, t.Payload = c.IDColumn, c.ChannelColumn, c.NameColumn, c.PayloadColumn
	t.Headers, t.Topic = c.HeadersColumn, c.TopicColumn
	t.MutationID, t.Rejected = c.MutationIDColumn, c.RejectedColumn
	t.ExtraHeaders = splitList(c.ExtraHeaderColumns)
	return t, t.Validate()
}

// From returns which writes become events (Validate checked it).
func (c *Config) From() capture.EventsFrom {
	f, _ := capture.ParseEventsFrom(c.EventsFrom)
	return f
}

// DeadLetter returns the dead-letter topic, or "" when bad rows stop the relay.
func (c *Config) DeadLetter() string {
	if c.OnBadRow != "dead-letter" {
		return ""
	}
	if c.DeadLetterTopic != "" {
		return c.DeadLetterTopic
	}
	return c.Topic + ".dlq"
}

// Brokers returns the Kafka broker list.
func (c *Config) Brokers() []string { return splitList(c.KafkaBrokers) }

// Validate lists every problem of the configuration at once.
func (c *Config) Validate(sc scope) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DatabaseURL == "" {
		bad("--database-url (PGOUTBOX_DATABASE_URL) is required, e.g. postgres://user:pass@127.0.0.1:5432/app")
	} else if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		if !strings.Contains(c.DatabaseURL, "=") { // also accept the key=value form
			bad("--database-url: not a postgres:// URL nor a key=value connection string")
		}
	}
	if sc&scopeRun != 0 && c.HTTPAddr != "" {
		if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("--http-addr %q: want host:port, e.g. 127.0.0.1:9187 (empty disables the endpoints)", c.HTTPAddr)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad("--http-addr %q: port %q is not a number from 0 to 65535", c.HTTPAddr, port)
		}
	}
	if len(c.Brokers()) == 0 && (sc&scopeRun != 0 || sc&scopeSetup != 0 && c.Partitions > 0) {
		bad("--kafka-brokers (PGOUTBOX_KAFKA_BROKERS) is required, e.g. 127.0.0.1:9092")
	}
	for _, b := range c.Brokers() {
		if err := sink.CheckBroker(b); err != nil {
			bad("--kafka-brokers: %w", err)
		}
	}
	if err := sink.CheckTopicName(c.Topic); err != nil {
		bad("--topic: %w", err)
	}
	if c.DeadLetterTopic != "" || c.OnBadRow == "dead-letter" {
		if err := sink.CheckTopicName(c.DeadLetter()); err != nil {
			bad("--dead-letter-topic: %w", err)
		}
	}
	if err := sink.CheckCompression(c.KafkaCompression); err != nil {
		bad("--kafka-compression: %w", err)
	}
	if c.Slot == "" || !validSlotName(c.Slot) {
		bad("--slot %q: use lower-case letters, digits and underscores (PostgreSQL's rule for slot names)", c.Slot)
	}
	if c.Publication == "" {
		bad("--publication must not be empty")
	}
	if _, err := c.Table(); err != nil {
		errs = append(errs, err)
	}
	if _, err := capture.ParseEventsFrom(c.EventsFrom); err != nil {
		bad("--events-from %q: use both, table or messages", c.EventsFrom)
	}
	if err := capture.CheckMessagePrefix(c.MessagePrefix); err != nil {
		bad("--message-prefix: %w", err)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		bad("--log-format %q: use json or console", c.LogFormat)
	}
	positive := func(flag string, v int64) {
		if v <= 0 {
			bad("--%s %d: must be above 0", flag, v)
		}
	}
	positive("max-inflight-events", int64(c.MaxInflightEvents))
	positive("max-inflight-bytes", c.MaxInflightBytes)
	positive("kafka-batch-messages", int64(c.KafkaBatchMessages))
	positive("kafka-request-bytes", int64(c.KafkaRequestBytes))
	positive("janitor-batch", int64(c.JanitorBatch))
	if c.StatusInterval <= 0 || c.StatusInterval > 30*time.Second {
		bad("--status-interval %s: use a value between 1ms and 30s, well below wal_sender_timeout", c.StatusInterval)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		zero bool // whether 0 is allowed
	}{
		{"shutdown-timeout", c.ShutdownTimeout, true}, {"reconnect-max", c.ReconnectMax, false},
		{"kafka-request-timeout", c.KafkaRequestTimeout, false}, {"kafka-backoff-max", c.KafkaBackoffMax, false},
		{"missing-topic-timeout", c.MissingTopicTimeout, false}, {"kafka-linger", c.KafkaLinger, true},
		{"monitor-interval", c.MonitorInterval, false},
		{"lag-warn-age", c.LagWarnAge, true}, {"lag-critical-age", c.LagCriticalAge, true},
	} {
		switch {
		case d.v < 0:
			bad("--%s %s: must not be negative", d.flag, d.v)
		case d.v == 0 && !d.zero:
			bad("--%s %s: must be above 0, e.g. 5s", d.flag, d.v)
		}
	}
	for _, n := range []struct {
		flag string
		v    int64
	}{{"lag-warn-bytes", c.LagWarnBytes}, {"lag-critical-bytes", c.LagCriticalBytes}} {
		if n.v < 0 {
			bad("--%s %d: must be >= 0 (0 turns the threshold off)", n.flag, n.v)
		}
	}
	if c.OnBadRow != "stop" && c.OnBadRow != "dead-letter" {
		bad("--on-bad-row %q: use stop or dead-letter", c.OnBadRow)
	}
	if c.Retention != "none" && c.Retention != "delete-after-publish" {
		bad("--retention %q: use none or delete-after-publish", c.Retention)
	}
	if c.LagKeepFraction < 0 || c.LagKeepFraction > 1 {
		bad("--lag-keep-fraction %g: use a value between 0 and 1", c.LagKeepFraction)
	}
	if c.Partitions < 0 {
		bad("--partitions %d: must be >= 0 (0 leaves Kafka alone)", c.Partitions)
	}
	if c.ReplicationFactor <= 0 {
		bad("--replication-factor %d: must be >= 1", c.ReplicationFactor)
	}
	errs = append(errs, c.securityProblems()...)
	return errors.Join(errs...)
}

func validSlotName(s string) bool {
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return len(s) <= 63
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// flag.Value implementations for the setting types.
type (
	floatValue    float64
	stringValue   string
	intValue      int
	int64Value    int64
	boolValue     bool
	durationValue time.Duration
)

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not an integer")
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }

func (v *int64Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return errors.New("not an integer")
	}
	*v = int64Value(n)
	return nil
}
func (v *int64Value) String() string { return strconv.FormatInt(int64(*v), 10) }

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not a boolean")
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) IsBoolFlag() bool { return true }

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (e.g. 500ms, 10s, 1m)")
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }

func (v *floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("not a number")
	}
	*v = floatValue(f)
	return nil
}
func (v *floatValue) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }
