//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestCompose_ClusterProfile: docker-compose.yml's `cluster` profile is the topology of
// deploy/local/cluster.sh: three brokers of the scripts' Kafka version in one static quorum with
// replication factor 3 and min.insync.replicas=2, Redis as both Centrifugo nodes' engine, one
// consumer group with a distinct static instance id per node, haproxy with its configuration,
// and a relay creating its topic with replication factor 3.
func TestCompose_ClusterProfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Profiles    []string          `yaml:"profiles"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	wantImage := "apache/kafka:" + kafkaVersionOfScripts(t)
	cluster := []string{"kafka-1", "kafka-2", "kafka-3", "redis", "centrifugo-1", "centrifugo-2", "haproxy", "setup-cluster", "pgoutbox-cluster"}
	for _, name := range cluster {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		if len(s.Profiles) != 1 || s.Profiles[0] != "cluster" {
			t.Errorf("%s: profiles %v, want [cluster] (the default `docker compose up` stays single-node)", name, s.Profiles)
		}
	}
	nodeIDs := map[string]bool{}
	for _, name := range cluster[:3] {
		s := c.Services[name]
		e := s.Environment
		if s.Image != wantImage {
			t.Errorf("%s: image %s, want %s", name, s.Image, wantImage)
		}
		nodeIDs[e["KAFKA_NODE_ID"]] = true
		if e["KAFKA_DEFAULT_REPLICATION_FACTOR"] != "3" || e["KAFKA_MIN_INSYNC_REPLICAS"] != "2" || e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] != "3" {
			t.Errorf("%s: want replication factor 3 and min.insync.replicas 2, got %v", name, e)
		}
		if v := e["KAFKA_CONTROLLER_QUORUM_VOTERS"]; strings.Count(v, "@") != 3 {
			t.Errorf("%s: quorum voters %q, want the three nodes", name, v)
		}
	}
	if len(nodeIDs) != 3 {
		t.Errorf("the brokers' node ids %v are not distinct", nodeIDs)
	}
	ids := map[string]bool{}
	for _, name := range []string{"centrifugo-1", "centrifugo-2"} {
		e := c.Services[name].Environment
		if e["CENTRIFUGO_ENGINE_TYPE"] != "redis" || !strings.Contains(e["CENTRIFUGO_ENGINE_REDIS_ADDRESS"], "redis:") {
			t.Errorf("%s: want the Redis engine on the redis service, got %v", name, e)
		}
		ids[e["CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_INSTANCE_ID"]] = true
	}
	if len(ids) != 2 || ids[""] {
		t.Errorf("the Centrifugo nodes' consumer instance ids %v: want two distinct, stable ids", ids)
	}
	if got := strings.Join(c.Services["setup-cluster"].Command, " "); !strings.Contains(got, "--replication-factor 3") {
		t.Errorf("setup-cluster: command %q, want --replication-factor 3", got)
	}
	cfg, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "haproxy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"centrifugo-1:58000", "centrifugo-2:58000"} {
		if !strings.Contains(string(cfg), node) {
			t.Errorf("deploy/haproxy/haproxy.cfg has no server %s", node)
		}
	}
}
