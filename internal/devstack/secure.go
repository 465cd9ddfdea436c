package devstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/acls"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/randid"
	"github.com/shopstream/shopstream/internal/tlsgen"
)

// The secured dev stack's principals: an admin for bootstrap and the
// operator's commands, one user per component (acls.DefaultUser), and the
// registry's user.
const (
	secureAdmin        = "admin"
	secureRegistryUser = "shopstream"
)

// secureSetup is what `shopstream dev --secure` runs with: the CA and
// server certificate under <data-dir>/tls, and passwords under
// <data-dir>/secure (each 0600), made once and kept, since kfake keeps
// the SCRAM credentials it was first given in its data directory.
type secureSetup struct {
	tls       *tlsgen.Dev
	dir       string
	passwords map[string]string // user -> password, "registry" for the registry's
}

func prepareSecure(dataDir string) (*secureSetup, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	d, err := tlsgen.LoadOrCreateDev(filepath.Join(abs, "tls"))
	if err != nil {
		return nil, fmt.Errorf("make the dev stack's TLS certificates: %w", err)
	}
	s := &secureSetup{tls: d, dir: filepath.Join(abs, "secure")}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.dir, err)
	}
	path := filepath.Join(s.dir, "passwords.json")
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.passwords = map[string]string{}
	case err != nil:
		return nil, fmt.Errorf("read the dev stack's passwords: %w", err)
	default:
		if err := json.Unmarshal(raw, &s.passwords); err != nil {
			return nil, fmt.Errorf("read %s: %w (delete %s and its kafka directory to start over)", path, err, dataDir)
		}
	}
	users := []string{secureAdmin, "registry"}
	for _, c := range acls.Components {
		users = append(users, acls.DefaultUser(c))
	}
	for _, u := range users {
		if s.passwords[u] == "" {
			s.passwords[u] = randid.Hex(18)
		}
	}
	raw, err = json.MarshalIndent(s.passwords, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return nil, fmt.Errorf("save the dev stack's passwords: %w", err)
	}
	for _, u := range users {
		if err := os.WriteFile(s.passwordFile(u), []byte(s.passwords[u]+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write the password file of %s: %w", u, err)
		}
	}
	return s, nil
}

func (s *secureSetup) passwordFile(user string) string {
	return filepath.Join(s.dir, user+".password")
}

// stackOptions are the secured listeners for package environment.
func (s *secureSetup) stackOptions() (*environment.Secure, error) {
	srv, err := s.tls.CA.ServerConfig(s.tls.Server, false)
	if err != nil {
		return nil, err
	}
	users := map[string]string{}
	for _, c := range acls.Components {
		users[acls.DefaultUser(c)] = s.passwords[acls.DefaultUser(c)]
	}
	return &environment.Secure{
		TLS: srv, Admin: secureAdmin, AdminPassword: s.passwords[secureAdmin], Users: users,
		AdminClient:  s.kafka(secureAdmin),
		RegistryUser: secureRegistryUser, RegistryPassword: s.passwords["registry"],
	}, nil
}

// kafka is the client security of user.
func (s *secureSetup) kafka(user string) config.KafkaSecurity {
	return config.KafkaSecurity{
		Protocol: config.ProtocolSASLSSL, Mechanism: config.MechanismScram512,
		Username: user, Password: s.passwords[user], PasswordFile: s.passwordFile(user),
		CALocation: s.tls.CAPath, EndpointIdentification: true,
	}
}

// registry is the registry client's auth.
func (s *secureSetup) registry() config.RegistryAuth {
	return config.RegistryAuth{Username: secureRegistryUser, Password: s.passwords["registry"],
		PasswordFile: s.passwordFile("registry"), CALocation: s.tls.CAPath}
}

// writeEnv writes <data-dir>/secure.env, the settings every command needs
// to reach the secured stack as the admin, and <data-dir>/secure/<component>.env
// with each component's own principal, to run one alone. Passwords stay in
// their files: the env files name the files.
func (s *secureSetup) writeEnv(dataDir string, cfg *config.Config) (string, error) {
	admin := s.kafka(secureAdmin)
	reg := s.registry()
	lines := []string{
		"# Written by `shopstream dev --secure`. Source it and every shopstream command",
		"# reaches the secured dev stack as its admin:  . " + filepath.Join(dataDir, "secure.env"),
		"export KAFKA_BROKERS=" + strings.Join(cfg.KafkaBrokers, ","),
		"export KAFKA_SECURITY_PROTOCOL=" + admin.Protocol,
		"export KAFKA_SASL_MECHANISM=" + admin.Mechanism,
		"export KAFKA_SASL_USERNAME=" + admin.Username,
		"export KAFKA_SASL_PASSWORD_FILE=" + admin.PasswordFile,
		"export KAFKA_SSL_CA_LOCATION=" + admin.CALocation,
		"export SCHEMA_REGISTRY_URL=" + cfg.SchemaRegistryURL,
		"export SCHEMA_REGISTRY_USERNAME=" + reg.Username,
		"export SCHEMA_REGISTRY_PASSWORD_FILE=" + reg.PasswordFile,
		"export SCHEMA_REGISTRY_SSL_CA_LOCATION=" + reg.CALocation,
		"export TEMPORAL_ADDRESS=" + cfg.TemporalAddress,
	}
	path := filepath.Join(dataDir, "secure.env")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	for _, c := range acls.Components {
		u := acls.DefaultUser(c)
		body := fmt.Sprintf("# The %s's own principal: source secure.env, then this file.\nexport KAFKA_SASL_USERNAME=%s\nexport KAFKA_SASL_PASSWORD_FILE=%s\n", c, u, s.passwordFile(u))
		if err := os.WriteFile(filepath.Join(s.dir, c+".env"), []byte(body), 0o600); err != nil {
			return "", err
		}
	}
	return path, nil
}

// printUsage says how to use the secured stack.
func printSecureUsage(out io.Writer, envFile string) {
	fmt.Fprintf(out, "shopstream dev: secured: Kafka speaks SASL_SSL (SCRAM-SHA-512, ACLs on; each component runs as its own user), the registry HTTPS with basic auth.\n")
	fmt.Fprintf(out, "  In another terminal:  . %s && shopstream status\n", envFile)
	fmt.Fprintf(out, "  (secure.env connects as the admin; %s/<component>.env switches to a component's user)\n", filepath.Join(filepath.Dir(envFile), "secure"))
}
