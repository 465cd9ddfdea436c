// Package workflows holds shopstream's deterministic orchestration: the
// Bootstrap, EmulateShop and StreamFilter workflows and the input and result
// types of the activities they call. It must not import franz-go, pgx or any
// I/O package (a test checks): activities are called by name, and the
// activities package implements those names.
package workflows
