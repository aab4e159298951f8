package harness

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conclave-lb/conclave/internal/testwait"
)

// HangAt listens on addr (a fake node's, just closed) and accepts
// connections that are never answered: what a SIGSTOPped BBB looks like to
// a client (the kernel completes the handshake, nothing reads or writes).
// It returns the number of connections accepted; all close with the test.
func HangAt(t testing.TB, addr string) *atomic.Int32 {
	t.Helper()
	var ln net.Listener
	if err := testwait.Until(time.Second, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("hang %s: %v", addr, err)
	}
	var accepted atomic.Int32
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			conn.Close()
		}
	})
	return &accepted
}
