package main

import (
	"sync/atomic"
	"time"

	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/pipeline"
	"github.com/pgoutbox/pgoutbox/sink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the relay's Prometheus metrics, on their own registry (no global state), and the
// readiness /readyz reports: the relay's Observer. docs/monitoring.md's metrics table lists them; keep
// the two in step.
type metrics struct {
	reg *prometheus.Registry

	eventsPublished prometheus.Counter
	bytesPublished  prometheus.Counter
	publishErrors   *prometheus.CounterVec
	deadLettered    *prometheus.CounterVec
	skipped         *prometheus.CounterVec
	sessions        prometheus.Counter
	commitToAck     prometheus.Histogram
	commitToReceive prometheus.Histogram

	slotUnconfirmed prometheus.Gauge
	slotRetained    prometheus.Gauge
	slotSafeWAL     prometheus.Gauge
	slotKeepSize    prometheus.Gauge
	slotActive      prometheus.Gauge
	slotFailover    prometheus.Gauge
	slotSynced      prometheus.Gauge
	slotInactive    prometheus.Gauge
	slotWALStatus   *prometheus.GaugeVec
	alarmLevel      prometheus.Gauge

	topicWaits prometheus.Gauge

	health   *health
	progress func() pipeline.Progress // the relay's; set before the first scrape
	lastAck  atomic.Int64             // unix nanoseconds of the last acknowledgement
	startNow time.Time
}

var _ pipeline.Observer = (*metrics)(nil)

var walStatuses = []string{"reserved", "extended", "unreserved", "lost"}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), startNow: time.Now(), health: &health{reason: "starting"},
		progress: func() pipeline.Progress { return pipeline.Progress{} }}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	gaugeFunc := func(name, help string, f func() float64) prometheus.GaugeFunc {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.eventsPublished = counter("pgoutbox_events_published_total", "Outbox rows acknowledged by Kafka (acks=all).")
	m.bytesPublished = counter("pgoutbox_published_bytes_total", "Approximate bytes of the rows acknowledged by Kafka.")
	m.publishErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgoutbox_publish_errors_total", Help: "Failed Kafka produce requests, by kind (retriable ones are retried).",
	}, []string{"kind"})
	m.deadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgoutbox_dead_lettered_total", Help: "Rows sent to the dead-letter topic, by stage: decode (bad column values) or kafka (rejected by the broker).",
	}, []string{"stage"})
	m.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgoutbox_events_skipped_total", Help: "Rows acknowledged without being sent, by reason: already_in_kafka (a partition's last record proves an earlier session wrote them). They count in pgoutbox_events_published_total too.",
	}, []string{"reason"})
	m.topicWaits = gauge("pgoutbox_topic_waits", "Topics whose metadata publishing waits for (missing, or no leader): every partition waits meanwhile, and /readyz fails.")
	m.sessions = counter("pgoutbox_replication_connects_total", "Replication sessions started (1 + reconnections).")
	m.commitToAck = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pgoutbox_commit_to_ack_seconds",
		Help:    "Time from a transaction's commit to Kafka's acknowledgement of its row.",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30, 60, 300},
	})
	m.commitToReceive = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pgoutbox_commit_to_receive_seconds",
		Help:    "Time from a transaction's commit to its arrival at the relay (per transaction with outbox rows): the part of commit-to-ack spent before Kafka.",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30, 60, 300},
	})
	m.slotUnconfirmed = gauge("pgoutbox_slot_unconfirmed_bytes", "pg_current_wal_lsn() - confirmed_flush_lsn of the slot: WAL not yet confirmed as published.")
	m.slotRetained = gauge("pgoutbox_slot_retained_bytes", "pg_current_wal_lsn() - restart_lsn of the slot: WAL the slot keeps on disk.")
	m.slotSafeWAL = gauge("pgoutbox_slot_safe_wal_bytes", "safe_wal_size of the slot: bytes that can still be written before it is invalidated; -1 when unbounded.")
	m.slotKeepSize = gauge("pgoutbox_max_slot_wal_keep_bytes", "The server's max_slot_wal_keep_size in bytes; -1 = unbounded.")
	m.slotFailover = gauge("pgoutbox_slot_failover", "1 when the slot is a failover slot, kept on standbys with sync_replication_slots (PostgreSQL 17+).")
	m.slotSynced = gauge("pgoutbox_slot_synced", "1 when the slot on this server is a copy synchronized from the primary (on a standby, PostgreSQL 17+).")
	m.slotInactive = gauge("pgoutbox_slot_inactive_seconds", "Seconds since the slot was last streamed (PostgreSQL 17+ inactive_since); 0 while streamed or unknown.")
	m.slotActive = gauge("pgoutbox_slot_active", "1 when a process streams from the slot.")
	m.slotWALStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pgoutbox_slot_wal_status", Help: "1 for the slot's current wal_status (reserved, extended, unreserved, lost).",
	}, []string{"status"})
	m.alarmLevel = gauge("pgoutbox_alarm_level", "Slot alarm level: 0 ok, 1 warn, 2 critical, 3 lost.")

	progress := func(f func(pipeline.Progress) float64) func() float64 {
		return func() float64 { return f(m.progress()) }
	}
	m.reg.MustRegister(m.eventsPublished, m.bytesPublished, m.publishErrors, m.deadLettered, m.skipped, m.topicWaits, m.sessions, m.commitToAck, m.commitToReceive,
		m.slotUnconfirmed, m.slotRetained, m.slotSafeWAL, m.slotKeepSize, m.slotActive, m.slotFailover, m.slotSynced, m.slotInactive, m.slotWALStatus, m.alarmLevel,
		gaugeFunc("pgoutbox_inflight_events", "Rows read from PostgreSQL and not yet acknowledged by Kafka.",
			progress(func(p pipeline.Progress) float64 { return float64(p.InFlightRows) })),
		gaugeFunc("pgoutbox_inflight_bytes", "Approximate bytes of the in-flight rows.",
			progress(func(p pipeline.Progress) float64 { return float64(p.InFlightBytes) })),
		gaugeFunc("pgoutbox_confirmed_lsn", "The position last confirmed to PostgreSQL (every earlier commit is in Kafka), as a number.",
			progress(func(p pipeline.Progress) float64 { return float64(p.Confirmed) })),
		gaugeFunc("pgoutbox_received_lsn", "The newest WAL position received from PostgreSQL, as a number.",
			progress(func(p pipeline.Progress) float64 { return float64(p.Received) })),
		gaugeFunc("pgoutbox_oldest_unacked_commit_age_seconds", "Age of the oldest commit whose rows Kafka has not acknowledged; 0 when none.",
			progress(func(p pipeline.Progress) float64 { return p.OldestUnacked.Seconds() })),
		gaugeFunc("pgoutbox_time_since_last_ack_seconds", "Seconds since Kafka last acknowledged rows (since start when none yet).", func() float64 {
			last := m.lastAck.Load()
			if last == 0 {
				return time.Since(m.startNow).Seconds()
			}
			return time.Since(time.Unix(0, last)).Seconds()
		}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, k := range []string{"retriable", "rejected", "fatal"} {
		m.publishErrors.WithLabelValues(k) // export zeros, so rate() works from the start
	}
	for _, stage := range []string{"decode", "kafka"} {
		m.deadLettered.WithLabelValues(stage)
	}
	m.skipped.WithLabelValues(sink.SkipAlreadyInKafka)
	return m
}

// topicWait is the sink's OnTopicWait: publishing waits for a topic's metadata.
func (m *metrics) topicWait(topic string, waiting bool) {
	if m.health.setTopicWait(topic, waiting) {
		m.topicWaits.Inc()
	} else {
		m.topicWaits.Dec()
	}
}

// SessionStarted implements pipeline.Observer.
func (m *metrics) SessionStarted() {
	m.sessions.Inc()
	m.health.set(true, "")
}

// SessionEnded implements pipeline.Observer.
func (m *metrics) SessionEnded(err error) {
	reason := "stopping"
	if err != nil {
		reason = err.Error()
	}
	m.health.set(false, reason)
}

// Received implements pipeline.Observer: a transaction arrived from PostgreSQL.
func (m *metrics) Received(commitTime time.Time) {
	m.commitToReceive.Observe(time.Since(commitTime).Seconds())
}

// Published implements pipeline.Observer: Kafka acknowledged msgs.
func (m *metrics) Published(msgs []sink.Message) {
	now := time.Now()
	bytes := 0
	for i := range msgs {
		bytes += msgs[i].Size
		m.commitToAck.Observe(now.Sub(msgs[i].Time).Seconds())
	}
	m.eventsPublished.Add(float64(len(msgs)))
	m.bytesPublished.Add(float64(bytes))
	m.lastAck.Store(now.UnixNano())
}

// publishError counts a failed produce request by kind (sink.Config.OnError).
func (m *metrics) publishError(kind string, _ error) {
	m.publishErrors.WithLabelValues(kind).Inc()
}

// Lost implements pipeline.Observer: the lost alarm, from the publication guard or a dropped slot.
func (m *metrics) Lost(err error) {
	m.alarmLevel.Set(float64(capture.LevelLost))
	m.health.setAlarm(capture.LevelLost, err.Error())
}

// SlotChecked implements pipeline.Observer: it exports one reading of the slot monitor.
func (m *metrics) SlotChecked(st capture.Slot, level capture.Level, reasons []string) {
	m.health.setAlarm(level, capture.FormatReasons(reasons))
	m.slotUnconfirmed.Set(float64(st.UnconfirmedBytes))
	m.slotRetained.Set(float64(st.RetainedBytes))
	m.slotSafeWAL.Set(float64(st.SafeWALBytes))
	m.slotKeepSize.Set(float64(st.MaxSlotWALKeepSize))
	active := 0.0
	if st.Active {
		active = 1
	}
	m.slotActive.Set(active)
	m.slotFailover.Set(boolGauge(st.Failover))
	m.slotSynced.Set(boolGauge(st.Synced))
	inactive := 0.0
	if !st.Active && !st.InactiveSince.IsZero() {
		inactive = time.Since(st.InactiveSince).Seconds()
	}
	m.slotInactive.Set(inactive)
	for _, s := range walStatuses {
		v := 0.0
		if s == st.WALStatus {
			v = 1
		}
		m.slotWALStatus.WithLabelValues(s).Set(v)
	}
	m.alarmLevel.Set(float64(level))
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
