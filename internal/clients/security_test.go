package clients_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/kafkatest"
	"github.com/shopstream/shopstream/internal/tlsgen"
)

// Every transport and mechanism that kfake speaks, through the one
// builder: a record goes in and comes back out.
func TestEachSecuredClusterWorksThroughTheBuilder(t *testing.T) {
	for i, s := range []kafkatest.Secure{
		{TLS: true},
		{TLS: true, ClientCert: true},
		{Mechanism: config.MechanismPlain},
		{Mechanism: config.MechanismScram256},
		{TLS: true, Mechanism: config.MechanismScram512},
		{TLS: true, ClientCert: true, Mechanism: config.MechanismPlain},
	} {
		kc := kafkatest.Start(t, kafkatest.Secured(s), kafkatest.SeedTopics(1, "t"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cl, err := kc.Kafka.Connect(ctx, kgo.DefaultProduceTopic("t"), kgo.ConsumeTopics("t"))
		if err != nil {
			t.Fatalf("#%d %+v: %v", i, s, err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("#%d %+v: produce: %v", i, s, err)
		}
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil || len(fs.Records()) != 1 {
			t.Fatalf("#%d %+v: read %d records, %v", i, s, len(fs.Records()), err)
		}
		cl.Close()
		cancel()
	}
}

// connectErr connects with sec changed by change to a cluster running s,
// and returns the error and how long it took.
func connectErr(t *testing.T, s kafkatest.Secure, change func(kc *kafkatest.Cluster, sec *config.KafkaSecurity)) (error, time.Duration) {
	t.Helper()
	kc := kafkatest.Start(t, kafkatest.Secured(s))
	sec := kc.Security
	change(kc, &sec)
	k, err := clients.NewKafka(clients.KafkaOptions{Brokers: kc.Brokers, Security: sec, DialTimeout: 5 * time.Second})
	if err != nil {
		return err, 0
	}
	start := time.Now()
	cl, err := k.Connect(context.Background())
	if err == nil {
		cl.Close()
	}
	return err, time.Since(start)
}

// Each way a secured connection goes wrong gives one line that names the
// broker, the mechanism and the user, says what to check, never shows the
// password, and comes within the dial timeout (5s here).
func TestConnectErrorsSayWhatToCheck(t *testing.T) {
	for _, c := range []struct {
		name   string
		s      kafkatest.Secure
		change func(kc *kafkatest.Cluster, sec *config.KafkaSecurity)
		want   []string
	}{
		{"wrong password", kafkatest.Secure{TLS: true, Mechanism: config.MechanismScram512},
			func(_ *kafkatest.Cluster, sec *config.KafkaSecurity) { sec.Password = "not-the-password" },
			[]string{"as user \"admin\" (SCRAM-SHA-512 over SASL_SSL)", "authentication failed", "KAFKA_SASL_PASSWORD"}},
		{"unknown user", kafkatest.Secure{Mechanism: config.MechanismPlain},
			func(_ *kafkatest.Cluster, sec *config.KafkaSecurity) { sec.Username = "nobody" },
			[]string{"as user \"nobody\" (PLAIN over SASL_PLAINTEXT)", "authentication failed", "KAFKA_SASL_USERNAME"}},
		{"mechanism the broker does not enable", kafkatest.Secure{Mechanism: config.MechanismScram256},
			func(_ *kafkatest.Cluster, sec *config.KafkaSecurity) {
				sec.Mechanism = config.MechanismOAuthBearer
				sec.OAuthTokenFile = writeToken(t, "opaque")
			},
			[]string{"OAUTHBEARER", "does not enable the SASL mechanism OAUTHBEARER", "KAFKA_SASL_MECHANISM"}},
		{"plaintext to a TLS listener", kafkatest.Secure{TLS: true},
			func(_ *kafkatest.Cluster, sec *config.KafkaSecurity) { *sec = config.Default().KafkaSecurity },
			[]string{"as no credentials (PLAINTEXT)", "as a TLS listener does with plaintext", "KAFKA_SECURITY_PROTOCOL=SSL"}},
		{"TLS to a plaintext listener", kafkatest.Secure{Mechanism: config.MechanismPlain},
			func(kc *kafkatest.Cluster, sec *config.KafkaSecurity) { sec.Protocol = config.ProtocolSASLSSL },
			[]string{"PLAIN over SASL_SSL", "never answered the TLS handshake", "plaintext listener"}},
		{"untrusted certificate", kafkatest.Secure{TLS: true},
			func(_ *kafkatest.Cluster, sec *config.KafkaSecurity) { sec.CALocation = otherCA(t) },
			[]string{"signed by an authority this client does not trust", "KAFKA_SSL_CA_LOCATION"}},
		{"no client certificate for mutual TLS", kafkatest.Secure{TLS: true, ClientCert: true},
			func(_ *kafkatest.Cluster, sec *config.KafkaSecurity) {
				sec.CertificateLocation, sec.KeyLocation = "", ""
			},
			[]string{"requires a client certificate", "KAFKA_SSL_CERTIFICATE_LOCATION"}},
		{"no SASL to a SASL listener", kafkatest.Secure{Mechanism: config.MechanismScram256},
			func(_ *kafkatest.Cluster, sec *config.KafkaSecurity) { *sec = config.Default().KafkaSecurity },
			[]string{"requires SASL", "KAFKA_SASL_MECHANISM"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err, took := connectErr(t, c.s, c.change)
			if err == nil {
				t.Fatal("connected")
			}
			msg := err.Error()
			t.Logf("%s after %s", msg, took.Round(time.Millisecond))
			for _, want := range append(c.want, "127.0.0.1:") {
				if !strings.Contains(msg, want) {
					t.Errorf("the error does not say %q", want)
				}
			}
			if strings.Contains(msg, "not-the-password") || strings.HasSuffix(msg, "EOF") || msg == "EOF" {
				t.Errorf("the error shows the password or ends in a bare EOF")
			}
			if took > 5*time.Second+time.Second {
				t.Errorf("took %s, want within the 5s dial timeout", took)
			}
		})
	}
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// otherCA writes the certificate of a CA that signed nothing the cluster
// holds.
func otherCA(t *testing.T) string {
	t.Helper()
	ca, err := tlsgen.NewCA("someone else", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(p, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// jwt is an unsigned JWT with an exp claim, as a token file or endpoint
// would hold (signatures are the broker's concern).
func jwt(exp time.Time) string {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	return enc(`{"alg":"none","typ":"JWT"}`) + "." + enc(fmt.Sprintf(`{"sub":"shopstream","exp":%d}`, exp.Unix())) + ".c2ln"
}

// A broker whose certificate does not name the host dialed: refused with
// endpoint identification on (the default), saying what to do; accepted
// with it off, which the log says loudly, while the chain is still checked.
func TestEndpointIdentification(t *testing.T) {
	ca, err := tlsgen.NewCA("broker CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server([]string{"broker.internal"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.ServerConfig(pair, false)
	if err != nil {
		t.Fatal(err)
	}
	kc := kafkatest.Start(t, kafkatest.KfakeOpts(kfake.TLS(srv)))
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	connect := func(sec config.KafkaSecurity, log *strings.Builder) error {
		k, err := clients.NewKafka(clients.KafkaOptions{Brokers: kc.Brokers, Security: sec, DialTimeout: 5 * time.Second,
			Logger: slog.New(slog.NewTextHandler(log, nil))})
		if err != nil {
			return err
		}
		cl, err := k.Connect(context.Background())
		if err == nil {
			cl.Close()
		}
		return err
	}
	sec := config.KafkaSecurity{Protocol: config.ProtocolSSL, CALocation: caFile, EndpointIdentification: true}
	var log strings.Builder
	if err := connect(sec, &log); err == nil || !strings.Contains(err.Error(), "does not name 127.0.0.1") || !strings.Contains(err.Error(), "KAFKA_SSL_ENDPOINT_IDENTIFICATION=false") {
		t.Errorf("a certificate for another host: %v", err)
	}
	sec.EndpointIdentification = false
	if err := connect(sec, &log); err != nil {
		t.Errorf("with endpoint identification off: %v", err)
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "endpoint identification is OFF") {
		t.Errorf("turning endpoint identification off is not logged as a warning: %q", log.String())
	}
	sec.CALocation = otherCA(t)
	if err := connect(sec, &log); err == nil || !strings.Contains(err.Error(), "does not trust") {
		t.Errorf("with identification off, a certificate from another CA must still be refused: %v", err)
	}
}
