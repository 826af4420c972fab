package main

// The configuration of each part of the pipeline, from the command's Config.

import (
	"github.com/pgoutbox/pgoutbox/capture"
	"github.com/pgoutbox/pgoutbox/checkpoint"
	"github.com/pgoutbox/pgoutbox/pipeline"
	"github.com/pgoutbox/pgoutbox/sink"
)

func (c *Config) pipelineConfig(table capture.Table) pipeline.Config {
	return pipeline.Config{
		Slot:            c.Slot,
		Publication:     c.Publication,
		Table:           table,
		Window:          checkpoint.Limits{MaxEvents: c.MaxInflightEvents, MaxBytes: c.MaxInflightBytes},
		ShutdownTimeout: c.ShutdownTimeout,
		ReconnectMax:    c.ReconnectMax,
		MonitorInterval: c.MonitorInterval,
		Thresholds:      c.thresholds(),
		JanitorBatch:    c.JanitorBatch,
		AtLeastOnce:     !c.ExactlyOnce,
	}
}

func (c *Config) streamConfig(table capture.Table) capture.StreamConfig {
	return capture.StreamConfig{
		DatabaseURL:       c.DatabaseURL,
		Slot:              c.Slot,
		Publication:       c.Publication,
		Table:             table,
		StatusInterval:    c.StatusInterval,
		DeadLetterBadRows: c.DeadLetter() != "",
		MessagePrefix:     c.MessagePrefix,
		EventsFrom:        c.From(),
	}
}

func (c *Config) sinkConfig(m *metrics) sink.Config {
	return sink.Config{
		OnError:          m.publishError,
		DeadLetterTopic:  c.DeadLetter(),
		OnDeadLetter:     func(_ sink.Message, stage string) { m.deadLettered.WithLabelValues(stage).Inc() },
		OnSkipped:        func(reason string, msgs []sink.Message) { m.skipped.WithLabelValues(reason).Add(float64(len(msgs))) },
		OnTopicWait:      m.topicWait,
		MissingTopicWait: c.MissingTopicTimeout,
		Brokers:          c.Brokers(),
		Topic:            c.Topic,
		MaxBatchMessages: c.KafkaBatchMessages,
		MaxRequestBytes:  c.KafkaRequestBytes,
		RequestTimeout:   c.KafkaRequestTimeout,
		Linger:           c.KafkaLinger,
		BackoffMax:       c.KafkaBackoffMax,
		Compression:      c.KafkaCompression,
		Security:         c.kafkaSecurity(),
	}
}

// deleter is the janitor's database half with --retention=delete-after-publish, else nil.
func (c *Config) deleter(table capture.Table) pipeline.Deleter {
	if c.Retention != "delete-after-publish" {
		return nil
	}
	return capture.NewOutboxDeleter(c.DatabaseURL, table)
}

// thresholds builds the alarm thresholds from the configuration.
func (c *Config) thresholds() capture.Thresholds {
	return capture.Thresholds{
		LagWarnBytes: c.LagWarnBytes, LagCriticalBytes: c.LagCriticalBytes, KeepFraction: c.LagKeepFraction,
		AgeWarn: c.LagWarnAge, AgeCritical: c.LagCriticalAge,
	}
}
