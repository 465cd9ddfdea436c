package deadletter

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"
)

// Describe explains the dead-letter topic and lists the reason vocabulary
// that every component writes, for `shopstream dlq list --help`.
func Describe() string {
	var b strings.Builder
	b.WriteString("Records land here when a component (streamer, recommender, sink, collector) cannot process them.\n" +
		"Their key, value and headers are kept; added headers say why (the reason, and the error in detail),\n" +
		"which component, the source topic, partition and offset, and when. The reasons:\n\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, m := range Vocabulary() {
		fmt.Fprintf(tw, "  %s\t%s\n", m.Reason, m.Means)
	}
	tw.Flush()
	return b.String()
}

// PrintTable writes one line per letter: when, by which component, why,
// from where, and the start of its key and value.
func PrintTable(w io.Writer, dead []Letter) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tBY\tREASON\tFROM\tKEY\tVALUE\tERROR")
	for _, d := range dead {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Time.Local().Format("2006-01-02 15:04:05.000"), d.Component, d.Reason,
			d.SourceTopic+"/"+strconv.Itoa(int(d.SourcePartition))+"@"+strconv.FormatInt(d.SourceOffset, 10),
			preview(d.Key, 24), fmt.Sprintf("%d bytes %s", len(d.Value), preview(d.Value, 16)), d.Error)
	}
	tw.Flush()
}

// preview shows the start of a key or value: text as text, binary as hex.
func preview(b []byte, n int) string {
	if b == nil {
		return "null"
	}
	printable := utf8.Valid(b) && strings.IndexFunc(string(b), func(r rune) bool { return !unicode.IsPrint(r) }) < 0
	if printable {
		s := string(b)
		if r := []rune(s); len(r) > n {
			s = string(r[:n]) + "…"
		}
		return strconv.Quote(s)
	}
	if len(b) > n/2 {
		return fmt.Sprintf("%x…", b[:n/2])
	}
	return fmt.Sprintf("%x", b)
}
