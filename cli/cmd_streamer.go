package main

import (
	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/streamer"
)

func streamerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "instance-id", EnvVars: []string{"STREAMER_INSTANCE_ID"}, Usage: "this instance's id on the applied-filter topic; unique among live instances (default: host name and a random suffix)", Category: "Streamer"},
		&cli.StringFlag{Name: "transactional-id", EnvVars: []string{"STREAMER_TRANSACTIONAL_ID"}, Usage: "this instance's Kafka transactional id, stable across restarts so that a restarted instance aborts its predecessor's open transaction at once (the Helm chart gives the pod name); unique among live instances (default: from the instance id, with a random suffix)", Category: "Streamer"},
		&cli.StringFlag{Name: "group", EnvVars: []string{"STREAMER_GROUP"}, Value: streamer.DefaultGroup, Usage: "consumer group the instances share", Category: "Streamer"},
		&cli.BoolFlag{Name: "case-sensitive", EnvVars: []string{"STREAMER_CASE_SENSITIVE"}, Usage: "match case-sensitively whatever the filter says (default: as each filter state says; states are case-insensitive unless set with --case-sensitive)", Category: "Streamer"},
		&cli.IntFlag{Name: "max-batch", EnvVars: []string{"STREAMER_MAX_BATCH"}, Value: streamer.DefaultMaxBatch, Usage: "most records in one transaction", Category: "Streamer"},
		&cli.IntFlag{Name: "fetch-max-bytes", EnvVars: []string{"STREAMER_FETCH_MAX_BYTES"}, Value: streamer.DefaultFetchMaxBytes, Usage: "most bytes one Kafka fetch brings (small enough to stay in the CPU's cache until the filter reads it)", Category: "Streamer"},
		&cli.IntFlag{Name: "fetch-max-partition-bytes", EnvVars: []string{"STREAMER_FETCH_MAX_PARTITION_BYTES"}, Value: streamer.DefaultFetchMaxPartitionBytes, Usage: "most bytes of one partition in a Kafka fetch", Category: "Streamer"},
		&cli.StringFlag{Name: "recommender", EnvVars: []string{"STREAMER_RECOMMENDER"}, Value: "on", Usage: "run the built-in recommender in this process: on, or off when ksqlDB builds the recommendations", Category: "Streamer"},
		maxUsersFlag("recommender-max-users", "Streamer"),
	}
}

func readStreamerSettings(c *cli.Context) (process.StreamerSettings, error) {
	o := process.StreamerSettings{
		InstanceID: c.String("instance-id"), TransactionalID: c.String("transactional-id"), Group: c.String("group"),
		CaseSensitive: c.Bool("case-sensitive"), MaxBatch: c.Int("max-batch"), RecommenderMaxUsers: c.Int("recommender-max-users"),
		FetchMaxBytes: c.Int("fetch-max-bytes"), FetchMaxPartitionBytes: c.Int("fetch-max-partition-bytes"),
	}
	switch c.String("recommender") {
	case "on":
		o.Recommender = true
	case "off":
	default:
		return o, usageErr("--recommender %q: want on or off", c.String("recommender"))
	}
	return o, o.Validate()
}

func streamerCommand() *cli.Command {
	return &cli.Command{
		Name:  "streamer",
		Usage: "filter products by the current substring into the filtered topic, exactly once (long-running)",
		Description: "Joins the consumer group on the product topic and forwards every product whose name contains the\n" +
			"filter's substring (case-insensitive unless the filter or --case-sensitive says otherwise) to the\n" +
			"filtered topic, unchanged, with a header naming the filter version. Deletes (tombstones) pass.\n" +
			"Records that are not Confluent-framed Avro products go to the dead-letter topic.\n" +
			"The filter comes from the control topic that `shopstream filter set` publishes to; every instance\n" +
			"reports the version it applied. Run several instances to share the partitions. `shopstream dev`\n" +
			"runs one inside. Stops cleanly on SIGINT/SIGTERM within 10 s.\n\n" +
			"Examples:\n  shopstream streamer\n  shopstream streamer --instance-id eu-1 --metrics-addr 127.0.0.1:9470",
		Flags: withFlags(append(streamerFlags(), logFlag)...),
		Action: func(c *cli.Context) error {
			cfg, logger, err := setup(c)
			if err != nil {
				return err
			}
			s, err := readStreamerSettings(c)
			if err != nil {
				return err
			}
			return process.RunStreamer(c.Context, cfg, logger, s, c.App.Writer)
		},
	}
}
