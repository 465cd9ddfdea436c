package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/streamer/recommender"
)

func recommenderCommand() *cli.Command {
	return &cli.Command{
		Name:  "recommender",
		Usage: "run the built-in recommender alone: join search prompts with the filtered products into per-user recommendations",
		Description: "The streamer process runs it by default; run it alone to scale it apart from the filter, and not\n" +
			"at all when ksqlDB builds the recommendations. Instances share the prompts as a consumer group\n" +
			"(--group); each reads the whole filtered topic into its own table before joining. Exactly once;\n" +
			"a restarted instance rebuilds its table and users from Kafka. Stops cleanly on SIGINT/SIGTERM.\n\n" +
			"Example:\n  shopstream recommender --instance-id recs-1 --metrics-addr 127.0.0.1:9465",
		Flags: withFlags(logFlag,
			&cli.StringFlag{Name: "group", EnvVars: []string{"RECOMMENDER_GROUP"}, Value: recommender.DefaultGroup, Usage: "consumer group of the recommender instances"},
			&cli.StringFlag{Name: "instance-id", EnvVars: []string{"RECOMMENDER_INSTANCE_ID"}, Usage: "this instance's name, stable across restarts and unique among instances (default: the host name)"},
			&cli.DurationFlag{Name: "wait-for-topics", Value: time.Minute, Usage: "how long to wait for `shopstream bootstrap` to create missing topics"},
			maxUsersFlag("max-users", ""),
		),
		Action: func(c *cli.Context) error {
			cfg, logger, err := setup(c)
			if err != nil {
				return err
			}
			return process.RunRecommender(c.Context, cfg, logger, process.RecommenderSettings{
				Group: c.String("group"), InstanceID: c.String("instance-id"), TopicWait: c.Duration("wait-for-topics"), MaxUsers: c.Int("max-users"),
			}, c.App.Writer)
		},
	}
}

// maxUsersFlag is the recommender's bound on the users it holds, for the
// recommender command and the streamer's built-in recommender alike.
func maxUsersFlag(name, category string) cli.Flag {
	return &cli.IntFlag{Name: name, EnvVars: []string{"RECOMMENDER_MAX_USERS"}, Value: recommender.DefaultMaxUsers, Category: category,
		Usage: "users whose recommendations an instance holds; past it, those idle longest are forgotten and rebuilt from Kafka when they search again",
		Action: func(_ *cli.Context, n int) error {
			if n < 1 {
				return usageErr("--%s %d: want a positive number such as %d", name, n, recommender.DefaultMaxUsers)
			}
			return nil
		}}
}
