package backfill

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/records"
	"github.com/shopstream/shopstream/streamer"
)

// nameReader reads a framed product's name from its raw bytes, as the
// streamer does, with one layout per writer schema id.
type nameReader struct {
	serde   *records.Serde
	ours    avro.Schema
	layouts map[int]*streamer.Layout
}

func (n *nameReader) name(ctx context.Context, value []byte) ([]byte, error) {
	id, body, err := records.SplitHeader(value)
	if err != nil {
		return nil, err
	}
	lay, ok := n.layouts[id]
	if !ok {
		w, err := n.serde.WriterSchema(ctx, id)
		if err != nil {
			return nil, err
		}
		if lay, err = streamer.NewLayout(w, n.ours); err != nil {
			return nil, fmt.Errorf("schema id %d: %w", id, err)
		}
		n.layouts[id] = lay
	}
	return lay.Name(body)
}

// sortByOffset orders out by the source offsets of the records they copy.
func sortByOffset(out []*kgo.Record, sources map[string]*kgo.Record) {
	slices.SortFunc(out, func(a, b *kgo.Record) int {
		return cmp.Compare(sources[string(a.Key)].Offset, sources[string(b.Key)].Offset)
	})
}
