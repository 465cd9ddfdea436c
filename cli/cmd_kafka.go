package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/hanging"
	"github.com/shopstream/shopstream/internal/process"
)

func kafkaCommand() *cli.Command {
	scan := &cli.BoolFlag{Name: "scan", Usage: "also read every partition's log from its start to find transactions no broker knows of any more " +
		"(the embedded Kafka after a crash; `shopstream dev` does this by itself); reads everything, so name topics on a big cluster"}
	topics := &cli.StringSliceFlag{Name: "topic", Usage: "look only at this topic (repeat for more; default: every topic)"}
	asJSON := &cli.BoolFlag{Name: "json", Usage: "print JSON"}
	return &cli.Command{
		Name:  "kafka",
		Usage: "Kafka operations: find and abort hanging transactions",
		Subcommands: []*cli.Command{{
			Name:  "hanging",
			Usage: "list the transactions that hold a partition's last stable offset, and say which hang",
			Description: "A read_committed consumer (every exactly-once part of shopstream) reads a partition only up to its\n" +
				"last stable offset: the first record of the oldest transaction still open there. A transaction that\n" +
				"nothing will end (its producer is gone and the coordinator does not know it, or it has been open\n" +
				"longer than its timeout) hangs: consumers stop at it and their lag, measured against that offset,\n" +
				"says 0. `shopstream status` and the shopstream_kafka_hanging_transaction_seconds gauge report it.\n\n" +
				"This asks the brokers as Kafka's kafka-transactions.sh find-hanging does (DescribeProducers,\n" +
				"ListTransactions, DescribeTransactions) and names each transaction's producer, epoch, transactional\n" +
				"id and start. Exit code 0 when nothing hangs, 1 when something does, 2 for bad input.\n\n" +
				"Examples:\n  shopstream kafka hanging\n  shopstream kafka hanging --topic shop_products --scan\n  shopstream kafka hanging --json",
			Flags:  withFlags(topics, scan, asJSON),
			Action: listHanging,
		}, {
			Name:  "abort-hanging",
			Usage: "abort hanging transactions: all older than --older-than, or one by --topic, --partition and --producer-id",
			Description: "Writes an abort marker for each transaction (WriteTxnMarkers), as kafka-transactions.sh abort does:\n" +
				"its records become aborted and the partition's last stable offset moves on. A producer still\n" +
				"working on an aborted transaction finds it fenced, so abort only what hangs: --older-than aborts\n" +
				"the transactions `shopstream kafka hanging` calls hanging and that are older than the bound (those\n" +
				"found only in the log with --scan have no start time and are always included); the one-transaction\n" +
				"form aborts what you name. --dry-run shows what would be aborted. Exit code 0 when every abort\n" +
				"succeeded (or nothing matched --older-than), 1 when one failed or the named transaction is not open,\n" +
				"2 for bad input.\n\n" +
				"Examples:\n  shopstream kafka abort-hanging --older-than 15m --dry-run\n" +
				"  shopstream kafka abort-hanging --topic shop_products --partition 3 --producer-id 4123",
			Flags: withFlags(topics, scan, asJSON,
				&cli.DurationFlag{Name: "older-than", Value: -1, Usage: "abort every hanging transaction open longer than this (0s: every hanging one)"},
				&cli.IntFlag{Name: "partition", Value: -1, Usage: "with --topic and --producer-id: the partition of the one transaction to abort"},
				&cli.Int64Flag{Name: "producer-id", Value: -1, Usage: "with --topic and --partition: the producer whose transaction to abort"},
				&cli.BoolFlag{Name: "dry-run", Usage: "show what would be aborted, abort nothing"},
			),
			Action: abortHanging,
		}},
	}
}

func findHanging(c *cli.Context) (*process.Env, hanging.Report, error) {
	e, err := connect(c, process.NeedKafka)
	if err != nil {
		return nil, hanging.Report{}, err
	}
	r, err := hanging.Find(c.Context, hanging.Options{Admin: e.Admin, Kafka: e.Kafka, Topics: c.StringSlice("topic"), Scan: c.Bool("scan")})
	if err != nil {
		e.Close()
		return nil, r, err
	}
	return e, r, nil
}

func listHanging(c *cli.Context) error {
	if c.NArg() != 0 {
		return usageErr("kafka hanging takes no arguments (see --help)")
	}
	e, r, err := findHanging(c)
	if err != nil {
		return err
	}
	defer e.Close()
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, r); err != nil {
			return err
		}
	} else {
		r.Write(c.App.Writer)
	}
	if len(r.Hanging()) > 0 {
		return cli.Exit("", 1)
	}
	return nil
}

func abortHanging(c *cli.Context) error {
	t := hanging.Target{One: c.IsSet("partition") || c.IsSet("producer-id"), Partition: int32(c.Int("partition")),
		ProducerID: c.Int64("producer-id"), OlderThan: c.Duration("older-than")}
	if topics := c.StringSlice("topic"); len(topics) == 1 {
		t.Topic = topics[0]
	}
	switch {
	case c.NArg() != 0:
		return usageErr("kafka abort-hanging takes no arguments (see --help)")
	case t.One && (len(c.StringSlice("topic")) != 1 || t.Partition < 0 || t.ProducerID < 0):
		return usageErr("to abort one transaction give one --topic, --partition and --producer-id (`shopstream kafka hanging` lists them)")
	case t.One && c.IsSet("older-than"):
		return usageErr("give either --older-than or --topic/--partition/--producer-id, not both")
	case !t.One && t.OlderThan < 0:
		return usageErr("say what to abort: --older-than 15m (every hanging transaction open longer than that), or --topic, --partition and --producer-id (one)")
	}
	e, r, err := findHanging(c)
	if err != nil {
		return err
	}
	defer e.Close()
	pick := r.Pick(t)
	if t.One && len(pick) == 0 {
		return cli.Exit(fmt.Sprintf("producer %d has no open transaction on %s/%d (`shopstream kafka hanging` lists them; --scan also reads the log)",
			t.ProducerID, t.Topic, t.Partition), 1)
	}
	results := make([]hanging.Result, len(pick))
	for i, t := range pick {
		results[i].Txn = t
	}
	dry := c.Bool("dry-run")
	if !dry {
		if results, err = hanging.Abort(c.Context, e.Admin, pick); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		if err := hanging.WriteResultsJSON(c.App.Writer, results, dry); err != nil {
			return err
		}
	} else {
		hanging.WriteResults(c.App.Writer, results, dry)
	}
	if len(hanging.Failed(results)) > 0 {
		return cli.Exit("", 1)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
