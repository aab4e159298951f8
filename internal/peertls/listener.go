package peertls

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Timeouts of a new connection, before it is handed to its server.
const (
	// HandshakeTimeout bounds a TLS handshake: a connection that stays
	// silent cannot hold its goroutine longer.
	HandshakeTimeout = 10 * time.Second
	// FirstByteTimeout bounds the wait for a connection's first byte on the
	// HTTP port (where it tells TLS from plain HTTP): as long as the
	// gateway's read timeout, so no client that it would serve is cut.
	FirstByteTimeout = 60 * time.Second
)

// What newMux uses; tests shorten them.
var (
	handshakeTimeout = HandshakeTimeout
	firstByteTimeout = FirstByteTimeout
)

// recordTypeHandshake is the first byte of every TLS connection (a
// ClientHello record); no HTTP request starts with it.
const recordTypeHandshake = 0x16

// Listen wraps ln so that every connection is a mutual-TLS server
// connection whose handshake has completed: connections that fail it
// (no certificate, one from another CA, not TLS at all, silent) are closed
// and never reach Accept. Handshakes run in a goroutine per connection, so
// a slow one does not hold up the others.
func Listen(ln net.Listener, c *Config, log *slog.Logger) net.Listener {
	m := newMux(ln, c, false, log)
	return m.secure
}

// Split wraps the HTTP listener ln: a connection that opens with a TLS
// handshake becomes a mutual-TLS connection on secure (handshake done, as
// with Listen); any other goes, unchanged, to plain. The first byte is read
// in a goroutine per connection, never in the accept loop. Closing either
// listener closes ln and both.
func Split(ln net.Listener, c *Config, log *slog.Logger) (plain, secure net.Listener) {
	m := newMux(ln, c, true, log)
	return m.plain, m.secure
}

type mux struct {
	ln     net.Listener
	tls    *tls.Config
	split  bool
	log    *slog.Logger
	plain  *queueListener
	secure *queueListener
	done   chan struct{}
	once   sync.Once

	handshakeTimeout, firstByteTimeout time.Duration

	rejected   atomic.Int64 // handshakes refused since the last log line
	lastLogged atomic.Int64
}

func newMux(ln net.Listener, c *Config, split bool, log *slog.Logger) *mux {
	if log == nil {
		log = slog.Default()
	}
	m := &mux{ln: ln, tls: c.Server(), split: split, log: log, done: make(chan struct{}),
		handshakeTimeout: handshakeTimeout, firstByteTimeout: firstByteTimeout}
	m.secure = &queueListener{m: m, ch: make(chan net.Conn)}
	if split {
		m.plain = &queueListener{m: m, ch: make(chan net.Conn)}
	}
	go m.acceptLoop()
	return m
}

func (m *mux) close() error {
	var err error
	m.once.Do(func() {
		close(m.done)
		err = m.ln.Close()
	})
	return err
}

func (m *mux) acceptLoop() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				m.close()
				return
			}
			// Out of file descriptors and the like: wait a little.
			select {
			case <-m.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		go m.route(c)
	}
}

// route decides where one new connection goes; it runs in the
// connection's own goroutine and ends when the connection is handed over.
func (m *mux) route(c net.Conn) {
	if m.split {
		var b [1]byte
		_ = c.SetReadDeadline(time.Now().Add(m.firstByteTimeout))
		if _, err := c.Read(b[:]); err != nil {
			c.Close()
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		pc := &peekedConn{Conn: c, first: b[0], pending: true}
		if b[0] != recordTypeHandshake {
			m.deliver(m.plain, pc)
			return
		}
		c = pc
	}
	tc := tls.Server(c, m.tls)
	_ = c.SetDeadline(time.Now().Add(m.handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		m.reject(c.RemoteAddr(), err)
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	m.deliver(m.secure, tc)
}

func (m *mux) deliver(q *queueListener, c net.Conn) {
	select {
	case q.ch <- c:
	case <-m.done:
		c.Close()
	}
}

// reject logs a refused handshake, at most once every 10 seconds (an
// attacker should not be able to fill the log), with the count since.
func (m *mux) reject(remote net.Addr, err error) {
	n := m.rejected.Add(1)
	now := time.Now().UnixNano()
	last := m.lastLogged.Load()
	if now-last < int64(10*time.Second) || !m.lastLogged.CompareAndSwap(last, now) {
		return
	}
	m.rejected.Add(-n)
	m.log.Warn("peer TLS handshake refused", "remote", remote.String(), "err", err, "refused_since_last_report", n, "addr", m.ln.Addr().String())
}

// queueListener is one side of a mux: Accept hands out what the routing
// goroutines deliver.
type queueListener struct {
	m  *mux
	ch chan net.Conn
}

func (q *queueListener) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.m.done:
		return nil, net.ErrClosed
	}
}

// Close closes the shared listener; closing it again is not an error
// (fasthttp's Shutdown gives up waiting when a listener's Close fails).
func (q *queueListener) Close() error {
	q.m.close()
	return nil
}

func (q *queueListener) Addr() net.Addr { return q.m.ln.Addr() }

// peekedConn gives back the byte read to route the connection. Past that
// byte it costs one boolean test per Read.
type peekedConn struct {
	net.Conn
	first   byte
	pending bool
}

// CloseWrite half-closes the connection underneath: the gateway's
// lingering close needs it, and the embedded interface would hide it.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.pending {
		if len(p) == 0 {
			return 0, nil
		}
		c.pending = false
		p[0] = c.first
		return 1, nil
	}
	return c.Conn.Read(p)
}
