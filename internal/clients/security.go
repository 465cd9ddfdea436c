package clients

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/shopstream/shopstream/internal/config"
)

// TLSFiles name the PEM files of a TLS client: the CA that signed the
// server's certificate (the system's roots when empty) and, for mutual
// TLS, a client certificate and its key.
type TLSFiles struct {
	CA, Cert, Key string
	// SkipHostnameCheck still verifies the server's chain against the CA,
	// but not that the certificate names the host dialed.
	SkipHostnameCheck bool
	// ServerName overrides the name checked (and sent as SNI).
	ServerName string
}

// TLSConfig builds the client TLS configuration of f, with errors that
// name the file and the setting.
func TLSConfig(f TLSFiles, settingPrefix string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("read the CA of %sCA_LOCATION: %w", settingPrefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%sCA_LOCATION %s holds no PEM certificate", settingPrefix, f.CA)
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("load the client certificate %s and key %s (%sCERTIFICATE_LOCATION, %sKEY_LOCATION): %w", f.Cert, f.Key, settingPrefix, settingPrefix, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if f.SkipHostnameCheck {
		// InsecureSkipVerify turns off all of crypto/tls's checks; the
		// chain is checked here again, only the name is not.
		roots := cfg.RootCAs
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	return cfg, nil
}

// securityOpts are the TLS dialer and the SASL mechanism of o.Security.
func securityOpts(o KafkaOptions) ([]kgo.Opt, error) {
	s := o.Security
	var opts []kgo.Opt
	if s.TLS() {
		if !s.EndpointIdentification {
			o.Logger.Warn("kafka TLS endpoint identification is OFF: a broker's certificate is not checked against its host name, so anyone holding a certificate from the same CA can pose as a broker; set KAFKA_SSL_ENDPOINT_IDENTIFICATION=true once the certificates name the brokers",
				"brokers", strings.Join(o.Brokers, ","))
		}
		cfg, err := TLSConfig(TLSFiles{CA: s.CALocation, Cert: s.CertificateLocation, Key: s.KeyLocation, SkipHostnameCheck: !s.EndpointIdentification}, "KAFKA_SSL_")
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if !s.SASL() {
		return opts, nil
	}
	if !s.TLS() && (s.Mechanism == config.MechanismPlain || s.Mechanism == config.MechanismOAuthBearer) {
		o.Logger.Warn("kafka SASL "+s.Mechanism+" over SASL_PLAINTEXT sends the credential unencrypted; use SASL_SSL outside a laptop",
			"brokers", strings.Join(o.Brokers, ","))
	}
	m, err := mechanism(o)
	if err != nil {
		return nil, err
	}
	return append(opts, kgo.SASL(m)), nil
}

// mechanism builds the SASL mechanism the settings name.
func mechanism(o KafkaOptions) (sasl.Mechanism, error) {
	s := o.Security
	switch s.Mechanism {
	case config.MechanismPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism(), nil
	case config.MechanismScram256:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	case config.MechanismScram512:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	case config.MechanismOAuthBearer:
		src, err := newTokenSource(s, o.Now)
		if err != nil {
			return nil, err
		}
		return oauth.Oauth(func(ctx context.Context) (oauth.Auth, error) {
			tok, err := src.Token(ctx)
			return oauth.Auth{Token: tok}, err
		}), nil
	case config.MechanismAWSMSKIAM:
		return MSKIAM(), nil
	}
	return nil, fmt.Errorf("KAFKA_SASL_MECHANISM %q: want one of %s", s.Mechanism, strings.Join(config.SASLMechanisms, ", "))
}

// MSKIAM is the AWS_MSK_IAM mechanism with the AWS SDK's default
// credential chain (environment, shared profile, web identity as IRSA
// uses, EKS pod identity, instance role), loaded at the first
// authentication. The SDK caches the credentials and renews them before
// they expire; each authentication asks it again, so a rotated key is used.
func MSKIAM() sasl.Mechanism {
	var (
		mu       sync.Mutex
		provider awssdk.CredentialsProvider
	)
	return aws.ManagedStreamingIAM(func(ctx context.Context) (aws.Auth, error) {
		mu.Lock()
		if provider == nil {
			cfg, err := awsconfig.LoadDefaultConfig(ctx)
			if err != nil {
				mu.Unlock()
				return aws.Auth{}, fmt.Errorf("AWS_MSK_IAM: load the AWS SDK's default configuration: %w", err)
			}
			provider = cfg.Credentials
		}
		p := provider
		mu.Unlock()
		if p == nil {
			return aws.Auth{}, errors.New("AWS_MSK_IAM: the AWS SDK found no credentials (AWS_ACCESS_KEY_ID, a profile, IRSA or pod identity)")
		}
		creds, err := p.Retrieve(ctx)
		if err != nil {
			return aws.Auth{}, fmt.Errorf("AWS_MSK_IAM: get credentials from the AWS SDK's default chain: %w", err)
		}
		return aws.Auth{AccessKey: creds.AccessKeyID, SecretKey: creds.SecretAccessKey, SessionToken: creds.SessionToken, UserAgent: "shopstream"}, nil
	})
}
