package bootstrap

import (
	"testing"

	"github.com/shopstream/shopstream/activities"
	"github.com/shopstream/shopstream/environment"
	"github.com/shopstream/shopstream/internal/config"
)

// The bootstrap input carries a value for every placeholder of the shipped
// connector configs, and the configured topic names reach them.
func TestConnectorVarsCoverTheShippedConfigs(t *testing.T) {
	cfg := config.Default()
	cfg.Topics.Products = "my_products"
	fsys, err := environment.ConnectorConfigs()
	if err != nil {
		t.Fatal(err)
	}
	configs, err := activities.LoadConnectorConfigs(fsys)
	if err != nil {
		t.Fatal(err)
	}
	in := Input(cfg, Topics{Partitions: 1, ReplicationFactor: 1}, nil)
	found := false
	for _, c := range configs {
		resolved, err := c.Resolve(in.Connectors.Vars)
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		found = found || resolved["topics"] == "my_products"
	}
	if !found {
		t.Errorf("no connector reads the configured product topic")
	}
}
