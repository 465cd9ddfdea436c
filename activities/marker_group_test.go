package activities

import "testing"

func TestIsBatchMarkerGroup(t *testing.T) {
	if g := BatchMarkerGroup("shopstream-emulate-20260101-000000-ab12", 7); !IsBatchMarkerGroup(g) {
		t.Errorf("%s is a batch marker group", g)
	}
	for _, g := range []string{"shopstream-streamer", "shopstream-sink", "connect-shopstream-products", "shopstream-emulate"} {
		if IsBatchMarkerGroup(g) {
			t.Errorf("%s is not a batch marker group", g)
		}
	}
}
