package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/loadgen"
)

func loadtestCommand() *cli.Command {
	return &cli.Command{
		Name:  "loadtest",
		Usage: "POST products to the product API at a steady rate and check that every accepted one ends complete",
		Description: "Open loop: sends --rate POSTs a second for --duration whatever the answers, measures each latency\n" +
			"from its scheduled send time, then waits until every accepted product is listed as complete.\n" +
			"Exit code 1 when some were not accepted or not complete within --wait.\n\n" +
			"Example (with `shopstream dev` running):\n  shopstream loadtest --rate 200 --duration 60s",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Value: "http://127.0.0.1:8080", Usage: "the product API"},
			&cli.StringFlag{Name: "image-url", Value: "http://127.0.0.1:8080/images/load-{i}.png", Usage: "image URL of each product; {i} becomes a number below --images"},
			&cli.IntFlag{Name: "rate", Value: 200, Usage: "POSTs per second"},
			&cli.DurationFlag{Name: "duration", Value: 60 * time.Second, Usage: "how long to send"},
			&cli.DurationFlag{Name: "wait", Value: 2 * time.Minute, Usage: "how long to wait for every accepted product to be complete"},
			&cli.IntFlag{Name: "malls", Value: 10, Usage: "malls to spread the products over"},
			&cli.IntFlag{Name: "images", Value: 100, Usage: "distinct image names"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"API_TOKEN"}, Usage: "the API's bearer token (write scope); empty: the one `shopstream dev` keeps in .data/api-token, if any"},
		},
		Action: func(c *cli.Context) error {
			o := loadgen.Options{
				BaseURL: c.String("url"), ImageURL: c.String("image-url"), Rate: c.Int("rate"), Duration: c.Duration("duration"),
				Wait: c.Duration("wait"), Malls: c.Int("malls"), Images: c.Int("images"),
				RunID: fmt.Sprintf("load%06x", rand.N(1<<24)), Progress: c.App.ErrWriter, Token: c.String("token"),
			}
			if o.Token == "" {
				if b, err := os.ReadFile(filepath.Join(".data", "api-token")); err == nil {
					o.Token = strings.TrimSpace(string(b))
				}
			}
			if o.Rate < 1 || o.Rate > 100000 || o.Duration <= 0 || o.Malls < 1 || o.Images < 1 {
				return usageErr("--rate 1..100000, and --duration, --malls and --images must be positive")
			}
			fmt.Fprintf(c.App.Writer, "loadtest %s: %d POST/s for %s against %s\n", o.RunID, o.Rate, o.Duration, o.BaseURL)
			res, err := loadgen.Run(c.Context, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, res.Summary())
			if res.Accepted != res.Sent || res.Complete < res.Accepted {
				return cli.Exit("loadtest: not every product was accepted and completed", 1)
			}
			return nil
		},
	}
}
