package hanging

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Write prints the report as a table, with what to do about each hanging
// transaction.
func (r Report) Write(w io.Writer) {
	if len(r.Txns) == 0 && len(r.Held) == 0 {
		fmt.Fprintln(w, "no open transaction holds a last stable offset back")
		if r.Scanned > 0 {
			fmt.Fprintf(w, "(and the logs of %d partitions hold no transaction without its marker)\n", r.Scanned)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tPRODUCER\tEPOCH\tTRANSACTIONAL ID\tSTARTED\tAGE\tFIRST\tSTABLE\tEND\tFOUND IN\tHANGING")
	for _, t := range r.Txns {
		started, age := "-", "-"
		if !t.Started.IsZero() {
			started, age = t.Started.Format(time.RFC3339), t.Age.Round(time.Second).String()
		}
		id := t.TransactionalID
		if id == "" {
			id = "-"
		}
		verdict := "no"
		if t.Hanging {
			verdict = "yes"
		}
		fmt.Fprintf(tw, "%s/%d\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", t.Topic, t.Partition, t.ProducerID, t.ProducerEpoch,
			id, started, age, t.FirstOffset, t.Stable, t.End, t.Found, verdict)
	}
	tw.Flush()
	fmt.Fprintln(w)
	hanging := 0
	for _, t := range r.Txns {
		fmt.Fprintf(w, "%s/%d, producer %d: %s\n", t.Topic, t.Partition, t.ProducerID, t.Reason)
		if t.Hanging && !t.Followed {
			hanging++
			fmt.Fprintf(w, "  abort it: shopstream kafka abort-hanging --topic %s --partition %d --producer-id %d\n", t.Topic, t.Partition, t.ProducerID)
		}
	}
	for _, h := range r.Held {
		fmt.Fprintf(w, "%s/%d: its last stable offset %d is behind its end %d and no broker names a producer holding it; if it does not move, the transaction that holds it hangs\n",
			h.Topic, h.Partition, h.Stable, h.End)
	}
	if hanging > 1 {
		fmt.Fprintln(w, "\nabort them all: shopstream kafka abort-hanging --older-than 0s")
	}
}

// WriteResults prints what an abort did, or would do (dryRun).
func WriteResults(w io.Writer, rs []Result, dryRun bool) {
	if len(rs) == 0 {
		fmt.Fprintln(w, "nothing to abort")
		return
	}
	for _, r := range rs {
		what := fmt.Sprintf("transaction of producer %d (epoch %d", r.ProducerID, r.ProducerEpoch)
		if r.TransactionalID != "" {
			what += ", " + r.TransactionalID
		}
		what += fmt.Sprintf(") on %s/%d from offset %d", r.Topic, r.Partition, r.FirstOffset)
		switch {
		case dryRun:
			fmt.Fprintf(w, "would abort the %s\n", what)
		case r.Err != nil:
			fmt.Fprintf(w, "could not abort the %s: %v\n", what, r.Err)
		default:
			fmt.Fprintf(w, "aborted the %s\n", what)
		}
	}
}

// WriteResultsJSON prints what an abort did, or would do (dryRun), as JSON:
// each transaction with whether it was aborted and why not.
func WriteResultsJSON(w io.Writer, rs []Result, dryRun bool) error {
	type out struct {
		Txn
		Aborted bool   `json:"aborted"`
		Error   string `json:"error,omitempty"`
	}
	list := make([]out, 0, len(rs))
	for _, r := range rs {
		o := out{Txn: r.Txn, Aborted: r.Err == nil && !dryRun}
		if r.Err != nil {
			o.Error = r.Err.Error()
		}
		list = append(list, o)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}
