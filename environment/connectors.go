package environment

import (
	"embed"
	"fmt"
	"io/fs"
)

//go:embed connect/*.json
var connectFiles embed.FS

// ConnectorConfigs holds the Kafka Connect sink connector configs of
// connect/ (Debezium's JDBC sink: upsert by record key, delete on
// tombstone), one {"name", "config"} JSON file per table. The bootstrap
// workflow's connectors step applies them; ${NAME} placeholders take the
// configured topic names and ${env:NAME} is left to Connect's
// EnvVarConfigProvider, so no credential passes through shopstream.
func ConnectorConfigs() (fs.FS, error) {
	sub, err := fs.Sub(connectFiles, "connect")
	if err != nil {
		return nil, fmt.Errorf("read the embedded connector configs: %w", err)
	}
	return sub, nil
}
