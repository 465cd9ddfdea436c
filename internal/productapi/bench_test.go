package productapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkPostProduct measures one accepted POST end to end over loopback:
// HTTP, validation, Avro encoding and a synchronous produce to kfake.
func BenchmarkPostProduct(b *testing.B) {
	f := newFixture(b)
	client := &http.Client{}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			body := fmt.Sprintf(`{"mallId":"m1","productId":"p%d","title":"Mug","price":"9.50","imageUrl":"http://img.example/%d.png"}`, i, i%50)
			resp, err := client.Post(f.srv.URL+"/api/v1/products", "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Fatal(resp.Status)
			}
		}
	})
}
