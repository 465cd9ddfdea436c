package component

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/records"
)

// A component without its clients is refused with an error that names it
// and what is missing; the optional parts get working defaults.
func TestCheckNamesWhatIsMissingAndFillsTheRest(t *testing.T) {
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: []string{"127.0.0.1:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		deps Deps
		want string
	}{
		{Deps{}, "sink: no Kafka clients given"},
		{Deps{Kafka: k}, "sink: no serde (schema registry client) given"},
	} {
		if err := c.deps.Check("sink"); err == nil || err.Error() != c.want {
			t.Errorf("#%d: Check = %v, want %q", i, err, c.want)
		}
	}
	d := Deps{Kafka: k, Serde: records.NewSerde(nil, nil)}
	if err := d.Check("sink"); err != nil {
		t.Fatal(err)
	}
	if d.Registerer == nil || d.Logger == nil || d.Now == nil {
		t.Fatalf("Check left a default unset: %+v", d)
	}
	if d.Logger.Enabled(context.Background(), slog.LevelError) {
		t.Error("the default logger logs; want it to drop everything")
	}
	if got := time.Since(d.Now()); got < 0 || got > time.Minute {
		t.Errorf("the default clock is %s off, want time.Now", got)
	}
}
