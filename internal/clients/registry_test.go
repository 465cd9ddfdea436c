package clients_test

import (
	"context"
	"encoding/base64"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/shopstream/shopstream/internal/clients"
	"github.com/shopstream/shopstream/internal/config"
	"github.com/shopstream/shopstream/internal/tlsgen"
)

// tlsRegistry serves srfake over TLS with a certificate from a fresh CA,
// expecting auth in the Authorization header; it returns the URL and the
// CA's file.
func tlsRegistry(t *testing.T, auth string, clientCert bool) (url, caFile string, ca *tlsgen.CA) {
	t.Helper()
	ca, err := tlsgen.NewCA("registry CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(srfake.NewRegistry(srfake.WithAuth(auth)).Handler())
	if srv.TLS, err = ca.ServerConfig(pair, clientCert); err != nil {
		t.Fatal(err)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL, caFile, ca
}

func registerOne(o clients.RegistryOptions) error {
	cl, err := clients.NewRegistry(o)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cl.CreateSchema(ctx, "s-value", sr.Schema{Schema: `{"type":"string"}`})
	return err
}

// Basic auth, a bearer token and a client certificate, each over TLS with
// the registry's CA; wrong credentials are refused.
func TestRegistryAuthAndTLS(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("shopstream:reg-pass"))
	url, caFile, _ := tlsRegistry(t, basic, false)
	if err := registerOne(clients.RegistryOptions{URL: url, Auth: config.RegistryAuth{Username: "shopstream", Password: "reg-pass", CALocation: caFile}}); err != nil {
		t.Fatalf("basic auth over TLS: %v", err)
	}
	err := registerOne(clients.RegistryOptions{URL: url, Auth: config.RegistryAuth{Username: "shopstream", Password: "wrong", CALocation: caFile}})
	if err == nil || !strings.Contains(err.Error(), "not authorized") {
		t.Errorf("a wrong password: %v", err)
	}
	if err := registerOne(clients.RegistryOptions{URL: url, Auth: config.RegistryAuth{Username: "shopstream", Password: "reg-pass"}}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the registry's CA: %v", err)
	}

	burl, bca, _ := tlsRegistry(t, "Bearer tok-123", false)
	if err := registerOne(clients.RegistryOptions{URL: burl, Auth: config.RegistryAuth{BearerToken: "tok-123", CALocation: bca}}); err != nil {
		t.Fatalf("bearer token: %v", err)
	}

	murl, mca, ca := tlsRegistry(t, basic, true)
	client, err := ca.Client("shopstream", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := client.Write(t.TempDir(), "client")
	if err != nil {
		t.Fatal(err)
	}
	auth := config.RegistryAuth{Username: "shopstream", Password: "reg-pass", CALocation: mca, CertificateLocation: cert, KeyLocation: key}
	if err := registerOne(clients.RegistryOptions{URL: murl, Auth: auth}); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	auth.CertificateLocation, auth.KeyLocation = "", ""
	if err := registerOne(clients.RegistryOptions{URL: murl, Auth: auth}); err == nil {
		t.Error("a registry that requires a client certificate took a client without one")
	}
}
