// Package environment runs the embedded dev stack without Docker: franz-go's
// kfake as Kafka, franz-go's srfake as the schema registry, and the Temporal
// CLI's dev server (with its Web UI) as a child process. `shopstream dev`
// runs it on fixed ports with state under ./.data; tests run it on free ports
// with no state. The full external stack (compose, connector configs,
// Prometheus) lives beside this file.
package environment
