package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/pgoutbox/pgoutbox/integration/harness"
	"github.com/segmentio/kafka-go"
)

// Scenario 9 runs the alternative a user would pick, Debezium's PostgreSQL connector in Kafka
// Connect standalone with Debezium's outbox EventRouter, and pgoutbox on the same backlog of
// 1-row transactions, in the same run.
const debeziumScenario = 9

// The settings of the Debezium run that are not Connect's or Debezium's defaults; docs/performance.md and
// the report name them.
const (
	// debeziumHeartbeatMs is --debezium-heartbeat-ms's default. Debezium confirms the position
	// of its last event, so once the backlog is read its slot stays a transaction behind, unless
	// heartbeats move it: each heartbeat confirms the WAL position the server last reported,
	// which moves only when other WAL is written. So each heartbeat also runs
	// heartbeat.action.query, an UPDATE of a one-row table outside the publication: Debezium's
	// documented remedy for a captured table that is quiet while the cluster is not, which on a
	// quiet cluster is what makes the slot reach the end of the backlog at all.
	debeziumHeartbeatMs = 1000
	// confirmWait bounds the wait for the slot's confirmation once every row is in Kafka.
	confirmWait = 2 * time.Minute
	// connectOffsetFlushMs: Debezium confirms the slot only when Connect flushes its offsets
	// (the worker's default is every 60 s, the example file of Kafka's distribution says 10 s).
	connectOffsetFlushMs = 1000
)

// SideBySideResult is scenario 9: one backlog, read by Debezium and then by pgoutbox.
type SideBySideResult struct {
	Rows          int     `json:"rows"`
	WALBytes      int64   `json:"wal_bytes"`
	WriteSeconds  float64 `json:"write_seconds"`
	Versions      string  `json:"versions"`
	HeartbeatMs   int     `json:"debezium_heartbeat_interval_ms"`
	OffsetFlushMs int     `json:"connect_offset_flush_interval_ms"`
	// ProducerConfig is what Connect's log says its task's producer used (acks, linger.ms, …).
	ProducerConfig map[string]string `json:"connect_producer_config"`
	Debezium       SideRun           `json:"debezium"`
	Pgoutbox       SideRun           `json:"pgoutbox"`
}

// SideRun is one reader of the backlog, timed from its process start.
type SideRun struct {
	// ReadySeconds is process start → ready: Connect's REST status shows the task RUNNING, or the
	// relay logs "streaming started".
	ReadySeconds float64 `json:"ready_seconds"`
	// AckedSeconds is process start → the topic holds every row.
	AckedSeconds float64 `json:"acked_seconds"`
	// ConfirmedSeconds is process start → the slot's confirmed_flush_lsn passed the backlog's end.
	ConfirmedSeconds float64 `json:"confirmed_seconds"`
	RowsPerSec       float64 `json:"rows_per_second_from_start"` // rows / AckedSeconds
	RowsPerSecReady  float64 `json:"rows_per_second_from_ready"` // rows / (AckedSeconds − ReadySeconds)
	// CPU.Reader is the process's CPU time from its start to the slot's confirmation; ReadyCPU
	// the part of it spent before it was ready (for the JVM: start-up and JIT).
	CPU      CPU     `json:"cpu"`
	ReadyCPU float64 `json:"ready_cpu_seconds"`
	PeakRSS  int64   `json:"peak_rss_bytes"`
}

func sideRun(rows int, ready, acked, confirmed time.Duration) SideRun {
	r := SideRun{ReadySeconds: ready.Seconds(), AckedSeconds: acked.Seconds(), ConfirmedSeconds: confirmed.Seconds(),
		RowsPerSec: float64(rows) / acked.Seconds()}
	if acked > ready {
		r.RowsPerSecReady = float64(rows) / (acked - ready).Seconds()
	}
	return r
}

// sideBySideScenario creates Debezium's slot and publication next to pgoutbox's before the
// backlog, writes the backlog, then lets Debezium and a fresh relay read it one after the other,
// each into its own topic, and checks that both topics hold every row once.
func (b *bench) sideBySideScenario(ctx context.Context) error {
	script, versions, err := b.installDebezium(ctx)
	if err != nil {
		return err
	}
	return b.withOutbox(ctx, fmt.Sprintf("s%d", debeziumScenario), false, func(o *outbox) error {
		r := SideBySideResult{Rows: b.opts.debeziumRows, Versions: versions,
			HeartbeatMs: b.opts.debeziumHeartbeatMs, OffsetFlushMs: connectOffsetFlushMs}
		d := &debezium{b: b, o: o, script: script, name: o.Name + "_dbz"}
		defer func() { _ = d.drop() }()
		if err := d.create(ctx); err != nil {
			return err
		}
		b.progress("  writing %d rows in 1-row transactions (Debezium's and pgoutbox's slots in place, both stopped)", r.Rows)
		w, err := b.writeBacklog(ctx, o.Name, r.Rows, 1, b.opts.writers)
		if err != nil {
			return fmt.Errorf("write backlog: %w", err)
		}
		r.WALBytes, r.WriteSeconds = w.WALBytes(), w.Seconds
		b.progress("  wrote %.1f MB of WAL in %.1fs; Debezium (Kafka Connect standalone) reads it to %s", float64(r.WALBytes)/1e6, w.Seconds, w.EndLSN)

		if r.Debezium, r.ProducerConfig, err = d.run(ctx, r.Rows, w.EndLSN); err != nil {
			return err
		}
		if err := b.verifyTopic(ctx, d.name, r.Rows); err != nil {
			return fmt.Errorf("debezium's topic %s: %w", d.name, err)
		}
		if err := o.dropSlot(ctx, d.name); err != nil { // it would pin the backlog's WAL meanwhile
			return err
		}
		b.progress("  Debezium: task RUNNING at %.2fs, every row in Kafka at %.2fs, slot confirmed at %.2fs; %.0f rows/s from start, %.0f from RUNNING; JVM CPU %.1f s (%.1f s before RUNNING); now pgoutbox",
			r.Debezium.ReadySeconds, r.Debezium.AckedSeconds, r.Debezium.ConfirmedSeconds, r.Debezium.RowsPerSec,
			r.Debezium.RowsPerSecReady, r.Debezium.CPU.Reader, r.Debezium.ReadyCPU)

		if r.Pgoutbox, err = b.relayReads(ctx, o, r.Rows, w.EndLSN); err != nil {
			return err
		}
		if err := b.verifyTopic(ctx, o.Name, r.Rows); err != nil {
			return fmt.Errorf("pgoutbox's topic %s: %w", o.Name, err)
		}
		b.progress("  pgoutbox: streaming at %.2fs, every row in Kafka at %.2fs, slot confirmed at %.2fs; %.0f rows/s from start, %.0f from streaming; CPU %.1f s",
			r.Pgoutbox.ReadySeconds, r.Pgoutbox.AckedSeconds, r.Pgoutbox.ConfirmedSeconds, r.Pgoutbox.RowsPerSec,
			r.Pgoutbox.RowsPerSecReady, r.Pgoutbox.CPU.Reader)
		b.res.SideBySide = &r
		b.res.Memory = append(b.res.Memory, MemoryResult{Scenario: debeziumScenario,
			What: fmt.Sprintf("backlog of %d rows, 1-row transactions (side by side)", r.Rows), PeakRSS: r.Pgoutbox.PeakRSS})
		return nil
	})
}

// installDebezium resolves Kafka Connect and Debezium (once, about a minute: not part of any
// measurement) and returns the script that runs them and their versions.
func (b *bench) installDebezium(ctx context.Context) (script, versions string, err error) {
	script = filepath.Join(b.root, "deploy/local/debezium.sh")
	b.progress("  resolving Kafka Connect and Debezium (deploy/local/debezium.sh install)")
	if out, err := exec.CommandContext(ctx, script, "install").CombinedOutput(); err != nil { //nolint:gosec // our own script
		return "", "", fmt.Errorf("deploy/local/debezium.sh install: %w\n%s\nfix: run deploy/local/debezium.sh install by hand; "+
			"it needs Java 17+, Maven, and Maven's repository reachable (~/.m2/settings.xml)", err, out)
	}
	out, err := exec.CommandContext(ctx, script, "versions").Output() //nolint:gosec // our own script
	if err != nil {
		return "", "", fmt.Errorf("deploy/local/debezium.sh versions: %w", err)
	}
	return script, strings.TrimSpace(string(out)), nil
}

// relayReads lets a fresh relay drain the backlog, as in scenario 1.
func (b *bench) relayReads(ctx context.Context, o *outbox, rows int, end pglogrepl.LSN) (SideRun, error) {
	meter := b.meterCPU(ctx, o.Name)
	defer func() { _ = meter.stop() }() // a second stop is harmless
	relay, err := b.startRelay(o)
	if err != nil {
		return SideRun{}, err
	}
	defer func() { _ = relay.stop() }()
	dr, err := b.drain(ctx, relay, o.Name, rows, end, 30*time.Minute, false)
	cpu := meter.stop()
	if err != nil {
		return SideRun{}, err
	}
	relayCPU, err := cpuTime(relay.Pid())
	if err != nil {
		return SideRun{}, err
	}
	cpu.Reader = relayCPU.Seconds()
	r := sideRun(rows, relay.StartupTime(), dr.acked, dr.confirmed)
	r.CPU = cpu
	if r.PeakRSS, err = relay.PeakRSS(); err != nil {
		return r, err
	}
	return r, relay.stop()
}

// debezium is the Debezium side of scenario 9: its slot, publication and topic share one name,
// <outbox>_dbz, and Connect's heartbeats go to a topic of their own.
type debezium struct {
	b      *bench
	o      *outbox
	script string
	name   string
	dir    string // Connect's configuration, offsets and log
	extra  string // more connector properties, one a line
}

// heartbeatTopic is where Debezium sends its heartbeats: topic.heartbeat.prefix (default
// __debezium-heartbeat) + "." + topic.prefix.
func (d *debezium) heartbeatTopic() string { return "__debezium-heartbeat." + d.name }

// heartbeatTable is the table heartbeat.action.query updates; it is not in the publication.
func (d *debezium) heartbeatTable() string { return d.name + "_heartbeat" }

// create makes Debezium's publication (inserts only, like pgoutbox's), its pgoutput slot and its
// two topics. The slot is created here, before the backlog: a slot decodes only what follows it,
// and with snapshot.mode=no_data Debezium streams from the slot's position.
func (d *debezium) create(ctx context.Context) error {
	var err error
	if d.dir, err = os.MkdirTemp(d.b.tmp, "debezium-"); err != nil {
		return err
	}
	table, pub := pgx.Identifier{d.o.Name}.Sanitize(), pgx.Identifier{d.name}.Sanitize()
	if err := d.o.exec(ctx, "CREATE PUBLICATION "+pub+" FOR TABLE "+table+" WITH (publish = 'insert')"); err != nil {
		return fmt.Errorf("create Debezium's publication: %w", err)
	}
	hb := pgx.Identifier{d.heartbeatTable()}.Sanitize()
	if err := d.o.exec(ctx, "CREATE TABLE "+hb+" (id int PRIMARY KEY, at timestamptz); INSERT INTO "+hb+" VALUES (1, now())"); err != nil {
		return fmt.Errorf("create Debezium's heartbeat table: %w", err)
	}
	if err := d.o.exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, d.name); err != nil {
		return fmt.Errorf("create Debezium's slot: %w", err)
	}
	// The broker does not create topics on demand; the event topic has the partitions of
	// pgoutbox's, so Connect's producer spreads the keys (murmur2, like pgoutbox) the same way.
	res, err := d.b.kafkaClient().CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: d.name, NumPartitions: partitions, ReplicationFactor: 1},
		{Topic: d.heartbeatTopic(), NumPartitions: 1, ReplicationFactor: 1},
	}})
	if err != nil {
		return fmt.Errorf("create Debezium's topics: %w", err)
	}
	for topic, err := range res.Errors {
		if err != nil {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	return nil
}

// drop removes the slot, publication, topics and files; like outbox.drop it runs on its own
// context so that it also cleans up after an interrupt.
func (d *debezium) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := []error{d.o.dropSlot(ctx, d.name), d.o.exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{d.name}.Sanitize()),
		d.o.exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{d.heartbeatTable()}.Sanitize())}
	for _, topic := range []string{d.name, d.heartbeatTopic()} {
		errs = append(errs, harness.DeleteTopic(ctx, d.b.brokers(), topic))
	}
	if d.dir != "" {
		errs = append(errs, os.RemoveAll(d.dir))
	}
	if err := errors.Join(errs...); err != nil {
		d.b.progress("cleanup of %s incomplete: %v", d.name, err)
		return err
	}
	return nil
}

// writeConfig writes the worker's and the connector's properties and returns their paths.
func (d *debezium) writeConfig(restPort int) (worker, connector string, err error) {
	cfg, err := pgx.ParseConfig(d.b.opts.databaseURL)
	if err != nil {
		return "", "", err
	}
	worker, connector = filepath.Join(d.dir, "worker.properties"), filepath.Join(d.dir, "connector.properties")
	// The producer is left at Connect's defaults: nothing producer.* here. plugin.discovery is
	// what Connect's own start-up warning advises when every plugin has a ServiceLoader manifest
	// (Debezium's do): it skips the reflective scan of every jar, seconds of CPU at start.
	w := fmt.Sprintf(`bootstrap.servers=%s
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
offset.storage.file.filename=%s
offset.flush.interval.ms=%d
listeners=http://127.0.0.1:%d
plugin.discovery=service_load
`, d.b.opts.brokers, filepath.Join(d.dir, "connect.offsets"), connectOffsetFlushMs, restPort)
	// message.prefix.exclude.list: the outbox is a table, and pgoutput's logical decoding messages
	// are database-wide: another process's pgoutbox_send() became an event for a topic
	// <prefix>.message that does not exist, and Connect's producer then waited for it, so the slot
	// stopped moving (as pgoutbox's table relays run with --events-from=table).
	// The EventRouter makes key = channel and value = data (the jsonb's text, as pgoutput sends
	// it), and routes every event to one topic (route.by.field is the event name, the same for
	// all; the replacement has no ${routedByValue}). The predicate keeps the heartbeats out of it.
	c := fmt.Sprintf(`name=%[1]s
connector.class=io.debezium.connector.postgresql.PostgresConnector
tasks.max=1
plugin.name=pgoutput
database.hostname=%[2]s
database.port=%[3]d
database.user=%[4]s
database.password=%[5]s
database.dbname=%[6]s
topic.prefix=%[1]s
slot.name=%[1]s
publication.name=%[1]s
publication.autocreate.mode=disabled
table.include.list=public.%[7]s
snapshot.mode=no_data
message.prefix.exclude.list=.*
heartbeat.interval.ms=%[8]d
heartbeat.action.query=UPDATE %[10]s SET at = now() WHERE id = 1
transforms=outbox
transforms.outbox.type=io.debezium.transforms.outbox.EventRouter
transforms.outbox.predicate=outboxTable
transforms.outbox.table.field.event.id=sequence_id
transforms.outbox.table.field.event.key=channel
transforms.outbox.table.field.event.payload=data
transforms.outbox.route.by.field=name
transforms.outbox.route.topic.replacement=%[1]s
predicates=outboxTable
predicates.outboxTable.type=org.apache.kafka.connect.transforms.predicates.TopicNameMatches
predicates.outboxTable.pattern=%[9]s
`, d.name, cfg.Host, cfg.Port, cfg.User, propEscape(cfg.Password), cfg.Database, d.o.Name, d.b.opts.debeziumHeartbeatMs,
		strings.ReplaceAll(d.name+".public."+d.o.Name, ".", `\\.`), propEscape(pgx.Identifier{"public", d.heartbeatTable()}.Sanitize()))
	c += d.extra
	if err := os.WriteFile(worker, []byte(w), 0o600); err != nil {
		return "", "", err
	}
	return worker, connector, os.WriteFile(connector, []byte(c), 0o600)
}

// propEscape escapes a value for a Java properties file.
func propEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`).Replace(s)
}

// connectProc is a running Kafka Connect standalone worker with the connector.
type connectProc struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	waitErr error  // once done is closed
	status  string // the connector's REST status URL
	logPath string
	logFile *os.File
	lines   *harness.SyncBuffer
	stopped bool
}

// start writes the configuration and starts Connect; call stop when done.
func (d *debezium) start() (*connectProc, error) {
	port, err := harness.ListenPort()
	if err != nil {
		return nil, err
	}
	workerProps, connectorProps, err := d.writeConfig(port)
	if err != nil {
		return nil, err
	}
	c := &connectProc{logPath: filepath.Join(d.dir, "connect.log"), lines: &harness.SyncBuffer{}, done: make(chan struct{}),
		status: "http://127.0.0.1:" + fmt.Sprint(port) + "/connectors/" + d.name + "/status"}
	if d.b.opts.relayLogs != "" {
		if err := os.MkdirAll(d.b.opts.relayLogs, 0o750); err != nil {
			return nil, err
		}
		c.logPath = filepath.Join(d.b.opts.relayLogs, d.name+".log")
	}
	if c.logFile, err = os.Create(c.logPath); err != nil { //nolint:gosec // our own scratch file
		return nil, err
	}
	// The script execs java: the process id is the JVM's.
	c.cmd = exec.CommandContext(context.Background(), d.script, "run", workerProps, connectorProps) //nolint:gosec // our own script
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.cmd.Stdout = io.MultiWriter(c.lines, c.logFile)
	c.cmd.Stderr = c.cmd.Stdout
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		_ = c.logFile.Close()
		return nil, fmt.Errorf("start Kafka Connect: %w", err)
	}
	go func() { c.waitErr = c.cmd.Wait(); close(c.done) }()
	return c, nil
}

// stop ends Connect with SIGTERM, SIGKILL after a minute; a second call does nothing.
func (c *connectProc) stop() error {
	if c.stopped {
		return nil
	}
	c.stopped = true
	defer func() { _ = c.logFile.Close() }()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(time.Minute):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("kafka Connect did not stop within a minute of SIGTERM; killed")
	}
}

func (c *connectProc) fail(format string, args ...any) error {
	return fmt.Errorf(format+"\nlast lines of Kafka Connect's log (%s):\n%s", append(args, c.logPath, c.lines.Tail(30))...)
}

// waitRunning waits until the connector's task is RUNNING (at most timeout).
func (c *connectProc) waitRunning(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return c.fail("kafka Connect exited (%v) before its task ran", c.waitErr)
		case <-time.After(100 * time.Millisecond):
		}
		switch state, trace := connectTaskState(ctx, c.status); state {
		case "RUNNING":
			return nil
		case "FAILED":
			return c.fail("debezium's task FAILED:\n%s", trace)
		}
		if time.Now().After(deadline) {
			return c.fail("debezium's task not RUNNING after %s", timeout)
		}
	}
}

// run starts Connect, waits until the topic holds rows records and the slot is confirmed past
// end, and stops it.
func (d *debezium) run(ctx context.Context, rows int, end pglogrepl.LSN) (SideRun, map[string]string, error) {
	meter := d.b.meterCPU(ctx, d.name)
	defer func() { _ = meter.stop() }()
	c, err := d.start()
	if err != nil {
		return SideRun{}, nil, err
	}
	defer func() { _ = c.stop() }()
	cmd, started, done, fail, status, logPath := c.cmd, c.started, c.done, c.fail, c.status, c.logPath

	conn, err := pgx.Connect(ctx, d.b.opts.databaseURL)
	if err != nil {
		return SideRun{}, nil, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	client := d.b.kafkaClient()
	var ready, acked, confirmed time.Duration
	var readyCPU time.Duration
	var inTopic int64
	deadline := time.Now().Add(30 * time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastStatus := time.Time{}
	for confirmed == 0 {
		select {
		case <-ctx.Done():
			return SideRun{}, nil, ctx.Err()
		case <-done:
			return SideRun{}, nil, fail("kafka Connect exited (%v) before the end of the backlog", c.waitErr)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return SideRun{}, nil, fail("after 30 minutes the topic holds %d of %d rows", inTopic, rows)
		}
		// The task's state: until RUNNING at every tick, then once a second to catch a FAILED.
		if ready == 0 || time.Since(lastStatus) > time.Second {
			lastStatus = time.Now()
			state, trace := connectTaskState(ctx, status)
			switch state {
			case "RUNNING":
				if ready == 0 {
					ready = time.Since(started)
					readyCPU, _ = cpuTime(cmd.Process.Pid)
				}
			case "FAILED":
				return SideRun{}, nil, fail("debezium's task FAILED:\n%s", trace)
			}
		}
		if acked == 0 {
			if inTopic, err = harness.CountRecords(ctx, client, d.name, partitions); err != nil || inTopic < int64(rows) {
				continue
			}
			acked = time.Since(started)
			if inTopic > int64(rows) {
				return SideRun{}, nil, fail("the topic holds %d records, more than the %d rows", inTopic, rows)
			}
		}
		c, err := harness.ReadSlotConfirmed(ctx, conn, d.name)
		if err != nil {
			return SideRun{}, nil, err
		}
		if c >= end {
			confirmed = time.Since(started)
		} else if time.Since(started)-acked > confirmWait {
			return SideRun{}, nil, fail("every row is in Kafka since %.1fs, but %s later the slot is confirmed at %s, before the end of the backlog %s "+
				"(heartbeat.interval.ms=%d: without heartbeats, and WAL written meanwhile, Debezium's slot stays at its last event)",
				acked.Seconds(), confirmWait, c, end, d.b.opts.debeziumHeartbeatMs)
		}
	}
	if ready == 0 { // everything arrived between two polls of the status
		ready = acked
	}
	r := sideRun(rows, ready, acked, confirmed)
	jvmCPU, err := cpuTime(cmd.Process.Pid)
	if err != nil {
		return r, nil, err
	}
	r.CPU = meter.stop()
	r.CPU.Reader, r.ReadyCPU = jvmCPU.Seconds(), readyCPU.Seconds()
	if r.PeakRSS, err = harness.ProcStatus(cmd.Process.Pid, "VmHWM"); err != nil {
		return r, nil, err
	}
	if err := c.stop(); err != nil {
		return r, nil, err
	}
	producer, err := producerConfig(logPath)
	return r, producer, err
}

// connectTaskState reads the state of task 0 from Connect's REST API ("" while it does not answer
// or has no task yet) and its stack trace when it failed.
func connectTaskState(ctx context.Context, url string) (state, trace string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", ""
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", ""
	}
	defer func() { _ = res.Body.Close() }()
	var s struct {
		Connector struct {
			State string `json:"state"`
			Trace string `json:"trace"`
		} `json:"connector"`
		Tasks []struct {
			State string `json:"state"`
			Trace string `json:"trace"`
		} `json:"tasks"`
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&s) != nil {
		return "", ""
	}
	if s.Connector.State == "FAILED" {
		return "FAILED", s.Connector.Trace
	}
	if len(s.Tasks) == 0 {
		return "", ""
	}
	return s.Tasks[0].State, s.Tasks[0].Trace
}

// producerSettings are the producer settings the report shows: those that decide how records are
// batched and acknowledged.
var producerSettings = []string{"acks", "linger.ms", "batch.size", "max.in.flight.requests.per.connection",
	"enable.idempotence", "compression.type"}

// producerConfig reads, from Connect's log, the producer configuration of the connector's task
// (the "ProducerConfig values:" block whose client.id names the connector).
func producerConfig(logPath string) (map[string]string, error) {
	data, err := os.ReadFile(logPath) //nolint:gosec // our own scratch file
	if err != nil {
		return nil, err
	}
	for _, block := range bytes.Split(data, []byte("ProducerConfig values:"))[1:] {
		values := map[string]string{}
		for _, line := range strings.Split(string(block), "\n")[1:] {
			// "\tname = value", the value possibly empty; the block ends at the next log line.
			if !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " ") {
				break
			}
			k, v, _ := strings.Cut(strings.TrimSpace(line), " =")
			values[k] = strings.TrimSpace(v)
		}
		if strings.Contains(values["client.id"], "connector-producer") {
			out := map[string]string{}
			for _, k := range producerSettings {
				out[k] = values[k]
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("no producer configuration of the connector's task in %s", logPath)
}

// verifyTopic reads the whole topic and checks that it holds rows 1..rows of the backlog each
// exactly once, with key = the row's channel and value = its data, byte for byte.
func (b *bench) verifyTopic(ctx context.Context, topic string, rows int) error {
	seen := make([]bool, rows+1)
	total := 0
	var bad error
	err := harness.ScanTopic(ctx, b.brokers(), topic, func(r harness.Record) {
		if err := checkRecord(r, seen, b.opts.channels); err != nil && bad == nil {
			bad = fmt.Errorf("partition %d offset %d: %w", r.Partition, r.Offset, err)
		}
		total++
	})
	switch {
	case err != nil:
		return err
	case bad != nil:
		return bad
	case total != rows:
		return fmt.Errorf("%d records, want %d (one per row)", total, rows)
	}
	return nil // rows records, none twice, all in 1..rows: each row once
}

// checkRecord checks one record against the row its payload names, and notes the row as seen.
func checkRecord(rec harness.Record, seen []bool, channels int) error {
	key, value := rec.Key, rec.Value
	var v struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(value, &v); err != nil || v.ID < 1 || v.ID >= int64(len(seen)) {
		return fmt.Errorf("value %.80q is not the data of a backlog row", value)
	}
	if want := benchPayload(v.ID, channels); !bytes.Equal(value, want) {
		return fmt.Errorf("row %d: value %.80q, want %.80q", v.ID, value, want)
	}
	if want := fmt.Sprintf("ch-%d", v.ID%int64(channels)); string(key) != want {
		return fmt.Errorf("row %d: key %q, want the channel %q", v.ID, key, want)
	}
	if seen[v.ID] {
		return fmt.Errorf("row %d twice", v.ID)
	}
	seen[v.ID] = true
	return nil
}

// printSideBySide prints scenario 9's table.
func printSideBySide(p, row func(string, ...any), flush func(), r *Results) {
	s := r.SideBySide
	if s == nil {
		return
	}
	p("\nSide by side: one backlog of %d 1-row transactions (%.1f MB of WAL), both slots created before it, read by each in turn", s.Rows, float64(s.WALBytes)/mb)
	row("reader\tready s\tall in Kafka s\tslot confirmed s\trows/s from start\trows/s from ready\tCPU s\tCPU s after ready\twalsender CPU s\tbroker CPU s\tpeak RSS MB\t")
	for _, t := range []struct {
		name string
		run  SideRun
	}{{"Debezium (Kafka Connect)", s.Debezium}, {"pgoutbox", s.Pgoutbox}} {
		c := t.run.CPU
		row("%s\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t", t.name, t.run.ReadySeconds, t.run.AckedSeconds, t.run.ConfirmedSeconds,
			t.run.RowsPerSec, t.run.RowsPerSecReady, c.Reader, c.Reader-t.run.ReadyCPU, c.Walsender, c.Kafka, float64(t.run.PeakRSS)/mb)
	}
	flush()
	var producer []string
	for _, k := range producerSettings {
		producer = append(producer, k+"="+s.ProducerConfig[k])
	}
	p("  %s; Connect standalone, StringConverter, outbox EventRouter (key = channel, value = data), snapshot.mode=no_data, message.prefix.exclude.list=.*,", s.Versions)
	p("  heartbeat.interval.ms=%d with heartbeat.action.query (an UPDATE of a table outside the publication: without both, Debezium's slot stays at its last event),",
		s.HeartbeatMs)
	p("  offset.flush.interval.ms=%d (Debezium confirms the slot at Connect's offset flush; the worker's default is 60000), plugin.discovery=service_load;", s.OffsetFlushMs)
	p("  Connect's own producer defaults: %s.", strings.Join(producer, ", "))
	p("  ready = Connect's task RUNNING (REST status) / pgoutbox's \"streaming started\"; both topics checked: every row once, key = channel, value = data.")
	flush()
}
