package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shopstream/shopstream/internal/apiauth"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/process"
	"github.com/shopstream/shopstream/internal/productapi"
)

func apiFlags() []cli.Flag {
	cat := "Product API"
	return []cli.Flag{
		&cli.StringFlag{Name: "api-addr", EnvVars: []string{"API_ADDR"}, Value: productapi.DefaultAddr, Usage: "where the product API listens (it serves /healthz and /readyz there too, and /metrics to a token for every mall)", Category: cat},
		&cli.Int64Flag{Name: "max-body-bytes", EnvVars: []string{"API_MAX_BODY_BYTES"}, Value: productapi.DefaultMaxBody, Usage: "largest POST body; larger ones get 413", Category: cat},
		&cli.BoolFlag{Name: "insecure-no-auth", EnvVars: []string{"API_INSECURE_NO_AUTH"}, Usage: "serve beyond loopback without a tokens file: anyone who reaches the API may write", Category: cat},
		&cli.StringFlag{Name: "fetch-allow-hosts", EnvVars: []string{"IMAGE_FETCH_ALLOW_HOSTS"}, Usage: "comma-separated host or host:port that image URLs may name although they are internal addresses (as the collector's)", Category: cat},
	}
}

func apiCommand() *cli.Command {
	return &cli.Command{
		Name:  "api",
		Usage: "serve the product API: POST products, read complete products, delete them",
		Description: "POST /api/v1/products queues a product for image collection; GET /api/v1/complete-products\n" +
			"lists the products whose images are all stored; see /api/v1/openapi.json for everything.\n" +
			"Every route but /healthz, /readyz and the OpenAPI document takes a bearer token from the tokens\n" +
			"file (API_TOKENS_FILE; `shopstream api token create` makes one). Without tokens the API listens on\n" +
			"loopback only, unless --insecure-no-auth. Reads need DATABASE_DSN.\n\n" +
			"Example:\n  shopstream api token create --scope write --mall m1    # prints the token once\n  shopstream api &\n" +
			"  curl -X POST localhost:8080/api/v1/products -H \"Authorization: Bearer $TOKEN\" \\\n" +
			"    -d '{\"mallId\":\"m1\",\"productId\":\"p1\",\"title\":\"Mug\",\"price\":\"9.50\",\"imageUrl\":\"https://cdn.example.com/mug.png\"}'",
		Flags:       withFlags(append(apiFlags(), logFlag)...),
		Subcommands: []*cli.Command{tokenCommand()},
		Action: func(c *cli.Context) error {
			s := process.APISettings{Addr: c.String("api-addr"), MaxBody: c.Int64("max-body-bytes"),
				InsecureNoAuth: c.Bool("insecure-no-auth"), AllowHosts: config.SplitList(c.String("fetch-allow-hosts"))}
			if s.Addr == "" || !strings.Contains(s.Addr, ":") {
				return usageErr("--api-addr %q: want host:port, e.g. %s", s.Addr, productapi.DefaultAddr)
			}
			if s.MaxBody < 1 {
				return usageErr("--max-body-bytes %d: want a positive size", s.MaxBody)
			}
			cfg, logger, err := setup(c)
			if err != nil {
				return err
			}
			return process.RunAPI(c.Context, cfg, logger, s, c.App.Writer)
		},
	}
}

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "create, list or revoke the product API's bearer tokens (API_TOKENS_FILE)",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "add a token to the tokens file and print it, once: only its hash is kept",
				Flags: withFlags(
					&cli.StringFlag{Name: "scope", Value: "read", Usage: "read (GET) or write (also POST and DELETE)"},
					&cli.StringFlag{Name: "mall", Usage: "limit the token to one mall's products"},
					&cli.Float64Flag{Name: "rate", Usage: fmt.Sprintf("requests per second (0: %d)", apiauth.DefaultRate)},
					&cli.IntFlag{Name: "burst", Usage: fmt.Sprintf("requests at once above the rate (0: %d)", apiauth.DefaultBurst)},
					&cli.StringFlag{Name: "name", Usage: "who or what the token is for"},
				),
				Action: func(c *cli.Context) error {
					scope, err := apiauth.ParseScope(c.String("scope"))
					if err != nil {
						return usageErr("--scope: %v", err)
					}
					if m := c.String("mall"); m != "" && !productapi.ValidID(m) {
						return usageErr("--mall %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", m)
					}
					if c.Float64("rate") < 0 || c.Int("burst") < 0 {
						return usageErr("--rate and --burst must not be negative")
					}
					cfg, err := readConfig(c)
					if err != nil {
						return err
					}
					token, t, err := apiauth.Create(cfg.TokensFile(), apiauth.Options{Scope: scope, Mall: c.String("mall"),
						Rate: c.Float64("rate"), Burst: c.Int("burst"), Name: c.String("name"), Now: time.Now()})
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, token)
					fmt.Fprintf(c.App.ErrWriter, "token %s added to %s; it is shown only now\n", t.Describe(), cfg.TokensFile())
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list the tokens (ids, scopes, malls, limits; never the tokens)",
				Flags: withFlags(),
				Action: func(c *cli.Context) error {
					cfg, err := readConfig(c)
					if err != nil {
						return err
					}
					tokens, err := apiauth.Load(cfg.TokensFile())
					if errors.Is(err, fs.ErrNotExist) {
						fmt.Fprintf(c.App.Writer, "no tokens file at %s\n", cfg.TokensFile())
						return nil
					}
					if err != nil {
						return err
					}
					for _, t := range tokens {
						fmt.Fprintln(c.App.Writer, t.Describe())
					}
					return nil
				},
			},
			{
				Name:      "revoke",
				Usage:     "remove a token by its id (the 12 hex digits after sst_); a running API stops taking it within a second",
				ArgsUsage: "ID",
				Flags:     withFlags(),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageErr("give the id of the token to revoke (shopstream api token list shows them)")
					}
					cfg, err := readConfig(c)
					if err != nil {
						return err
					}
					ok, err := apiauth.Revoke(cfg.TokensFile(), c.Args().First())
					if err != nil {
						return err
					}
					if !ok {
						return cli.Exit(fmt.Sprintf("no token %s in %s", c.Args().First(), cfg.TokensFile()), 1)
					}
					fmt.Fprintf(c.App.Writer, "token %s revoked\n", c.Args().First())
					return nil
				},
			},
		},
	}
}
