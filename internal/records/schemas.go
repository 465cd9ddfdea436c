package records

import (
	"embed"
	"fmt"
	"reflect"

	"github.com/hamba/avro/v2"
)

//go:embed schemas/*.avsc
var schemaFiles embed.FS

// Kind names one record type; its schema lives in schemas/<Kind>.avsc.
type Kind string

// The record kinds, in the order their schemas must be parsed (later ones
// refer to named types defined by earlier ones).
const (
	KindProduct         Kind = "Product"
	KindCompleteProduct Kind = "CompleteProduct"
	KindSearchPrompt    Kind = "SearchPrompt"
	KindRecommendation  Kind = "Recommendation"
	KindFilterState     Kind = "FilterState"
)

// Kinds lists every record kind in dependency order.
var Kinds = []Kind{KindProduct, KindCompleteProduct, KindSearchPrompt, KindRecommendation, KindFilterState}

// Schemas is the parsed set of shopstream's Avro schemas.
type Schemas struct {
	byKind map[Kind]avro.Schema
	api    avro.API
}

// maxBytes caps any single string, bytes, array or map read from a record, so
// a corrupt or hostile length prefix cannot make a decoder allocate gigabytes.
const maxBytes = 8 << 20

// ParseSchemas parses the embedded .avsc files once.
func ParseSchemas() (*Schemas, error) {
	cache := &avro.SchemaCache{}
	s := &Schemas{
		byKind: make(map[Kind]avro.Schema, len(Kinds)),
		api: avro.Config{
			MaxByteSliceSize:  maxBytes,
			MaxSliceAllocSize: maxBytes,
		}.Freeze(),
	}
	for _, k := range Kinds {
		raw, err := schemaFiles.ReadFile("schemas/" + string(k) + ".avsc")
		if err != nil {
			return nil, fmt.Errorf("read schema %s: %w", k, err)
		}
		sch, err := avro.ParseBytesWithCache(raw, "", cache)
		if err != nil {
			return nil, fmt.Errorf("parse schema %s: %w", k, err)
		}
		s.byKind[k] = sch
	}
	return s, nil
}

// Schema returns the parsed schema of a kind.
func (s *Schemas) Schema(k Kind) avro.Schema { return s.byKind[k] }

// Text returns the self-contained schema text to register: named types that
// the file only refers to are written out in full.
func (s *Schemas) Text(k Kind) string { return s.byKind[k].String() }

// API is the avro configuration that every encoder and decoder uses.
func (s *Schemas) API() avro.API { return s.api }

// KindOf returns the record kind of a Go value (or pointer to one).
func KindOf(v any) (Kind, error) {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case reflect.TypeFor[Product]():
		return KindProduct, nil
	case reflect.TypeFor[CompleteProduct]():
		return KindCompleteProduct, nil
	case reflect.TypeFor[SearchPrompt]():
		return KindSearchPrompt, nil
	case reflect.TypeFor[Recommendation]():
		return KindRecommendation, nil
	case reflect.TypeFor[FilterState]():
		return KindFilterState, nil
	}
	return "", fmt.Errorf("no record kind for Go type %v", t)
}
