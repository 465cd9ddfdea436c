package records

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// Errors that tell why a value could not be decoded; the dead-letter topic
// records them as the reason.
var (
	ErrNotFramed       = errors.New("value is not in the Confluent wire format (magic byte 0 and a 4-byte schema id)")
	ErrUnknownSchemaID = errors.New("value names a schema id the registry does not know")
	ErrWrongSchema     = errors.New("value's schema does not resolve to the expected record")
	ErrMalformed       = errors.New("value does not decode with its schema (truncated or corrupt)")
)

// Subject is the registry subject of a topic's values (TopicNameStrategy).
func Subject(topic string) string { return topic + "-value" }

// Serde encodes and decodes records in the Confluent wire format: a zero
// magic byte, the 4-byte big-endian schema id, then the Avro body. Schema ids
// are looked up (or registered) once per subject and cached; writer schemas
// are fetched by id once and cached, with their resolution to our reader
// schema.
type Serde struct {
	schemas *Schemas
	client  *sr.Client

	mu       sync.RWMutex
	ids      map[string]int            // subject -> id of our schema
	readers  map[readerKey]avro.Schema // (writer id, kind) -> schema to decode with
	writerBy map[int]avro.Schema
}

type readerKey struct {
	id   int
	kind Kind
}

// NewSerde builds a serde over a schema registry client.
func NewSerde(schemas *Schemas, client *sr.Client) *Serde {
	return &Serde{
		schemas:  schemas,
		client:   client,
		ids:      make(map[string]int),
		readers:  make(map[readerKey]avro.Schema),
		writerBy: make(map[int]avro.Schema),
	}
}

// Registry returns the schema registry client the serde uses.
func (s *Serde) Registry() *sr.Client { return s.client }

// Schemas returns the parsed schemas the serde uses.
func (s *Serde) Schemas() *Schemas { return s.schemas }

// SchemaID returns the registry id of kind's schema under topic's subject,
// registering it when the registry does not have it yet.
func (s *Serde) SchemaID(ctx context.Context, topic string, k Kind) (int, error) {
	subject := Subject(topic)
	s.mu.RLock()
	id, ok := s.ids[subject]
	s.mu.RUnlock()
	if ok {
		return id, nil
	}
	schema := sr.Schema{Schema: s.schemas.Text(k), Type: sr.TypeAvro}
	ss, err := s.client.LookupSchema(ctx, subject, schema)
	if err != nil {
		var re *sr.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
			return 0, fmt.Errorf("look up schema %s under subject %s: %w", k, subject, err)
		}
		if ss, err = s.client.CreateSchema(ctx, subject, schema); err != nil {
			return 0, fmt.Errorf("register schema %s under subject %s: %w", k, subject, err)
		}
	}
	s.mu.Lock()
	s.ids[subject] = ss.ID
	s.writerBy[ss.ID] = s.schemas.Schema(k)
	s.mu.Unlock()
	return ss.ID, nil
}

// Encode appends the framed encoding of v (a record type of this package) to
// dst, for a record on topic.
func (s *Serde) Encode(ctx context.Context, dst []byte, topic string, v any) ([]byte, error) {
	k, err := KindOf(v)
	if err != nil {
		return nil, err
	}
	id, err := s.SchemaID(ctx, topic, k)
	if err != nil {
		return nil, err
	}
	return s.AppendEncode(dst, id, k, v)
}

// AppendEncode frames v with a known schema id; no registry round trip.
func (s *Serde) AppendEncode(dst []byte, id int, k Kind, v any) ([]byte, error) {
	dst = append(dst, 0, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	body, err := s.schemas.API().Marshal(s.schemas.Schema(k), v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", k, err)
	}
	return append(dst, body...), nil
}

// SplitHeader returns the schema id and Avro body of a framed value.
func SplitHeader(b []byte) (id int, body []byte, err error) {
	if len(b) < 5 || b[0] != 0 {
		return 0, nil, ErrNotFramed
	}
	return int(uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4])), b[5:], nil
}

// Decode decodes a framed value into v (a pointer to a record type of this
// package), resolving the writer's schema to ours when they differ.
func (s *Serde) Decode(ctx context.Context, b []byte, v any) error {
	k, err := KindOf(v)
	if err != nil {
		return err
	}
	id, body, err := SplitHeader(b)
	if err != nil {
		return err
	}
	reader, err := s.readerFor(ctx, id, k)
	if err != nil {
		return err
	}
	if err := strictUnmarshal(s.schemas.API(), reader, body, v); err != nil {
		return fmt.Errorf("%w: schema id %d: %v", ErrMalformed, id, err)
	}
	return nil
}

// strictUnmarshal decodes body and insists that it was consumed exactly.
// hamba/avro's Unmarshal treats an EOF as success, so a value cut off at a
// field boundary would decode "fine" with zero values; a dead-letter topic
// must see it as truncated instead.
func strictUnmarshal(api avro.API, schema avro.Schema, body []byte, v any) error {
	r := avro.NewReader(nil, 0, avro.WithReaderConfig(api)).Reset(body)
	r.ReadVal(schema, v)
	if r.Error != nil {
		return r.Error
	}
	r.Peek()
	if !errors.Is(r.Error, io.EOF) {
		return errors.New("trailing bytes after the record")
	}
	return nil
}

// WriterSchema returns the schema registered under id, fetched once.
func (s *Serde) WriterSchema(ctx context.Context, id int) (avro.Schema, error) {
	s.mu.RLock()
	w, ok := s.writerBy[id]
	s.mu.RUnlock()
	if ok {
		return w, nil
	}
	// GET /schemas/ids/{id}, not .../schema: srfake answers the latter with
	// the schema as a JSON string rather than the raw schema Confluent sends.
	fetched, err := s.client.SchemaByID(ctx, id)
	text := fetched.Schema
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%w: %d", ErrUnknownSchemaID, id)
		}
		return nil, fmt.Errorf("fetch schema id %d: %w", id, err)
	}
	w, err = avro.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%w: schema id %d does not parse: %v", ErrWrongSchema, id, err)
	}
	s.mu.Lock()
	s.writerBy[id] = w
	s.mu.Unlock()
	return w, nil
}

func (s *Serde) readerFor(ctx context.Context, id int, k Kind) (avro.Schema, error) {
	key := readerKey{id, k}
	s.mu.RLock()
	r, ok := s.readers[key]
	s.mu.RUnlock()
	if ok {
		return r, nil
	}
	writer, err := s.WriterSchema(ctx, id)
	if err != nil {
		return nil, err
	}
	ours := s.schemas.Schema(k)
	r = writer
	if writer.Fingerprint() != ours.Fingerprint() {
		if r, err = avro.NewSchemaCompatibility().Resolve(ours, writer); err != nil {
			return nil, fmt.Errorf("%w: schema id %d as %s: %v", ErrWrongSchema, id, k, err)
		}
	}
	s.mu.Lock()
	s.readers[key] = r
	s.mu.Unlock()
	return r, nil
}
