package records

import (
	"context"
	"testing"
	"time"
)

// A process that did not encode a record itself (the streamer, a restarted
// dev stack) must fetch the writer schema from the registry and parse it.
func TestDecodeWithAFreshSerde(t *testing.T) {
	ctx := context.Background()
	writer := newTestSerde(t)
	b, err := writer.Encode(ctx, nil, "t", &SearchPrompt{SearchID: "s", UserID: "u", Query: "q", SearchedAt: time.UnixMilli(1)})
	if err != nil {
		t.Fatal(err)
	}
	reader := NewSerde(writer.Schemas(), writer.Registry())
	var p SearchPrompt
	if err := reader.Decode(ctx, b, &p); err != nil || p.Query != "q" {
		t.Fatalf("Decode = %+v, %v", p, err)
	}
}
