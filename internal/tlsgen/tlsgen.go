// Package tlsgen makes a private certificate authority and the
// certificates it signs: the TLS of `shopstream dev --secure` (kept under
// .data/tls/ and reused while valid) and of the tests that prove TLS, mTLS
// and PostgreSQL's verify-full against real listeners.
package tlsgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CertPEM is the CA certificate as clients are given it.
	CertPEM []byte
}

// Pair is a certificate with its key, both PEM.
type Pair struct {
	CertPEM, KeyPEM []byte
}

// NewCA makes a CA valid for validFor.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"shopstream"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Server issues a server certificate for hosts (names or IP addresses).
func (ca *CA) Server(hosts []string, validFor time.Duration) (Pair, error) {
	return ca.issue(hosts[0], hosts, x509.ExtKeyUsageServerAuth, validFor)
}

// Client issues a client certificate whose common name is the principal.
func (ca *CA) Client(commonName string, validFor time.Duration) (Pair, error) {
	return ca.issue(commonName, nil, x509.ExtKeyUsageClientAuth, validFor)
}

func (ca *CA) issue(cn string, hosts []string, usage x509.ExtKeyUsage, validFor time.Duration) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("generate a key for %s: %w", cn, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"shopstream"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if validFor < 0 { // an expired certificate, for tests
		tmpl.NotBefore = time.Now().Add(2 * validFor)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return Pair{}, fmt.Errorf("sign the certificate of %s: %w", cn, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}, nil
}

// Pool is a certificate pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ServerConfig is a listener's TLS configuration with pair; with
// requireClientCert, clients must present a certificate the CA signed.
func (ca *CA) ServerConfig(pair Pair, requireClientCert bool) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = ca.Pool()
	}
	return cfg, nil
}

// Write writes the pair as dir/name.crt and dir/name.key (the key 0600) and
// returns their paths.
func (p Pair) Write(dir, name string) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certPath, p.CertPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyPath, p.KeyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// Dev is the embedded stack's TLS under a directory: the CA (ca.crt,
// ca.key) and the server certificate of 127.0.0.1 and localhost
// (server.crt, server.key).
type Dev struct {
	CA                            *CA
	Server                        Pair
	CAPath, ServerCert, ServerKey string
}

// LoadOrCreateDev reads the dev stack's CA and server certificate from
// dir, or makes them when they are missing or expire within a week, so
// clients keep trusting the same CA across restarts.
func LoadOrCreateDev(dir string) (*Dev, error) {
	d := &Dev{CAPath: filepath.Join(dir, "ca.crt"), ServerCert: filepath.Join(dir, "server.crt"), ServerKey: filepath.Join(dir, "server.key")}
	if ca, server, err := loadDev(dir); err == nil {
		d.CA, d.Server = ca, server
		return d, nil
	}
	ca, err := NewCA("shopstream dev CA", 5*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	server, err := ca.Server([]string{"127.0.0.1", "localhost", "::1"}, 2*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	kder, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return nil, err
	}
	caPair := Pair{CertPEM: ca.CertPEM, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})}
	if _, _, err := caPair.Write(dir, "ca"); err != nil {
		return nil, fmt.Errorf("write the dev CA to %s: %w", dir, err)
	}
	if _, _, err := server.Write(dir, "server"); err != nil {
		return nil, fmt.Errorf("write the dev server certificate to %s: %w", dir, err)
	}
	d.CA, d.Server = ca, server
	return d, nil
}

func loadDev(dir string) (*CA, Pair, error) {
	read := func(name string) []byte {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return b
	}
	caPEM, caKeyPEM := read("ca.crt"), read("ca.key")
	server := Pair{CertPEM: read("server.crt"), KeyPEM: read("server.key")}
	caPair, err := tls.X509KeyPair(caPEM, caKeyPEM)
	if err != nil {
		return nil, Pair{}, err
	}
	key, ok := caPair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, Pair{}, errors.New("the dev CA key is not ECDSA")
	}
	caCert, err := x509.ParseCertificate(caPair.Certificate[0])
	if err != nil {
		return nil, Pair{}, err
	}
	srv, err := tls.X509KeyPair(server.CertPEM, server.KeyPEM)
	if err != nil {
		return nil, Pair{}, err
	}
	leaf, err := x509.ParseCertificate(srv.Certificate[0])
	if err != nil {
		return nil, Pair{}, err
	}
	soon := time.Now().Add(7 * 24 * time.Hour)
	if caCert.NotAfter.Before(soon) || leaf.NotAfter.Before(soon) {
		return nil, Pair{}, errors.New("the dev certificates expire within a week")
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
		return nil, Pair{}, err
	}
	return &CA{Cert: caCert, key: key, CertPEM: caPEM}, server, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}
