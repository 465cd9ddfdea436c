package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseEnv parses settings given by environment name, the rest default.
func parseEnv(env map[string]string) (*Config, error) {
	byFlag := map[string]string{}
	for _, s := range Settings() {
		if v, ok := env[s.Env]; ok {
			byFlag[s.Name] = v
		} else {
			byFlag[s.Name] = s.Default
		}
	}
	return Parse(func(name string) string { return byFlag[name] })
}

// A *_FILE is read at start when its value is not set; the value wins;
// `shopstream config` says a password is set and never shows it.
func TestSecretFilesAndMasking(t *testing.T) {
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "scram-sha-512", "KAFKA_SASL_USERNAME": "alice", "KAFKA_SASL_PASSWORD_FILE": file}
	cfg, err := parseEnv(base)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KafkaSecurity.Password != "from-the-file" || cfg.KafkaSecurity.Protocol != ProtocolSASLSSL || cfg.KafkaSecurity.Mechanism != MechanismScram512 {
		t.Fatalf("read %+v", cfg.KafkaSecurity)
	}
	base["KAFKA_SASL_PASSWORD"] = "given"
	if cfg, err = parseEnv(base); err != nil || cfg.KafkaSecurity.Password != "given" {
		t.Fatalf("the value does not win over the file: %v %q", err, cfg.KafkaSecurity.Password)
	}
	var out strings.Builder
	if err := cfg.Describe(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "given") || !strings.Contains(out.String(), "***** (set)") || !strings.Contains(out.String(), file) {
		t.Fatalf("config shows:\n%s", out.String())
	}
	base["KAFKA_SASL_PASSWORD"] = ""
	base["KAFKA_SASL_PASSWORD_FILE"] = filepath.Join(t.TempDir(), "missing")
	if _, err := parseEnv(base); err == nil || !strings.Contains(err.Error(), "KAFKA_SASL_PASSWORD_FILE") {
		t.Fatalf("a missing password file: %v", err)
	}
}

// Settings that cannot work together are refused at start, saying what to
// set, without the password.
func TestSecuritySettingsThatCannotWork(t *testing.T) {
	for i, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_MECHANISM"},
		{map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SECURITY_PROTOCOL is PLAINTEXT"},
		{map[string]string{"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"}, "want one of PLAIN, SCRAM-SHA-256"},
		{map[string]string{"KAFKA_SECURITY_PROTOCOL": "TLS"}, "want one of PLAINTEXT, SSL"},
		{map[string]string{"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "u"}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"},
		{map[string]string{"KAFKA_SSL_CA_LOCATION": "/ca.crt"}, "set SSL or SASL_SSL"},
		{map[string]string{"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTIFICATE_LOCATION": "/c.crt"}, "go together"},
		{map[string]string{"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "OAUTHBEARER"}, "OAUTHBEARER needs"},
		{map[string]string{"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"}, "over TLS only"},
		{map[string]string{"KAFKA_SSL_ENDPOINT_IDENTIFICATION": "maybe"}, "want true (https) or false (none)"},
		{map[string]string{"SCHEMA_REGISTRY_USERNAME": "u"}, "needs SCHEMA_REGISTRY_PASSWORD"},
		{map[string]string{"SCHEMA_REGISTRY_URL": "https://a:b@reg:8081", "SCHEMA_REGISTRY_USERNAME": "u", "SCHEMA_REGISTRY_PASSWORD": "p"}, "use one of them"},
		{map[string]string{"TEMPORAL_TLS": "yes please"}, "want true or false"},
		{map[string]string{"TEMPORAL_TLS_CLIENT_CERT_PATH": "/c.pem"}, "go together"},
		{map[string]string{"KAFKA_SASL_PASSWORD": "hunter2", "KAFKA_SASL_MECHANISM": "NOPE"}, "--kafka-sasl-mechanism"},
	} {
		_, err := parseEnv(c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("#%d %v: got %v, want it to say %q", i, c.env, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("#%d: the error shows the password", i)
		}
	}
	if _, err := parseEnv(map[string]string{"KAFKA_SSL_ENDPOINT_IDENTIFICATION": "none", "KAFKA_SECURITY_PROTOCOL": "SSL"}); err != nil {
		t.Errorf("endpoint identification off (the chart's value): %v", err)
	}
}
