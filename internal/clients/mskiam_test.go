package clients_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/shopstream/shopstream/internal/clients"
)

// isolateAWS points the AWS SDK's default chain at the environment alone:
// no shared files, no instance metadata.
func isolateAWS(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
	}
}

// MSK's IAM listener cannot run here, so this checks what the client sends
// it: the AWS_MSK_IAM mechanism takes the credentials from the AWS SDK's
// default chain (here the environment, as a pod with IRSA gets them too)
// and its first message is the signed kafka-cluster:Connect request, whose
// SigV4 signature the AWS SDK's own signer computes the same.
func TestMSKIAMSignsTheConnectRequestWithTheDefaultCredentials(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_SESSION_TOKEN", "session-token-from-sts")
	const host = "b-1.shop.abc123.c2.kafka.eu-west-1.amazonaws.com"

	m := clients.MSKIAM()
	if m.Name() != "AWS_MSK_IAM" {
		t.Fatalf("mechanism %q", m.Name())
	}
	_, first, err := m.Authenticate(context.Background(), host+":9098")
	if err != nil {
		t.Fatal(err)
	}
	var msg map[string]string
	if err := json.Unmarshal(first, &msg); err != nil {
		t.Fatalf("the first message is not JSON: %v\n%s", err, first)
	}
	signedAt, err := time.Parse("20060102T150405Z", msg["x-amz-date"])
	if err != nil {
		t.Fatalf("x-amz-date %q: %v", msg["x-amz-date"], err)
	}
	date := signedAt.Format("20060102")
	for k, want := range map[string]string{
		"version":              "2020_10_22",
		"host":                 host,
		"action":               "kafka-cluster:Connect",
		"x-amz-algorithm":      "AWS4-HMAC-SHA256",
		"x-amz-credential":     "AKIDEXAMPLE/" + date + "/eu-west-1/kafka-cluster/aws4_request",
		"x-amz-security-token": "session-token-from-sts",
		"x-amz-signedheaders":  "host",
		"x-amz-expires":        "300",
		"user-agent":           "shopstream",
	} {
		if msg[k] != want {
			t.Errorf("%s = %q, want %q", k, msg[k], want)
		}
	}
	if strings.Contains(string(first), "wJalrXUtnFEMI") {
		t.Error("the message carries the secret key")
	}

	// The same request presigned by the AWS SDK.
	q := url.Values{"Action": {"kafka-cluster:Connect"}, "X-Amz-Expires": {"300"}}
	req, err := http.NewRequest(http.MethodGet, "https://"+host+"/?"+strings.ReplaceAll(q.Encode(), "+", "%20"), nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := awssdk.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: "session-token-from-sts"}
	const emptyBody = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, emptyBody, "kafka-cluster", "eu-west-1", signedAt)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	if want := u.Query().Get("X-Amz-Signature"); msg["x-amz-signature"] != want || want == "" {
		t.Errorf("signature %q, the AWS SDK's signer computes %q", msg["x-amz-signature"], want)
	}
}

// Without credentials anywhere in the chain, authentication fails saying
// where they were looked for.
func TestMSKIAMWithoutCredentialsSaysWhere(t *testing.T) {
	isolateAWS(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := clients.MSKIAM().Authenticate(ctx, "b-1.shop.abc123.c2.kafka.eu-west-1.amazonaws.com:9098")
	if err == nil || !strings.Contains(err.Error(), "AWS_MSK_IAM: get credentials from the AWS SDK's default chain") {
		t.Fatalf("got %v", err)
	}
}
