package chaos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The delay and drop faults act on the wire, between a client and a broker,
// and not in a kfake control function: a control function sees the request
// but not who sent it, and a Fetch (or a Produce outside a transaction)
// names no transactional id or group to tell its sender by. A fault meant
// for the sink then hit whichever client sent the next Fetch (seeds 3 and
// 30 dropped the recommender's fetches in "drop 2 Fetch of sink" and "drop
// 2 Fetch of api"). Each request's header carries its client's id, and every
// component sets its own (process.Env.KafkaFor), so on the wire a fault
// reaches exactly the component its schedule names.

// faultListener hands kfake connections whose requests pass the schedule's
// faults first.
type faultListener struct {
	net.Listener
	f *requestFaults
}

// listen is kfake's ListenFn: a TCP listener whose connections pass
// through f. It reads requests in the clear: the harness's cluster has no
// TLS, which kfake would put on top of this listener.
func (f *requestFaults) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return faultListener{Listener: ln, f: f}, nil
}

func (l faultListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go l.f.pump(c, pw)
	return &faultConn{Conn: c, r: pr}, nil
}

// faultConn is a client's connection as kfake sees it: it reads the
// requests that pump let through, and writes to the client directly.
type faultConn struct {
	net.Conn
	r *io.PipeReader
}

func (c *faultConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (c *faultConn) Close() error {
	c.r.Close()
	return c.Conn.Close()
}

// maxRequest bounds a request's size as a broker's socket.request.max.bytes
// does.
const maxRequest = 100 << 20

// pump copies the requests a client sends on c to w, one whole request at a
// time, applying the faults: a delayed request is held before it goes on,
// and after a dropped one the connection forwards nothing more (it stays
// open, and the client waits for its read timeout), as a connection across
// a network partition would.
func (f *requestFaults) pump(c net.Conn, w *io.PipeWriter) {
	var size [4]byte
	silent := false
	for {
		if _, err := io.ReadFull(c, size[:]); err != nil {
			w.CloseWithError(err)
			return
		}
		n := binary.BigEndian.Uint32(size[:])
		if n > maxRequest {
			w.CloseWithError(fmt.Errorf("request of %d bytes", n))
			return
		}
		frame := make([]byte, 4+n)
		copy(frame, size[:])
		if _, err := io.ReadFull(c, frame[4:]); err != nil {
			w.CloseWithError(err)
			return
		}
		if silent {
			continue
		}
		if r := f.onWire(frame[4:]); r != nil {
			if r.Drop {
				silent = true
				continue
			}
			time.Sleep(r.Delay)
		}
		if _, err := w.Write(frame); err != nil {
			return
		}
	}
}

// onWire returns the rule that applies to one request, if any. Only a
// request some rule is about is parsed.
func (f *requestFaults) onWire(body []byte) *rule {
	if len(body) < 2 || !f.mayMatch(kmsg.Key(binary.BigEndian.Uint16(body))) {
		return nil
	}
	key, client, req, err := parseRequest(body)
	if err != nil {
		return nil
	}
	return f.match(key, client, req)
}

// parseRequest reads a request's header (its key, and the id of the
// client that sent it) and body, as the broker will.
func parseRequest(body []byte) (kmsg.Key, string, kmsg.Request, error) {
	r := kbin.Reader{Src: body}
	key := r.Int16()
	version := r.Int16()
	r.Int32() // the correlation id
	client := r.NullableString()
	if !r.Ok() {
		return 0, "", nil, errors.New("short request header")
	}
	req := kmsg.RequestForKey(key)
	if req == nil {
		return 0, "", nil, fmt.Errorf("unknown request key %d", key)
	}
	req.SetVersion(version)
	if req.IsFlexible() {
		kmsg.SkipTags(&r)
	}
	if err := req.ReadFrom(r.Src); err != nil {
		return 0, "", nil, fmt.Errorf("parse %s v%d: %w", kmsg.Key(key).Name(), version, err)
	}
	id := ""
	if client != nil {
		id = *client
	}
	return kmsg.Key(key), id, req, nil
}
