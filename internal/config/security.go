package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
)

// KafkaSecurity is how Kafka clients authenticate and encrypt, under the
// names Kafka clients (librdkafka, Confluent's) give these settings.
type KafkaSecurity struct {
	// Protocol is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
	Protocol string
	// Mechanism is the SASL mechanism (one of SASLMechanisms).
	Mechanism string
	Username  string
	// Password is KAFKA_SASL_PASSWORD, or what PasswordFile holds.
	Password     string
	PasswordFile string
	// OAUTHBEARER: a token file re-read when it changes, or the OAuth
	// client-credentials flow against a token endpoint.
	OAuthTokenFile        string
	OAuthTokenEndpointURL string
	OAuthClientID         string
	OAuthClientSecret     string
	OAuthClientSecretFile string
	OAuthScope            string
	// TLS: the CA that signed the brokers' certificates (system roots when
	// empty), and a client certificate and key for mutual TLS.
	CALocation          string
	CertificateLocation string
	KeyLocation         string
	// EndpointIdentification checks that a broker's certificate names the
	// host dialed; off, only the chain is checked.
	EndpointIdentification bool
}

// Security protocols and SASL mechanisms, as Kafka clients name them.
const (
	ProtocolPlaintext     = "PLAINTEXT"
	ProtocolSSL           = "SSL"
	ProtocolSASLPlaintext = "SASL_PLAINTEXT"
	ProtocolSASLSSL       = "SASL_SSL"

	MechanismPlain       = "PLAIN"
	MechanismScram256    = "SCRAM-SHA-256"
	MechanismScram512    = "SCRAM-SHA-512"
	MechanismOAuthBearer = "OAUTHBEARER"
	MechanismAWSMSKIAM   = "AWS_MSK_IAM"
)

// SecurityProtocols and SASLMechanisms are the values shopstream accepts.
var (
	SecurityProtocols = []string{ProtocolPlaintext, ProtocolSSL, ProtocolSASLPlaintext, ProtocolSASLSSL}
	SASLMechanisms    = []string{MechanismPlain, MechanismScram256, MechanismScram512, MechanismOAuthBearer, MechanismAWSMSKIAM}
)

// TLS says whether the brokers are spoken to over TLS.
func (k KafkaSecurity) TLS() bool {
	return k.Protocol == ProtocolSSL || k.Protocol == ProtocolSASLSSL
}

// SASL says whether clients authenticate with SASL.
func (k KafkaSecurity) SASL() bool {
	return k.Protocol == ProtocolSASLPlaintext || k.Protocol == ProtocolSASLSSL
}

// Who names the principal for messages: the mechanism and the user, never
// a password.
func (k KafkaSecurity) Who() string {
	switch {
	case !k.SASL() && k.CertificateLocation != "":
		return "the client certificate " + k.CertificateLocation + " (" + k.Protocol + ")"
	case !k.SASL():
		return "no credentials (" + k.Protocol + ")"
	case k.Mechanism == MechanismOAuthBearer && k.OAuthTokenFile != "":
		return "the OAUTHBEARER token in " + k.OAuthTokenFile
	case k.Mechanism == MechanismOAuthBearer:
		return "OAUTHBEARER client " + strconv.Quote(k.OAuthClientID)
	case k.Mechanism == MechanismAWSMSKIAM:
		return "AWS_MSK_IAM (the AWS SDK's default credentials)"
	}
	return "user " + strconv.Quote(k.Username) + " (" + k.Mechanism + " over " + k.Protocol + ")"
}

// RegistryAuth is how the schema registry client authenticates: basic auth
// (or user:password@ in the URL), or a bearer token, and its TLS.
type RegistryAuth struct {
	Username        string
	Password        string
	PasswordFile    string
	BearerToken     string
	BearerTokenFile string
	CALocation      string
	// CertificateLocation and KeyLocation are a client certificate.
	CertificateLocation string
	KeyLocation         string
}

// TemporalSecurity are the Temporal client's TLS and API key settings,
// under the environment names of the Temporal SDK's own environment
// configuration (package envconfig), which reads them.
type TemporalSecurity struct {
	APIKey string
	// TLS is "" (the SDK decides: on with an API key), or a boolean.
	TLS              string
	ClientCertPath   string
	ClientKeyPath    string
	ServerCACertPath string
	ServerName       string
}

// securitySettings are the settings of issue 12 (secured clusters), in one
// block of the table. Passwords, keys and tokens are Password settings:
// `shopstream config` only says whether they are set.
func securitySettings() []Setting {
	s := func(name, env string, field func(*Config) *string, usage string) Setting {
		return Setting{Name: name, Env: env, Usage: usage,
			Get: func(c *Config) string { return *field(c) },
			Set: func(c *Config, v string) error { *field(c) = strings.TrimSpace(v); return nil }}
	}
	secret := func(name, env string, field func(*Config) *string, usage string) Setting {
		st := s(name, env, field, usage)
		st.Secret, st.Password = true, true
		// A password may begin or end with a space: keep it as given.
		st.Set = func(c *Config, v string) error { *field(c) = v; return nil }
		return st
	}
	upper := func(name, env string, field func(*Config) *string, allowed []string, usage string) Setting {
		st := s(name, env, field, usage)
		st.Set = func(c *Config, v string) error {
			v = strings.ToUpper(strings.TrimSpace(v))
			if v != "" && !slices.Contains(allowed, v) {
				return fmt.Errorf("want one of %s", strings.Join(allowed, ", "))
			}
			*field(c) = v
			return nil
		}
		return st
	}
	k := func(c *Config) *KafkaSecurity { return &c.KafkaSecurity }
	r := func(c *Config) *RegistryAuth { return &c.Registry }
	tl := func(c *Config) *TemporalSecurity { return &c.TemporalSecurity }
	return []Setting{
		upper("kafka-security-protocol", "KAFKA_SECURITY_PROTOCOL", func(c *Config) *string { return &k(c).Protocol }, SecurityProtocols,
			"how clients speak to the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
		upper("kafka-sasl-mechanism", "KAFKA_SASL_MECHANISM", func(c *Config) *string { return &k(c).Mechanism }, SASLMechanisms,
			"SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM"),
		s("kafka-sasl-username", "KAFKA_SASL_USERNAME", func(c *Config) *string { return &k(c).Username }, "SASL user (PLAIN, SCRAM)"),
		secret("kafka-sasl-password", "KAFKA_SASL_PASSWORD", func(c *Config) *string { return &k(c).Password }, "SASL password (PLAIN, SCRAM); wins over --kafka-sasl-password-file"),
		s("kafka-sasl-password-file", "KAFKA_SASL_PASSWORD_FILE", func(c *Config) *string { return &k(c).PasswordFile }, "file holding the SASL password, read at start (a mounted Kubernetes Secret)"),
		s("kafka-sasl-oauthbearer-token-file", "KAFKA_SASL_OAUTHBEARER_TOKEN_FILE", func(c *Config) *string { return &k(c).OAuthTokenFile }, "OAUTHBEARER: file holding the token, re-read whenever it changes"),
		s("kafka-sasl-oauthbearer-token-endpoint-url", "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", func(c *Config) *string { return &k(c).OAuthTokenEndpointURL }, "OAUTHBEARER: OAuth token endpoint of the client-credentials flow"),
		s("kafka-sasl-oauthbearer-client-id", "KAFKA_SASL_OAUTHBEARER_CLIENT_ID", func(c *Config) *string { return &k(c).OAuthClientID }, "OAUTHBEARER: OAuth client id"),
		secret("kafka-sasl-oauthbearer-client-secret", "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET", func(c *Config) *string { return &k(c).OAuthClientSecret }, "OAUTHBEARER: OAuth client secret; wins over the _FILE setting"),
		s("kafka-sasl-oauthbearer-client-secret-file", "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE", func(c *Config) *string { return &k(c).OAuthClientSecretFile }, "OAUTHBEARER: file holding the OAuth client secret, read at start"),
		s("kafka-sasl-oauthbearer-scope", "KAFKA_SASL_OAUTHBEARER_SCOPE", func(c *Config) *string { return &k(c).OAuthScope }, "OAUTHBEARER: scope to ask the token endpoint for"),
		s("kafka-ssl-ca-location", "KAFKA_SSL_CA_LOCATION", func(c *Config) *string { return &k(c).CALocation }, "PEM file of the CA that signed the brokers' certificates (default: the system's roots)"),
		s("kafka-ssl-certificate-location", "KAFKA_SSL_CERTIFICATE_LOCATION", func(c *Config) *string { return &k(c).CertificateLocation }, "PEM client certificate for mutual TLS"),
		s("kafka-ssl-key-location", "KAFKA_SSL_KEY_LOCATION", func(c *Config) *string { return &k(c).KeyLocation }, "PEM key of the client certificate"),
		{Name: "kafka-ssl-endpoint-identification", Env: "KAFKA_SSL_ENDPOINT_IDENTIFICATION",
			Usage: "check that a broker's certificate names its host (true/https or false/none; off is logged as a warning)",
			Get:   func(c *Config) string { return strconv.FormatBool(c.KafkaSecurity.EndpointIdentification) },
			Set: func(c *Config, v string) error {
				switch strings.ToLower(strings.TrimSpace(v)) {
				case "", "true", "https", "on", "1":
					c.KafkaSecurity.EndpointIdentification = true
				case "false", "none", "off", "0":
					c.KafkaSecurity.EndpointIdentification = false
				default:
					return errors.New("want true (https) or false (none)")
				}
				return nil
			}},
		s("schema-registry-username", "SCHEMA_REGISTRY_USERNAME", func(c *Config) *string { return &r(c).Username }, "schema registry basic-auth user (or user:password@ in the URL)"),
		secret("schema-registry-password", "SCHEMA_REGISTRY_PASSWORD", func(c *Config) *string { return &r(c).Password }, "schema registry basic-auth password; wins over the _FILE setting"),
		s("schema-registry-password-file", "SCHEMA_REGISTRY_PASSWORD_FILE", func(c *Config) *string { return &r(c).PasswordFile }, "file holding the schema registry password, read at start"),
		secret("schema-registry-bearer-token", "SCHEMA_REGISTRY_BEARER_TOKEN", func(c *Config) *string { return &r(c).BearerToken }, "schema registry bearer token (instead of basic auth)"),
		s("schema-registry-bearer-token-file", "SCHEMA_REGISTRY_BEARER_TOKEN_FILE", func(c *Config) *string { return &r(c).BearerTokenFile }, "file holding the schema registry bearer token, read at start"),
		s("schema-registry-ssl-ca-location", "SCHEMA_REGISTRY_SSL_CA_LOCATION", func(c *Config) *string { return &r(c).CALocation }, "PEM file of the CA that signed the registry's certificate"),
		s("schema-registry-ssl-certificate-location", "SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION", func(c *Config) *string { return &r(c).CertificateLocation }, "PEM client certificate for the registry"),
		s("schema-registry-ssl-key-location", "SCHEMA_REGISTRY_SSL_KEY_LOCATION", func(c *Config) *string { return &r(c).KeyLocation }, "PEM key of the registry client certificate"),
		secret("temporal-api-key", "TEMPORAL_API_KEY", func(c *Config) *string { return &tl(c).APIKey }, "Temporal Cloud API key (turns TLS on unless TEMPORAL_TLS=false)"),
		{Name: "temporal-tls", Env: "TEMPORAL_TLS", Usage: "speak TLS to Temporal: true or false; empty: on with an API key or client certificate",
			Get: func(c *Config) string { return c.TemporalSecurity.TLS },
			Set: func(c *Config, v string) error {
				v = strings.ToLower(strings.TrimSpace(v))
				if v != "" {
					if _, err := strconv.ParseBool(v); err != nil {
						return errors.New("want true or false")
					}
				}
				c.TemporalSecurity.TLS = v
				return nil
			}},
		s("temporal-tls-client-cert-path", "TEMPORAL_TLS_CLIENT_CERT_PATH", func(c *Config) *string { return &tl(c).ClientCertPath }, "PEM client certificate for Temporal mTLS"),
		s("temporal-tls-client-key-path", "TEMPORAL_TLS_CLIENT_KEY_PATH", func(c *Config) *string { return &tl(c).ClientKeyPath }, "PEM key of the Temporal client certificate"),
		s("temporal-tls-server-ca-cert-path", "TEMPORAL_TLS_SERVER_CA_CERT_PATH", func(c *Config) *string { return &tl(c).ServerCACertPath }, "PEM CA of the Temporal frontend's certificate (default: the system's roots)"),
		s("temporal-tls-server-name", "TEMPORAL_TLS_SERVER_NAME", func(c *Config) *string { return &tl(c).ServerName }, "TLS server name (SNI) of the Temporal frontend"),
	}
}

// readSecretFiles fills each secret from its *_FILE setting when the
// secret itself is not set, so a mounted Kubernetes Secret works without
// putting the value in the environment. Trailing newlines are dropped, as
// `kubectl create secret --from-file` keeps the file as it is.
func (c *Config) readSecretFiles() error {
	for _, f := range []struct {
		value      *string
		path, flag string
	}{
		{&c.KafkaSecurity.Password, c.KafkaSecurity.PasswordFile, "kafka-sasl-password-file"},
		{&c.KafkaSecurity.OAuthClientSecret, c.KafkaSecurity.OAuthClientSecretFile, "kafka-sasl-oauthbearer-client-secret-file"},
		{&c.Registry.Password, c.Registry.PasswordFile, "schema-registry-password-file"},
		{&c.Registry.BearerToken, c.Registry.BearerTokenFile, "schema-registry-bearer-token-file"},
	} {
		if *f.value != "" || f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return fmt.Errorf("--%s (%s): %w", f.flag, envOf(f.flag), err)
		}
		*f.value = strings.TrimRight(string(b), "\r\n")
		if *f.value == "" {
			return fmt.Errorf("--%s (%s): %s is empty", f.flag, envOf(f.flag), f.path)
		}
	}
	return nil
}

func envOf(flag string) string {
	for _, s := range Settings() {
		if s.Name == flag {
			return s.Env
		}
	}
	return ""
}

// validateSecurity checks the settings of securitySettings together: what
// a protocol needs, what a mechanism needs, pairs that go together.
func (c *Config) validateSecurity() error {
	k := c.KafkaSecurity
	if k.Protocol == "" {
		c.KafkaSecurity.Protocol = ProtocolPlaintext
		k.Protocol = ProtocolPlaintext
	}
	switch {
	case k.SASL() && k.Mechanism == "":
		return fmt.Errorf("KAFKA_SECURITY_PROTOCOL=%s needs KAFKA_SASL_MECHANISM (--kafka-sasl-mechanism): one of %s", k.Protocol, strings.Join(SASLMechanisms, ", "))
	case !k.SASL() && k.Mechanism != "":
		return fmt.Errorf("KAFKA_SASL_MECHANISM=%s is set but KAFKA_SECURITY_PROTOCOL is %s: set SASL_SSL (or SASL_PLAINTEXT) to use it, or unset the mechanism", k.Mechanism, k.Protocol)
	case !k.TLS() && (k.CALocation != "" || k.CertificateLocation != "" || k.KeyLocation != ""):
		return fmt.Errorf("KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL is %s: set SSL or SASL_SSL to use TLS", k.Protocol)
	case (k.CertificateLocation == "") != (k.KeyLocation == ""):
		return errors.New("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together: set both for mutual TLS, or neither")
	}
	if k.SASL() {
		switch k.Mechanism {
		case MechanismPlain, MechanismScram256, MechanismScram512:
			if k.Username == "" || k.Password == "" {
				return fmt.Errorf("KAFKA_SASL_MECHANISM=%s needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)", k.Mechanism)
			}
		case MechanismOAuthBearer:
			flow := k.OAuthTokenEndpointURL != "" || k.OAuthClientID != "" || k.OAuthClientSecret != ""
			switch {
			case k.OAuthTokenFile != "" && flow:
				return errors.New("OAUTHBEARER: set either KAFKA_SASL_OAUTHBEARER_TOKEN_FILE or the client-credentials settings (KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL, _CLIENT_ID, _CLIENT_SECRET), not both")
			case k.OAuthTokenFile == "" && (k.OAuthTokenEndpointURL == "" || k.OAuthClientID == "" || k.OAuthClientSecret == ""):
				return errors.New("OAUTHBEARER needs KAFKA_SASL_OAUTHBEARER_TOKEN_FILE, or KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL with _CLIENT_ID and _CLIENT_SECRET (or _CLIENT_SECRET_FILE)")
			case k.OAuthTokenEndpointURL != "":
				if u, err := url.Parse(k.OAuthTokenEndpointURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return fmt.Errorf("KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL %q: want an https:// URL", k.OAuthTokenEndpointURL)
				}
			}
		case MechanismAWSMSKIAM:
			if k.Protocol != ProtocolSASLSSL {
				return errors.New("AWS_MSK_IAM works over TLS only: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (MSK's IAM listener is port 9098)")
			}
		}
	}
	r := c.Registry
	if u, err := url.Parse(c.SchemaRegistryURL); err == nil && u.User != nil && r.Username != "" {
		return errors.New("SCHEMA_REGISTRY_URL has user:password@ and SCHEMA_REGISTRY_USERNAME is set: use one of them")
	}
	switch {
	case r.Username != "" && r.Password == "":
		return errors.New("SCHEMA_REGISTRY_USERNAME needs SCHEMA_REGISTRY_PASSWORD (or SCHEMA_REGISTRY_PASSWORD_FILE)")
	case r.BearerToken != "" && r.Username != "":
		return errors.New("set either SCHEMA_REGISTRY_BEARER_TOKEN or SCHEMA_REGISTRY_USERNAME, not both")
	case (r.CertificateLocation == "") != (r.KeyLocation == ""):
		return errors.New("SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION and SCHEMA_REGISTRY_SSL_KEY_LOCATION go together: set both, or neither")
	}
	t := c.TemporalSecurity
	if (t.ClientCertPath == "") != (t.ClientKeyPath == "") {
		return errors.New("TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH go together: set both for mTLS, or neither")
	}
	return nil
}
