package environment

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// A restarted dev stack keeps its topics, records, committed offsets and
// schema ids: records already in Kafka still name ids the registry knows.
func TestRestartKeepsKafkaAndRegistryState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := Options{DataDir: dir, StartKafka: true, StartRegistry: true}

	stack, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.KafkaBrokers...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "kept"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "kept", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	reg, _ := sr.NewClient(sr.URLs(stack.RegistryURL))
	ss, err := reg.CreateSchema(ctx, "kept-value", sr.Schema{Schema: `{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}`})
	if err != nil {
		t.Fatal(err)
	}
	kafkaPort := stack.KafkaBrokers[0][strings.LastIndex(stack.KafkaBrokers[0], ":")+1:]
	if err := stack.Close(); err != nil {
		t.Fatal(err)
	}

	opts.KafkaPort = atoi(t, kafkaPort)
	stack, err = Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Close()
	cl, err = kgo.NewClient(kgo.SeedBrokers(stack.KafkaBrokers...), kgo.ConsumeTopics("kept"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fs := cl.PollFetches(fctx)
	if errs := fs.Errors(); len(errs) > 0 {
		t.Fatalf("after restart: %v", errs)
	}
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "v" {
		t.Fatalf("after restart, topic holds %d records, want the one produced", len(recs))
	}
	reg, _ = sr.NewClient(sr.URLs(stack.RegistryURL))
	got, err := reg.SchemaByVersion(ctx, "kept-value", -1)
	if err != nil {
		t.Fatalf("after restart, registry lost the subject: %v", err)
	}
	if got.ID != ss.ID {
		t.Fatalf("after restart, schema id %d, want %d", got.ID, ss.ID)
	}
}

func TestTakenPortIsNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = Start(context.Background(), Options{StartKafka: true, KafkaPort: port})
	if err == nil {
		t.Fatal("started Kafka on a taken port")
	}
	for _, want := range []string{ln.Addr().String(), "Kafka", "is taken"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

func TestMissingTemporalCLISaysHowToGetIt(t *testing.T) {
	_, err := Start(context.Background(), Options{StartTemporal: true, TemporalCLI: "/nonexistent/temporal"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/temporal") {
		t.Fatalf("want an error naming the missing CLI, got %v", err)
	}
	t.Setenv("PATH", "")
	t.Setenv("TEMPORAL_CLI", "")
	t.Chdir(t.TempDir())
	_, err = FindTemporalCLI("")
	if err == nil {
		t.Skip("a temporal binary sits beside the test binary")
	}
	for _, want := range []string{"make temporal", "go install github.com/temporalio/cli/cmd/temporal@" + TemporalCLIVersion, "TEMPORAL_ADDRESS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a port: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}
