package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// statement is one SQL statement a client ran, with the values bound to its
// parameters ($1 is params[0]).
type statement struct {
	sql    string
	params []param
	// problem, when set, says why the statement could not be decoded.
	problem string
}

// param is one bound value as the client sent it.
type param struct {
	value  []byte
	null   bool
	binary bool // format code 1: value is the type's binary form
}

// recorder is a PostgreSQL wire-protocol proxy. It forwards every byte
// between its clients and the server unchanged and, while recording, keeps
// the statements the clients run and counts their round trips. It is how
// bench/api learns each endpoint's SQL: the api is started against it for
// one request per endpoint, so the pgbench ceiling replays exactly what the
// api sent, and stays true when the storage code changes.
//
// It understands only what a client sends (the frontend protocol v3) and
// refuses TLS, so the api must reach it with sslmode=disable.
type recorder struct {
	ln     net.Listener
	server string

	mu        sync.Mutex
	recording bool
	stmts     []statement
	trips     int
	conns     map[net.Conn]bool
}

func startRecorder(server string) (*recorder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &recorder{ln: ln, server: server, conns: map[net.Conn]bool{}}
	go r.accept()
	return r, nil
}

func (r *recorder) addr() string { return r.ln.Addr().String() }

// close stops accepting and ends every proxied connection.
func (r *recorder) close() {
	_ = r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		_ = c.Close()
	}
}

// record starts a fresh recording.
func (r *recorder) record() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recording, r.stmts, r.trips = true, nil, 0
}

// stop ends the recording and returns the statements run since record, in
// the order the server received them, and the round trips they took.
//
// A statement is recorded before it is forwarded, and the api waits for
// the server's answer to every statement (COMMIT included) before it
// answers its HTTP request; so once a response has been read, the
// recording holds all of that request's statements.
func (r *recorder) stop() ([]statement, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recording = false
	return r.stmts, r.trips
}

func (r *recorder) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go r.proxy(c)
	}
}

func (r *recorder) track(c net.Conn, open bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if open {
		r.conns[c] = true
	} else {
		delete(r.conns, c)
	}
}

// Codes of the untyped messages a client may open with.
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
)

func (r *recorder) proxy(client net.Conn) {
	r.track(client, true)
	defer r.track(client, false)
	defer client.Close()
	server, err := net.Dial("tcp", r.server)
	if err != nil {
		return
	}
	defer server.Close()
	in := bufio.NewReader(client)
	// The startup phase: refuse encryption ('N'), as a server without TLS
	// does, and pass the startup message on.
	for {
		var head [8]byte
		if _, err := io.ReadFull(in, head[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(head[:4])
		if n < 8 || n > 1<<16 {
			return
		}
		rest := make([]byte, n-8)
		if _, err := io.ReadFull(in, rest); err != nil {
			return
		}
		if code := binary.BigEndian.Uint32(head[4:]); code == codeSSLRequest || code == codeGSSENCRequest {
			if _, err := client.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		}
		if _, err := server.Write(append(head[:], rest...)); err != nil {
			return
		}
		break
	}
	go func() {
		_, _ = io.Copy(client, server)
		_ = client.Close()
	}()
	named := map[string]string{} // prepared statements by name; "" is the unnamed one
	for {
		var head [5]byte
		if _, err := io.ReadFull(in, head[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(head[1:])
		if n < 4 {
			return
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(in, body); err != nil {
			return
		}
		r.observe(head[0], body, named)
		if _, err := server.Write(append(head[:], body...)); err != nil {
			return
		}
	}
}

// observe records what one frontend message means: a simple query is a
// statement and a round trip, Parse names a statement's text, Bind runs it
// with values, and Sync ends an extended-protocol round trip.
func (r *recorder) observe(typ byte, body []byte, named map[string]string) {
	m := message(body)
	switch typ {
	case 'P':
		name, query := m.cstring(), m.cstring()
		named[name] = query
	case 'Q':
		r.add(statement{sql: m.cstring()}, 1)
	case 'B':
		st, err := m.bind(named)
		if err != nil {
			st = statement{problem: err.Error()}
		}
		r.add(st, 0)
	case 'S':
		r.add(statement{}, 1)
	}
}

func (r *recorder) add(st statement, trips int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.recording {
		return
	}
	if st.sql != "" || st.problem != "" {
		r.stmts = append(r.stmts, st)
	}
	r.trips += trips
}

// message reads the fields of one frontend message body. A short body
// reads as zeros and empty strings; bind reports it.
type message []byte

func (m *message) cstring() string {
	i := bytes.IndexByte(*m, 0)
	if i < 0 {
		s := string(*m)
		*m = nil
		return s
	}
	s := string((*m)[:i])
	*m = (*m)[i+1:]
	return s
}

func (m *message) int16() int {
	if len(*m) < 2 {
		*m = nil
		return 0
	}
	v := int(int16(binary.BigEndian.Uint16(*m)))
	*m = (*m)[2:]
	return v
}

func (m *message) int32() int {
	if len(*m) < 4 {
		*m = nil
		return 0
	}
	v := int(int32(binary.BigEndian.Uint32(*m)))
	*m = (*m)[4:]
	return v
}

// bind decodes a Bind message: portal, statement name, parameter format
// codes (none: all text; one: for all), then the values.
func (m *message) bind(named map[string]string) (statement, error) {
	_ = m.cstring() // portal
	name := m.cstring()
	query, ok := named[name]
	if !ok {
		return statement{}, fmt.Errorf("bind to unknown prepared statement %q", name)
	}
	formats := make([]int, m.int16())
	for i := range formats {
		formats[i] = m.int16()
	}
	st := statement{sql: query, params: make([]param, max(m.int16(), 0))}
	for i := range st.params {
		p := &st.params[i]
		switch len(formats) {
		case 0:
		case 1:
			p.binary = formats[0] == 1
		default:
			p.binary = i < len(formats) && formats[i] == 1
		}
		n := m.int32()
		if n < 0 {
			p.null = true
			continue
		}
		if n > len(*m) {
			return statement{}, errors.New("truncated Bind message")
		}
		p.value = append([]byte(nil), (*m)[:n]...)
		*m = (*m)[n:]
	}
	return st, nil
}
