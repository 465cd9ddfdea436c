package deadletter

import (
	"errors"

	"github.com/shopstream/shopstream/internal/records"
)

// The reasons a record is dead-lettered, as the reason header and the
// dead_letters_total metrics spell them. Every component uses these, so one
// bad record is called the same wherever it is found.
const (
	// Decoding: ReasonOf tells these from the serde's errors.
	ReasonNotFramed       = "not-framed"
	ReasonUnknownSchemaID = "unknown-schema-id"
	ReasonWrongSchema     = "wrong-schema"
	ReasonMalformed       = "malformed"

	ReasonNoKey       = "no-key"
	ReasonKeyMismatch = "key-mismatch"
	// Prompts the recommender cannot join.
	ReasonEmptyUser    = "empty-user"
	ReasonEmptyQuery   = "empty-query"
	ReasonQueryTooLong = "query-too-long"
	ReasonUserTooLong  = "user-too-long"
	// ReasonInvalid: the record decodes, but a value cannot be stored (a
	// NUL character, a price that is no number, a key that does not match
	// the value's ids, …).
	ReasonInvalid = "invalid"
	// ReasonRefused: PostgreSQL refused the row (a constraint).
	ReasonRefused = "refused"
	// ReasonImagesFailed: some of the product's images could not be
	// collected.
	ReasonImagesFailed = "images-failed"
)

// Meaning is one reason and what it says, for help texts.
type Meaning struct {
	Reason string
	Means  string
}

// Vocabulary lists every reason with its meaning, in the order a reader
// meets them: decoding first.
func Vocabulary() []Meaning {
	return []Meaning{
		{ReasonNotFramed, "not Confluent-framed Avro (no magic byte and schema id)"},
		{ReasonUnknownSchemaID, "a schema id the registry does not know"},
		{ReasonWrongSchema, "a schema that does not resolve to the expected record"},
		{ReasonMalformed, "bytes that do not decode with their schema"},
		{ReasonNoKey, "no key, which a compacted topic or a table row needs"},
		{ReasonKeyMismatch, "a key that is not the value's ids"},
		{ReasonEmptyUser, "a search prompt without a user"},
		{ReasonEmptyQuery, "a search prompt with an empty query"},
		{ReasonQueryTooLong, "a search prompt whose query is too long"},
		{ReasonUserTooLong, "a search prompt whose user id is too long"},
		{ReasonInvalid, "a value the sink cannot store"},
		{ReasonRefused, "a row PostgreSQL refused"},
		{ReasonImagesFailed, "a product whose images could not be collected"},
	}
}

// ReasonOf classifies an error of decoding a record: the reason when the
// record itself is at fault, "" when it is not (a schema registry that did
// not answer), so that the caller retries instead of dead-lettering.
func ReasonOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, records.ErrNotFramed):
		return ReasonNotFramed
	case errors.Is(err, records.ErrUnknownSchemaID):
		return ReasonUnknownSchemaID
	case errors.Is(err, records.ErrWrongSchema):
		return ReasonWrongSchema
	case errors.Is(err, records.ErrMalformed):
		return ReasonMalformed
	}
	return ""
}
