package fakeprovider

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// The usage and cost pages are encoded by hand: through encoding/json
// (reflection, and maps for OpenAI's usage results) they were most of the
// fake's CPU time in the syncer benchmark, where the fake shares the
// machine with the syncer and PostgreSQL. The wire types keep their json
// tags as the statement of the shape, and the tests check that each
// appendJSON writes exactly the bytes json.Marshal writes for the same
// value.

// jsonAppender is a wire value that encodes itself.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

// appendString appends s as a JSON string, byte for byte as encoding/json
// writes it: text that needs no escaping (every id, name and amount the
// fake serves) is copied, anything else goes through json.Marshal.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendNullable appends *p as a JSON string, or null for nil.
func appendNullable(b []byte, p *string) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	return appendString(b, *p)
}

// appendKey appends "name": after a comma unless b is just past an opening
// brace.
func appendKey(b []byte, name string) []byte {
	if len(b) > 0 && b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func appendInt(b []byte, name string, v int64) []byte {
	return strconv.AppendInt(appendKey(b, name), v, 10)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

// appendResults appends rs as a JSON array ([] when empty).
func appendResults[R jsonAppender](b []byte, rs []R) []byte {
	b = append(b, '[')
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.appendJSON(b)
	}
	return append(b, ']')
}

// pageBuffers recycles the buffers pages are encoded into: a 90-day page
// is hundreds of kilobytes, and growing a fresh buffer to that size for
// every request cost the fake more than encoding into it.
var pageBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuffer is the largest buffer kept for reuse.
const maxPooledBuffer = 4 << 20

// writePage encodes page and writes it with writeData.
func writePage(w http.ResponseWriter, r *http.Request, key string, page jsonAppender) {
	buf := pageBuffers.Get().(*[]byte)
	b := page.appendJSON((*buf)[:0])
	writeData(w, r, key, b)
	if cap(b) <= maxPooledBuffer {
		*buf = b[:0]
		pageBuffers.Put(buf)
	}
}
