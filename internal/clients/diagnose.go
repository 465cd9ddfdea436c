package clients

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/shopstream/shopstream/internal/config"
)

// diagnosis watches the connections of Connect's first request and turns
// what it sees into one line a person can act on. Most of what goes wrong
// shows as a connection the broker closes (a wrong password on kfake, a
// plaintext request to a TLS listener, a request without SASL to a SASL
// listener); which request the close answered says why. A finding that no
// retry can mend ends the wait at once instead of at the dial timeout.
type diagnosis struct {
	sec    config.KafkaSecurity
	cancel context.CancelFunc

	mu      sync.Mutex
	broker  string
	finding string
	seen    map[string]int
}

var (
	_ kgo.HookBrokerConnect = (*diagnosis)(nil)
	_ kgo.HookBrokerRead    = (*diagnosis)(nil)
)

func newDiagnosis(sec config.KafkaSecurity, cancel context.CancelFunc) *diagnosis {
	return &diagnosis{sec: sec, cancel: cancel, seen: map[string]int{}}
}

// note records a finding about broker; once it has been seen `after` times
// it is taken as final and the ping stops.
func (d *diagnosis) note(broker, finding string, after int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.broker, d.finding = broker, finding
	d.seen[finding]++
	if d.seen[finding] >= after {
		d.cancel()
	}
}

func brokerAddr(m kgo.BrokerMetadata) string {
	return net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
}

func (d *diagnosis) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		return
	}
	broker := brokerAddr(meta)
	d.mu.Lock()
	// The hook also hears how the requests that set up a connection (API
	// versions, SASL) failed, after the read hook explained them.
	explained := d.finding != ""
	d.mu.Unlock()
	if explained {
		return
	}
	var (
		hostErr    x509.HostnameError
		authErr    x509.UnknownAuthorityError
		invalidErr x509.CertificateInvalidError
		recErr     tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &hostErr):
		d.note(broker, fmt.Sprintf("its TLS certificate does not name %s (%v): dial the brokers by a name their certificates hold, or set KAFKA_SSL_ENDPOINT_IDENTIFICATION=false (the chain is still checked, and the log says so)", meta.Host, hostErr), 1)
	case errors.As(err, &authErr):
		d.note(broker, "its TLS certificate is signed by an authority this client does not trust: set KAFKA_SSL_CA_LOCATION to the PEM file of the CA that signed the brokers' certificates", 1)
	case errors.As(err, &invalidErr):
		d.note(broker, fmt.Sprintf("its TLS certificate is not valid (%v): renew it, or check this host's clock", invalidErr), 1)
	case errors.As(err, &recErr) || (d.sec.TLS() && isClosed(err)):
		d.note(broker, "it does not answer TLS on this port, so it is probably a plaintext listener: set KAFKA_SECURITY_PROTOCOL=PLAINTEXT or SASL_PLAINTEXT, or use the brokers' TLS port", 1)
	case d.sec.TLS() && strings.Contains(err.Error(), "tls:"):
		d.note(broker, d.tlsRefused(err), 1)
	case d.sec.TLS() && isTimeout(err) && acceptsTCP(broker):
		// A plaintext listener takes the TLS hello for the length of a
		// request and waits for the rest of it.
		d.note(broker, "it accepted the connection but never answered the TLS handshake, so it is probably a plaintext listener: set KAFKA_SECURITY_PROTOCOL=PLAINTEXT or SASL_PLAINTEXT, or use the brokers' TLS port", 1)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// acceptsTCP says whether something accepts TCP connections at addr.
func acceptsTCP(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (d *diagnosis) OnBrokerRead(meta kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return
	}
	broker := brokerAddr(meta)
	switch {
	case d.sec.TLS() && strings.Contains(err.Error(), "remote error: tls:"):
		// TLS 1.3 sends the server's verdict on the client certificate
		// after the handshake, so it arrives with the first response.
		d.note(broker, d.tlsRefused(err), 1)
	case key == int16(kmsg.ApiVersions) && !d.sec.TLS() && isClosed(err):
		d.note(broker, "it closed the connection at the first request, as a TLS listener does with plaintext: set KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (and KAFKA_SSL_CA_LOCATION), or use the brokers' plaintext port", 2)
	case key == int16(kmsg.SASLAuthenticate) && isClosed(err):
		d.note(broker, "authentication failed: the broker closed the connection when it checked the credentials: "+d.checkCredentials(), 1)
	case key == int16(kmsg.SASLHandshake) && isClosed(err):
		d.note(broker, "it closed the connection at the SASL handshake: check that this listener uses SASL (KAFKA_SECURITY_PROTOCOL)", 2)
	case !d.sec.SASL() && isClosed(err):
		d.note(broker, "it closed the connection after the first request, as a listener that requires SASL does: set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT), KAFKA_SASL_MECHANISM and the credentials", 2)
	}
}

// tlsRefused explains a TLS alert from the broker.
func (d *diagnosis) tlsRefused(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "tls:"); i >= 0 {
		msg = msg[i:]
	}
	if d.sec.CertificateLocation == "" {
		return fmt.Sprintf("it refused the TLS connection (%s): it probably requires a client certificate: set KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION", msg)
	}
	return fmt.Sprintf("it refused the client certificate %s (%s): use one signed by a CA the brokers trust, and not expired", d.sec.CertificateLocation, msg)
}

// checkCredentials says what to check for the configured mechanism.
func (d *diagnosis) checkCredentials() string {
	switch d.sec.Mechanism {
	case config.MechanismOAuthBearer:
		return "check that the token is valid for this cluster and not expired (KAFKA_SASL_OAUTHBEARER_*)"
	case config.MechanismAWSMSKIAM:
		return "check the IAM policy of the AWS credentials (kafka-cluster:Connect) and the region"
	}
	return fmt.Sprintf("check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE), and that the user exists for %s on the cluster", d.sec.Mechanism)
}

// isClosed says whether err is the peer closing or resetting the
// connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// explain turns the ping's error and what the hooks saw into the error
// Connect returns: the broker, who connected, what went wrong and what to
// check, never a password.
func (d *diagnosis) explain(o KafkaOptions, err error) error {
	d.mu.Lock()
	broker, finding := d.broker, d.finding
	d.mu.Unlock()
	brokers := strings.Join(o.Brokers, ",")
	if broker == "" {
		broker = brokers
	}
	who := o.Security.Who()
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		finding = fmt.Sprintf("authentication failed (%v): %s", err, d.checkCredentials())
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		finding = fmt.Sprintf("the broker does not enable the SASL mechanism %s: set KAFKA_SASL_MECHANISM to one its listener enables", o.Security.Mechanism)
	case errors.Is(err, kerr.IllegalSaslState):
		finding = "the broker does not expect SASL on this listener: set KAFKA_SECURITY_PROTOCOL=SSL or PLAINTEXT, or use its SASL port"
	case errors.Is(err, ErrTokenExpired) || strings.Contains(err.Error(), "OAUTHBEARER") || strings.Contains(err.Error(), "AWS_MSK_IAM"):
		finding = err.Error()
	}
	if finding == "" {
		return fmt.Errorf("cannot reach Kafka at %s within %s (%v), connecting as %s: start the embedded stack with `shopstream dev`, or set KAFKA_BROKERS / --kafka-brokers",
			brokers, o.DialTimeout, err, who)
	}
	return fmt.Errorf("cannot connect to Kafka at %s as %s: %s", broker, who, finding)
}
