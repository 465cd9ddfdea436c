package activities

import (
	"context"
	"strconv"
	"strings"

	"github.com/shopstream/shopstream/internal/txnmarker"
	"github.com/shopstream/shopstream/workflows"
)

// markerPrefix starts the metadata of every offset a batch's marker
// commits: the records the batch committed.
const markerPrefix = "shopstream emulate batch: records="

// batchMarks are a batch's marker offsets: where it ended in each partition
// of the topic it wrote, each saying how many records the batch committed.
func batchMarks(topic string, ends map[int32]int64, count int64) []txnmarker.Mark {
	meta := markerPrefix + strconv.FormatInt(count, 10)
	marks := make([]txnmarker.Mark, 0, len(ends))
	for p, off := range ends {
		marks = append(marks, txnmarker.Mark{Topic: topic, Partition: p, Offset: off, Metadata: meta})
	}
	return marks
}

// committedBatch reads a batch's marker. Only call it after fencing the
// batch's transactional id, so that no commit of it can still be pending.
func (e *Emulate) committedBatch(ctx context.Context, group string) (workflows.EmulateBatchResult, bool, error) {
	var res workflows.EmulateBatchResult
	marks, _, err := e.producers.Committed(ctx, group)
	if err != nil {
		return res, false, err
	}
	res.Partitions = map[int32]int64{}
	found := false
	for _, m := range marks {
		n, err := strconv.ParseInt(strings.TrimPrefix(m.Metadata, markerPrefix), 10, 64)
		if !strings.HasPrefix(m.Metadata, markerPrefix) || err != nil {
			continue
		}
		found = true
		res.Records = n
		res.Partitions[m.Partition] = m.Offset
	}
	res.AlreadyCommitted = found
	return res, found, nil
}

// closeProducers closes the producers the worker keeps. (Not exported: the
// worker registers every exported method as an activity.)
func (e *Emulate) closeProducers() { e.producers.Close() }
