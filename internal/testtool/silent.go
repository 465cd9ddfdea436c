package testtool

import (
	"net"
	"testing"
)

// SilentListener returns the address of a listener that accepts TCP
// connections and never answers: the worst unreachable Kafka, registry or
// Temporal, where only a deadline ends the wait. It closes when t ends.
func SilentListener(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // held open, never answered
		}
	}()
	return ln.Addr().String()
}
